//go:build functional

package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var imageIDLine = regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`)

// fetchArgs is "fetch" with test images unverified and plain HTTP allowed.
func fetchArgs(args ...string) []string {
	return append([]string{"--insecure-options=image,http", "fetch"}, args...)
}

type imageListJSON struct {
	ID       string   `json:"id"`
	Names    []string `json:"names"`
	Size     int64    `json:"size"`
	Imported string   `json:"imported"`
	LastUsed string   `json:"lastUsed"`
}

func (e *env) imageList() []imageListJSON {
	e.t.Helper()
	var l []imageListJSON
	r := e.ok("image", "list", "--format=json")
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		e.t.Fatalf("image list --format=json: %v\n%s", err, r.stdout)
	}
	return l
}

// Fetch and run from a registry; the pull policies decide when skiff asks it.
func TestRegistryFetchRunAndPullPolicy(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, "")
	bb := reg.push(t, filepath.Join(e.images, "busybox.oci.tar"), "test/bb:v1")

	r := e.ok(fetchArgs(bb)...)
	if !imageIDLine.MatchString(r.stdout) {
		t.Fatalf("fetch printed %q, want an image ID", r.stdout)
	}
	id := strings.TrimSpace(r.stdout)
	if !strings.Contains(r.stderr, "layer") || !strings.Contains(r.stderr, "fetched") {
		t.Errorf("no progress line per layer on stderr: %q", r.stderr)
	}
	if q := e.ok(fetchArgs("--quiet", "--pull-policy=update", bb)...); strings.Contains(q.stderr, "layer") {
		t.Errorf("--quiet printed progress: %q", q.stderr)
	}
	run := e.skiff(append([]string{"--insecure-options=image,http", "run"}, append(e.stage1, bb, "--", "/bin/echo", "from registry")...)...)
	if run.code != 0 || run.stdout != "from registry\n" {
		t.Fatalf("run from registry: exit %d, %q, %q", run.code, run.stdout, run.stderr)
	}

	// The tag moves to another image: new keeps the stored one, update fetches.
	reg.push(t, filepath.Join(e.images, "layered.oci.tar"), "test/bb:v1")
	if got := strings.TrimSpace(e.ok(fetchArgs("--pull-policy=new", bb)...).stdout); got != id {
		t.Errorf("pull-policy=new went to the registry: %s, want %s", got, id)
	}
	if got := strings.TrimSpace(e.ok(fetchArgs("--pull-policy=never", bb)...).stdout); got != id {
		t.Errorf("pull-policy=never: %s, want %s", got, id)
	}
	newID := strings.TrimSpace(e.ok(fetchArgs("--pull-policy=update", bb)...).stdout)
	if newID == id || !imageIDLine.MatchString(newID+"\n") {
		t.Errorf("pull-policy=update kept %s", newID)
	}
	e.fails(125, []string{"docker://" + reg.host + "/test/other:v1", "not in the image store", "never"},
		fetchArgs("--pull-policy=never", "docker://"+reg.host+"/test/other:v1")...)
	e.fails(125, []string{"--pull-policy=sometimes"}, fetchArgs("--pull-policy=sometimes", bb)...)

	// Errors: one line naming the image and the cause.
	missing := "docker://" + reg.host + "/test/missing:v1"
	r = e.fails(125, []string{missing, "not found", "MANIFEST_UNKNOWN"}, fetchArgs(missing)...)
	checkOneLine(t, r)
	r = e.fails(125, []string{bb, "plain HTTP", "--insecure-options=http"}, "--insecure-options=image", "fetch", "--pull-policy=update", bb)
	checkOneLine(t, r)
	r = e.fails(125, []string{"docker://127.0.0.1:1/x/y:z"}, fetchArgs("docker://127.0.0.1:1/x/y:z")...)
	checkOneLine(t, r)
}

// checkOneLine checks that stderr's error is one line (warnings aside).
func checkOneLine(t *testing.T, r result) {
	t.Helper()
	var errs []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.Contains(l, "WARNING") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 {
		t.Errorf("error is not one line: %q", r.stderr)
	}
}

// A registry with htpasswd basic auth: no credentials, wrong ones and right
// ones from auth.d and $REGISTRY_AUTH_FILE.
func TestRegistryBasicAuth(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, htpasswdAuth(t, "alice", "s3cret"))
	bb := reg.push(t, filepath.Join(e.images, "busybox.oci.tar"), "team/bb:v1", "alice", "s3cret")

	r := e.fails(125, []string{bb, "unauthorized", "none are configured"}, fetchArgs(bb)...)
	checkOneLine(t, r)
	writeAuthFile(t, filepath.Join(e.local, "auth.d", "reg.json"), reg.host, "alice", "wrong")
	r = e.fails(125, []string{bb, "unauthorized", "rejected the credentials"}, fetchArgs(bb)...)
	checkOneLine(t, r)

	envFile := filepath.Join(t.TempDir(), "auth.json")
	writeAuthFile(t, envFile, reg.host, "alice", "s3cret")
	c := e.cmd(fetchArgs(bb)...)
	c.Env = append(c.Env, "REGISTRY_AUTH_FILE="+envFile)
	if out, err := c.Output(); err != nil || !imageIDLine.Match(out) {
		t.Fatalf("fetch with $REGISTRY_AUTH_FILE: %v %q", err, out)
	}
	writeAuthFile(t, filepath.Join(e.local, "auth.d", "reg.json"), reg.host, "alice", "s3cret")
	e.ok(fetchArgs("--pull-policy=update", bb)...)
}

// The image verbs on images fetched from a registry.
func TestImageVerbs(t *testing.T) {
	need(t, "skopeo")
	e := newEnv(t)
	reg := startRegistry(t, "")
	bb := reg.push(t, filepath.Join(e.images, "busybox.oci.tar"), "test/bb:v1")
	id := strings.TrimSpace(e.ok(fetchArgs(bb)...).stdout)

	l := e.imageList()
	if len(l) != 1 || l[0].ID != id || len(l[0].Names) != 1 || l[0].Names[0] != bb || l[0].Size <= 0 {
		t.Fatalf("image list: %+v", l)
	}
	table := e.ok("image", "list").stdout
	if !strings.HasPrefix(table, "ID") || !strings.Contains(table, bb) {
		t.Errorf("image list table: %q", table)
	}
	if nl := e.ok("image", "list", "--no-legend").stdout; strings.HasPrefix(nl, "ID") || !strings.Contains(nl, id[:19]) {
		t.Errorf("image list --no-legend: %q", nl)
	}
	var m struct {
		SchemaVersion int `json:"schemaVersion"`
		Layers        []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(e.ok("image", "cat-manifest", bb).stdout), &m); err != nil || m.SchemaVersion != 2 || len(m.Layers) == 0 {
		t.Fatalf("cat-manifest: %+v %v", m, err)
	}

	dir := t.TempDir()
	e.ok("image", "extract", id[7:19], filepath.Join(dir, "x"))
	if fi, err := os.Stat(filepath.Join(dir, "x", "bin", "busybox")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("extract: %v %v", fi, err)
	}
	e.ok("image", "render", bb, filepath.Join(dir, "r"))
	for _, p := range []string{"rootfs/bin/busybox", "manifest.json", "config.json"} {
		if _, err := os.Stat(filepath.Join(dir, "r", p)); err != nil {
			t.Errorf("render: %v", err)
		}
	}
	e.fails(125, []string{"not empty"}, "image", "extract", bb, filepath.Join(dir, "r"))

	archive := filepath.Join(dir, "bb.oci.tar")
	e.ok("image", "export", bb, archive)
	if out := sh(t, dir, "skopeo inspect --raw oci-archive:"+archive+":v1"); !strings.Contains(out, m.Layers[0].Digest) {
		t.Errorf("exported archive: %s", out)
	}
	r := e.skiff(e.runArgs("oci-archive:"+archive, "--", "/bin/echo", "exported")...)
	if r.code != 0 || r.stdout != "exported\n" {
		t.Fatalf("run exported archive: exit %d %q %q", r.code, r.stdout, r.stderr)
	}

	// A pod that used the image (still listed, exited) keeps it from rm (by
	// ID: the image has two names now, and rm of one name keeps the image).
	e.fails(125, []string{"used by pod", "--force"}, "image", "rm", id)
	if v := e.ok("image", "verify").stdout; !strings.Contains(v, "all blobs match") {
		t.Errorf("verify: %q", v)
	}

	// Corrupt a layer blob: verify reports it and removes it and the image.
	blob := filepath.Join(e.dir, "images", "blobs", "sha256", strings.TrimPrefix(m.Layers[0].Digest, "sha256:"))
	os.Chmod(blob, 0o644)
	data, _ := os.ReadFile(blob)
	data[len(data)/2] ^= 0xff
	os.WriteFile(blob, data, 0o644)
	v := e.fails(125, []string{"corrupt entries removed"}, "image", "verify")
	if !strings.Contains(v.stdout, m.Layers[0].Digest) || !strings.Contains(v.stdout, "content has digest") {
		t.Errorf("verify report: %q", v.stdout)
	}
	if _, err := os.Stat(blob); !os.IsNotExist(err) {
		t.Error("corrupt blob kept")
	}
	// Fetching again repairs it; gc with no grace removes what no pod uses.
	if got := strings.TrimSpace(e.ok(fetchArgs(bb)...).stdout); got != id {
		t.Errorf("refetch: %s, want %s", got, id)
	}
	e.ok("image", "verify", bb)
	e.ok("gc", "--grace-period=0s")
	e.ok("image", "gc", "--grace-period=0s")
	if l := e.imageList(); len(l) != 0 {
		t.Errorf("image gc kept unused images: %+v", l)
	}
	for _, sub := range []string{"blobs/sha256", "layers/sha256"} {
		if left, _ := os.ReadDir(filepath.Join(e.dir, "images", sub)); len(left) != 0 {
			t.Errorf("image gc left %d entries in %s", len(left), sub)
		}
	}
	e.fails(125, []string{"nosuch", "not found"}, "image", "rm", "nosuch")
}

// rm --force removes an image a pod uses; its layers survive gc until the
// pod is gone.
func TestImageRmForceKeepsPodLayers(t *testing.T) {
	e := newEnv(t)
	img := e.image("busybox")
	r := e.skiff(e.runArgs(img, "--", "/bin/true")...)
	if r.code != 0 {
		t.Fatalf("run: %d %q", r.code, r.stderr)
	}
	e.fails(125, []string{"used by pod"}, "image", "rm", img)
	e.ok("image", "rm", "--force", img)
	e.ok("image", "gc", "--grace-period=0s")
	pods := e.pods()
	if len(pods) != 1 {
		t.Fatalf("pods: %+v", pods)
	}
	var m struct {
		Apps []struct {
			Rootfs struct{ Layers []string } `json:"rootfs"`
		} `json:"apps"`
	}
	json.Unmarshal([]byte(e.ok("cat-manifest", pods[0].UUID).stdout), &m)
	for _, l := range m.Apps[0].Rootfs.Layers {
		if _, err := os.Stat(l); err != nil {
			t.Errorf("image gc removed a layer a pod uses: %v", err)
		}
	}
}

// Two fetches of one image at once both succeed and download each layer once.
func TestRegistryConcurrentFetch(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, "")
	bb := reg.push(t, filepath.Join(e.images, "layered.oci.tar"), "test/layered:v1")
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.skiff(fetchArgs("--pull-policy=update", bb)...)
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.code != 0 || r.stdout != results[0].stdout {
			t.Fatalf("concurrent fetch: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
	}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	json.Unmarshal([]byte(e.ok("image", "cat-manifest", bb).stdout), &m)
	for _, l := range m.Layers {
		if n := reg.blobGets(t, l.Digest); n != 1 {
			t.Errorf("layer %s downloaded %d times", l.Digest, n)
		}
	}
	e.ok("image", "verify")
}

// docker-archive: images saved by skopeo (as docker save writes them) run.
func TestDockerArchive(t *testing.T) {
	need(t, "skopeo")
	e := newEnv(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "bb.docker.tar")
	sh(t, dir, "skopeo copy --quiet oci-archive:"+filepath.Join(e.images, "busybox.oci.tar")+" docker-archive:"+archive+":skiff/bb:v1")
	for _, img := range []string{"docker-archive:" + archive, "docker-archive:" + archive + ":skiff/bb:v1"} {
		r := e.skiff(e.runArgs(img, "--", "/bin/echo", "docker-archive")...)
		if r.code != 0 || r.stdout != "docker-archive\n" {
			t.Errorf("%s: exit %d %q %q", img, r.code, r.stdout, r.stderr)
		}
	}
	e.fails(125, []string{"nosuch", "skiff/bb:v1"}, e.runArgs("docker-archive:"+archive+":nosuch")...)
	e.ok("image", "verify")
}
