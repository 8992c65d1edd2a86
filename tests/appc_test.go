//go:build functional

package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// aciBuilder makes ACIs from the busybox test image's rootfs and signs them
// with a throwaway gpg key.
type aciBuilder struct {
	t      *testing.T
	dir    string // work directory: rootfs/, gnupg/, the ACIs
	gpg    string
	fpr    string
	rootfs string
}

func newACIBuilder(t *testing.T, e *env) *aciBuilder {
	t.Helper()
	need(t, "umoci", "gpg", "tar")
	b := &aciBuilder{t: t, dir: t.TempDir()}
	b.gpg = "gpg --batch --quiet --homedir " + filepath.Join(b.dir, "gnupg")
	os.MkdirAll(filepath.Join(b.dir, "gnupg"), 0o700)
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", filepath.Join(b.dir, "gnupg"), "--kill", "all").Run() })
	sh(t, b.dir, "mkdir layout && tar -C layout -xf "+filepath.Join(e.images, "busybox.oci.tar")+
		" && umoci unpack --image layout:latest bundle >/dev/null && mkdir -p bundle/rootfs/srv/work")
	b.rootfs = filepath.Join(b.dir, "bundle", "rootfs")
	sh(t, b.dir, b.gpg+" --passphrase '' --quick-gen-key 'skiff appc test <t@skiff.invalid>' ed25519 sign never")
	b.fpr = strings.TrimSpace(sh(t, b.dir, b.gpg+" --with-colons --list-keys | awk -F: '/^fpr/{print tolower($10); exit}'"))
	return b
}

// manifest is an appc image manifest for name whose app prints what the
// mapping to OCI must show: user, group, working directory and environment.
func manifest(name string, extra map[string]any) map[string]any {
	m := map[string]any{
		"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
		"labels": []map[string]string{{"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}},
		"app": map[string]any{
			"exec":             []string{"/bin/sh", "-c", `echo "ids=$(id -u):$(id -g) cwd=$(pwd) greeting=$GREETING"`},
			"user":             "65534",
			"group":            "65533",
			"workingDirectory": "/srv/work",
			"environment":      []map[string]string{{"name": "GREETING", "value": "hello from appc"}},
			"ports":            []map[string]any{{"name": "http", "port": 8080, "protocol": "tcp"}},
			"isolators":        []map[string]any{{"name": "resource/memory", "value": map[string]string{"limit": "64M"}}},
		},
		"annotations": []map[string]string{{"name": "homepage", "value": "https://skiff.invalid"}},
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// build writes FILE (in b.dir) as a gzip ACI with manifest m and the busybox
// rootfs, signs it when sign is set, and returns its path.
func (b *aciBuilder) build(file string, m map[string]any, sign bool) string {
	b.t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		b.t.Fatal(err)
	}
	stage := filepath.Join(b.dir, file+".d")
	os.MkdirAll(stage, 0o755)
	os.WriteFile(filepath.Join(stage, "manifest"), data, 0o644)
	sh(b.t, b.dir, fmt.Sprintf("tar -czf %s -C %s manifest -C %s rootfs", file, stage, filepath.Dir(b.rootfs)))
	path := filepath.Join(b.dir, file)
	if sign {
		sh(b.t, b.dir, b.gpg+" --armor --detach-sign "+path)
	}
	return path
}

// trust trusts the builder's key for prefix in e's local configuration.
func (b *aciBuilder) trust(e *env, prefix string) {
	keyDir := filepath.Join(e.local, "trustedkeys", "prefix.d", prefix)
	os.MkdirAll(keyDir, 0o755)
	sh(b.t, b.dir, b.gpg+" --armor --export "+b.fpr+" > "+filepath.Join(keyDir, b.fpr))
}

// verifiedRun runs IMAGE with signature verification on, plus the given
// insecure options (tls, http; never image).
func (e *env) verifiedRun(insecure string, image string) result {
	e.t.Helper()
	args := []string{"run"}
	if insecure != "" {
		args = []string{"--insecure-options=" + insecure, "run"}
	}
	return e.skiff(append(append(args, e.stage1...), image)...)
}

const appcOutput = "ids=65534:65533 cwd=/srv/work greeting=hello from appc\n"

// An .aci file signed by a trusted key runs, with its manifest's exec, user,
// group, working directory and environment; unsigned, untrusted, misnamed,
// tampered and dependent images are refused.
func TestACIFile(t *testing.T) {
	e := newEnv(t)
	b := newACIBuilder(t, e)
	aci := b.build("busybox-1.0-linux-amd64.aci", manifest("skiff.test/busybox", nil), false)

	e.fails(125, []string{"not signed", aci + ".asc", "--insecure-options=image"}, "run", aci)
	sh(t, b.dir, b.gpg+" --armor --detach-sign "+aci)
	e.fails(125, []string{"skiff.test/busybox", "trustedkeys/prefix.d/skiff.test/busybox"}, "run", aci)
	b.trust(e, "skiff.test/busybox")
	r := e.verifiedRun("", aci)
	if r.code != 0 || r.stdout != appcOutput || strings.Contains(r.stderr, "WARNING") {
		t.Fatalf("signed ACI: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	// exec is the entrypoint: app args are appended to it, as in rkt.
	r = e.ok(append(append([]string{"--insecure-options=image", "run"}, e.stage1...), aci, "--", "arg0")...)
	if r.stdout != appcOutput {
		t.Errorf("app args: %q", r.stdout)
	}

	// The signature is checked for the name in the manifest, not the file
	// name: the same key is not trusted for another name.
	other := b.build("busybox.aci", manifest("skiff.test/other", nil), true)
	e.fails(125, []string{"skiff.test/other", "trustedkeys/prefix.d/skiff.test/other"}, "run", other)

	// A binary signature works as well as an armored one.
	bin := b.build("bin.aci", manifest("skiff.test/busybox", nil), false)
	sh(t, b.dir, b.gpg+" --output "+bin+".asc --detach-sign "+bin)
	if r := e.verifiedRun("", bin); r.code != 0 || r.stdout != appcOutput {
		t.Errorf("binary signature: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}

	// Tampered content is refused.
	sh(t, b.dir, "printf x >> "+aci)
	e.fails(125, []string{"does not match the content"}, "run", aci)

	// Dependencies are refused clearly, even unverified.
	deps := b.build("deps.aci", manifest("skiff.test/busybox", map[string]any{
		"dependencies": []map[string]string{{"imageName": "skiff.test/base"}}}), false)
	e.fails(125, []string{deps, "appc dependencies are not supported"}, e.runArgs(deps)...)
	// So is a broken manifest, naming the file and the cause.
	bad := b.build("bad.aci", manifest("Skiff.Test/Bad", nil), false)
	e.fails(125, []string{bad, "not an AC identifier"}, e.runArgs(bad)...)
}

// aciServer serves dir over TLS (self-signed) with appc discovery pages:
// GET /?ac-discovery=1 and /busybox?ac-discovery=1 answer with templates
// under /images/.
func aciServer(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("ac-discovery") == "1" {
			if r.URL.Path != "/" {
				http.NotFound(w, r) // discovery then tries the parent path
				return
			}
			fmt.Fprintf(w, `<html><head>
<meta name="ac-discovery" content="127.0.0.1 https://%s/images/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="127.0.0.1 https://%s/pubkeys.asc">
</head></html>`, r.Host, r.Host)
			return
		}
		files.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes refused on purpose
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// An ACI at an https URL is downloaded with its signature beside it; a
// self-signed server needs --insecure-options=tls, plain http needs http.
func TestACIOverHTTPS(t *testing.T) {
	e := newEnv(t)
	b := newACIBuilder(t, e)
	b.build("busybox-1.0-linux-amd64.aci", manifest("skiff.test/busybox", nil), true)
	b.trust(e, "skiff.test")
	srv := aciServer(t, b.dir)
	url := srv.URL + "/busybox-1.0-linux-amd64.aci"

	e.fails(125, []string{url, "certificate", "--insecure-options=tls"}, "run", url)
	r := e.verifiedRun("tls", url)
	if r.code != 0 || r.stdout != appcOutput || !strings.Contains(r.stderr, "WARNING: TLS certificate verification skipped") {
		t.Fatalf("https ACI: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	plain := strings.Replace(url, "https://", "http://", 1)
	e.fails(125, []string{"plain HTTP is refused", "--insecure-options=http"}, "run", plain)

	// Unsigned on the server: refused, naming the signature URL.
	b.build("unsigned.aci", manifest("skiff.test/busybox", nil), false)
	e.fails(125, []string{"not signed", srv.URL + "/unsigned.aci.asc"}, "--insecure-options=tls", "run", srv.URL+"/unsigned.aci")
	if tmp, _ := os.ReadDir(filepath.Join(e.dir, "images", "tmp")); len(tmp) != 0 {
		t.Errorf("downloads left in the store's tmp: %v", tmp)
	}
}

// A bare appc name is discovered through ac-discovery meta tags. The test
// server listens on 127.0.0.1:PORT: the reference HOST:PORT/NAME:VERSION
// discovers on that port, and the image's name is 127.0.0.1/busybox.
func TestACIDiscovery(t *testing.T) {
	e := newEnv(t)
	b := newACIBuilder(t, e)
	os.MkdirAll(filepath.Join(b.dir, "images", "127.0.0.1"), 0o755)
	b.build("images/127.0.0.1/busybox-1.0-linux-amd64.aci", manifest("127.0.0.1/busybox", nil), true)
	// A server that serves another image under the name asked for.
	b.build("images/127.0.0.1/liar-1.0-linux-amd64.aci", manifest("127.0.0.1/busybox", nil), true)
	srv := aciServer(t, b.dir)
	hostport := strings.TrimPrefix(srv.URL, "https://")
	name := hostport + "/busybox:1.0"

	e.fails(125, []string{"127.0.0.1/busybox", "pubkeys.asc"}, "--insecure-options=tls", "run", name)
	b.trust(e, "127.0.0.1/busybox")
	r := e.verifiedRun("tls", name)
	if r.code != 0 || r.stdout != appcOutput {
		t.Fatalf("discovered ACI: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	e.fails(125, []string{"does not match the name asked for", "127.0.0.1/liar"}, "--insecure-options=tls", "run", hostport+"/liar:1.0")
	e.fails(125, []string{"no ac-discovery template", "busybox"}, "--insecure-options=tls", "run", hostport+"/busybox")
	// Once stored, the name runs without going to the server (pull policy new).
	srv.Close()
	if r := e.verifiedRun("", name); r.code != 0 || r.stdout != appcOutput {
		t.Errorf("stored discovered image: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
}
