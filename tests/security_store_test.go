//go:build functional

package tests

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The store and verification (issue #13, points 5, 6, 7, 8 and text-mode
// signatures from 11). Each test builds its hostile input itself.

// suidArchive writes an OCI archive of the image refName whose one layer
// holds bin/suid, a setuid-root executable, and returns the layer's diffID
// (hex). The archive holds no carriage return (see the text-mode test).
func suidArchive(t *testing.T, path, refName string) string {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755})
	script := []byte("#!/bin/sh\nid\n")
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/suid", Mode: 0o4755, Size: int64(len(script))})
	tw.Write(script)
	tw.Close()
	diffID := fmt.Sprintf("%x", sha256.Sum256(layer.Bytes()))
	out := ociArchive(refName, "/bin/suid", "application/vnd.oci.image.layer.v1.tar", layer.Bytes(), layer.Bytes())
	if bytes.IndexByte(out, '\r') >= 0 {
		t.Fatal("the archive holds a carriage return")
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return diffID
}

// ociArchive is an OCI archive of one image, refName, running cmd, whose one
// layer is blob (media type layerType) holding the tar plain.
func ociArchive(refName, cmd, layerType string, plain, blob []byte) []byte {
	blobs := map[string][]byte{}
	desc := func(mt string, data []byte) map[string]any {
		d := fmt.Sprintf("%x", sha256.Sum256(data))
		blobs[d] = data
		return map[string]any{"mediaType": mt, "digest": "sha256:" + d, "size": len(data)}
	}
	diffID := fmt.Sprintf("sha256:%x", sha256.Sum256(plain))
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{cmd}}, "rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}}})
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc("application/vnd.oci.image.config.v1+json", cfg), "layers": []any{desc(layerType, blob)}})
	md := desc("application/vnd.oci.image.manifest.v1+json", m)
	md["annotations"] = map[string]string{"org.opencontainers.image.ref.name": refName}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{md}})
	var out bytes.Buffer
	aw := tar.NewWriter(&out)
	add := func(name string, data []byte) {
		aw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))})
		aw.Write(data)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	for d, data := range blobs {
		add("blobs/sha256/"+d, data)
	}
	aw.Close()
	return out.Bytes()
}

// asNobody runs argv as uid and gid 65534 with no supplementary groups.
func asNobody(argv ...string) ([]byte, error) {
	return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, argv...)...).CombinedOutput()
}

// Point 5: no other user reaches a layer's setuid file in the store, and a
// data directory left open to them is narrowed, saying so once.
func TestStoreIsNotReachableByOtherUsers(t *testing.T) {
	need(t, "setpriv")
	e := newEnv(t)
	// The test's own temporary directories are 0700: open the way to the
	// data directory, so that only skiff's modes stand in an intruder's way.
	for d := filepath.Dir(e.dir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	archive := filepath.Join(t.TempDir(), "suid.oci.tar")
	os.Chmod(filepath.Dir(archive), 0o755)
	diffID := suidArchive(t, archive, "suid")
	suid := filepath.Join(e.dir, "images", "layers", "sha256", diffID, "bin", "suid")

	e.ok("--insecure-options=image", "fetch", "--quiet", "oci-archive:"+archive)
	if fi, err := os.Stat(suid); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("the layer's setuid file is not in the store where expected: %v", err)
	}
	if out, err := asNobody("/bin/cat", suid); err == nil {
		t.Fatalf("an unprivileged user reads the store's setuid file %s: %s", suid, out)
	}
	for _, d := range []string{e.dir, filepath.Join(e.dir, "images")} {
		if fi, _ := os.Stat(d); fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is mode %04o", d, fi.Mode().Perm())
		}
	}

	// A data directory made by an older skiff (0755) is narrowed, once, and said so.
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Join(e.dir, "images"), 0o755)
	if out, err := asNobody("/bin/cat", suid); err != nil {
		t.Fatalf("the probe cannot read a store left open: %v %s", err, out)
	}
	r := e.ok("--insecure-options=image", "fetch", "--quiet", "oci-archive:"+archive)
	if strings.Count(r.stderr, "was mode 0755") != 2 || !strings.Contains(r.stderr, e.dir+" was mode 0755") || !strings.Contains(r.stderr, "now 0700") {
		t.Errorf("narrowing the data directory not said once per directory: %q", r.stderr)
	}
	if out, err := asNobody("/bin/cat", suid); err == nil {
		t.Fatalf("after narrowing, an unprivileged user still reads %s: %s", suid, out)
	}
	if r := e.ok("--insecure-options=image", "fetch", "--quiet", "oci-archive:"+archive); strings.Contains(r.stderr, "was mode") {
		t.Errorf("said again: %q", r.stderr)
	}
}

// Point 6: an image fetched without verification is not run with
// verification on (--pull-policy=new reuses the store), until it is fetched
// again verified; a key removed since no longer vouches for a stored image.
func TestInsecureFetchDoesNotPassVerification(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, "")
	app := reg.push(t, filepath.Join(e.images, "busybox.oci.tar"), "team/app:v1")
	key := newCosignKey(t, "ecdsa")
	e.ok("trust", "--prefix=docker://"+reg.host+"/team", "--cosign", "--skip-fingerprint-review", key.pub)
	run := func(ref string, flags ...string) result {
		args := append(append(append([]string{"--insecure-options=http", "run"}, flags...), e.stage1...), ref, "--", "/bin/echo", "ran")
		return e.skiff(args...)
	}
	refused := func(r result, what string, want ...string) {
		t.Helper()
		if r.code != 125 || strings.Contains(r.stdout, "ran") {
			t.Fatalf("%s: exit %d, %q, %q", what, r.code, r.stdout, r.stderr)
		}
		checkOneLine(t, r)
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr %q does not mention %q", what, r.stderr, w)
			}
		}
	}

	e.ok("--insecure-options=image,http", "fetch", "--quiet", app)
	refused(run(app), "verified run of an insecurely fetched image", app, "without verification", "skiff fetch "+app, "--insecure-options=image")
	refused(run(app, "--pull-policy=never"), "verified run, --pull-policy=never", app, "skiff fetch")

	// Signed and fetched again: it runs, also by digest from the stored
	// signature alone.
	d, _ := reg.manifestDigest(t, "team/app", "v1")
	reg.signImage(t, "team/app", d, key)
	e.ok("--insecure-options=http", "fetch", "--quiet", app)
	if r := run(app); r.code != 0 || r.stdout != "ran\n" {
		t.Fatalf("verified run after a signed fetch: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	byDigest := "docker://" + reg.host + "/team/app@" + d
	if r := run(byDigest, "--pull-policy=never"); r.code != 0 || r.stdout != "ran\n" {
		t.Fatalf("verified run by digest from the store: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}

	// The key is no longer trusted: the stored image no longer runs verified.
	e.ok("trust", "--remove", strings.ToUpper(e.trustList()[0].Fingerprint))
	refused(run(app), "verified run after the key was removed", app, "no longer verifies")
	if r := e.skiff(append(append([]string{"--insecure-options=image,http", "run"}, e.stage1...), app, "--", "/bin/echo", "ran")...); r.code != 0 {
		t.Fatalf("--insecure-options=image run of the stored image: exit %d, %q", r.code, r.stderr)
	}
}

// Point 6: the names an archive gives its image (RepoTags) never claim a
// registry image's or an appc image's name, under which a later verified
// run would find it in the store.
func TestArchiveNamesClaimNoOtherTransport(t *testing.T) {
	need(t, "skopeo")
	e := newEnv(t)
	dir := t.TempDir()
	claimedDocker := "docker://127.0.0.1:1/team/claimed:v1" // nothing listens there
	appcName := "127.0.0.1:1/evil:1.0"                      // an appc name: discovery would ask 127.0.0.1:1
	sh(t, dir, "skopeo copy --quiet oci-archive:"+filepath.Join(e.images, "busybox.oci.tar")+" docker-archive:d.tar:"+appcName+
		" && mkdir x && tar -C x -xf d.tar && sed -i 's|\"RepoTags\":\\[|\"RepoTags\":[\""+claimedDocker+"\",|' x/manifest.json"+
		" && grep -q claimed x/manifest.json && tar -C x -cf claims.tar .")
	e.ok("--insecure-options=image", "fetch", "--quiet", "docker-archive:"+filepath.Join(dir, "claims.tar"))
	for _, ref := range []string{claimedDocker, appcName} {
		args := append(append([]string{"--insecure-options=http", "run"}, e.stage1...), ref, "--", "/bin/echo", "ran")
		if r := e.skiff(args...); r.code != 125 || strings.Contains(r.stdout, "ran") {
			t.Errorf("verified run of %s, a name an archive claimed: exit %d, %q, %q", ref, r.code, r.stdout, r.stderr)
		}
	}
	var names []string
	for _, img := range e.imageList() {
		names = append(names, img.Names...)
	}
	for _, n := range names {
		if n == claimedDocker || n == appcName {
			t.Errorf("an archive's RepoTags took the name %q: %q", n, names)
		}
	}
}

// Points 7 and 11: the name a signer's key must be trusted for is the one the
// signed archive gives its image, never the file's; a tampered file is a bad
// signature before anything is said about key scope; a text-mode signature
// is refused.
func TestArchiveSignatureCoversItsName(t *testing.T) {
	e := newEnv(t)
	g := newGPGHome(t)
	k := g.key("Publisher <pub@skiff.invalid>", "", "never")
	e.ok("trust", "--prefix=bb", "--skip-fingerprint-review", g.export(k, "pub.asc", true))
	file := func(sub, name, refName, signOpts string) string {
		dir := filepath.Join(g.dir, sub)
		os.MkdirAll(dir, 0o755)
		p := namedCopy(t, e, dir, name, refName)
		sh(t, dir, g.gpg+" --local-user "+k+" "+signOpts+" --detach-sign "+p)
		return p
	}
	refused := func(t *testing.T, path string, want []string, not ...string) {
		t.Helper()
		r := e.runFile(path)
		if r.code != 125 || strings.Contains(r.stdout, "verified") {
			t.Fatalf("exit %d, %q, %q", r.code, r.stdout, r.stderr)
		}
		checkOneLine(t, r)
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr %q does not mention %q", r.stderr, w)
			}
		}
		for _, w := range not {
			if strings.Contains(r.stderr, w) {
				t.Errorf("stderr %q mentions %q", r.stderr, w)
			}
		}
	}

	t.Run("another image renamed to bb", func(t *testing.T) {
		refused(t, file("renamed", "bb.oci.tar", "other:latest", "--armor"), []string{"trusted only for bb", `"other"`})
	})
	t.Run("bb under another file name", func(t *testing.T) {
		if r := e.runFile(file("moved", "other.oci.tar", "bb:latest", "--armor")); r.code != 0 || r.stdout != "verified\n" {
			t.Fatalf("exit %d, %q, %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("tampered", func(t *testing.T) { // a bad signature, whatever the key is trusted for
		tampered := file("tampered", "other.oci.tar", "bb:latest", "--armor")
		sh(t, g.dir, "printf x >> "+tampered)
		refused(t, tampered, []string{"signature invalid"}, "trusted only for")
	})
	t.Run("text mode", func(t *testing.T) {
		// A text-mode signature is over the content with its line endings
		// made CRLF; over an archive with no CR it verifies as one, and the
		// same signature holds for other bytes (CRLF for LF).
		dir := filepath.Join(g.dir, "text")
		os.MkdirAll(dir, 0o755)
		p := filepath.Join(dir, "bb.oci.tar")
		suidArchive(t, p, "bb:latest")
		sh(t, dir, g.gpg+" --local-user "+k+" --armor --textmode --detach-sign "+p)
		r := e.skiff("fetch", "--quiet", "oci-archive:"+p)
		if r.code != 125 || !strings.Contains(r.stderr, "text-mode") {
			t.Errorf("gpg --textmode signature: exit %d, %q", r.code, r.stderr)
		}
		// GnuPG's text mode also mangles the NULs that end every tar, so its
		// signature does not verify anyway; one made as OpenPGP says (and as
		// the verifier canonicalises) does, and is refused all the same.
		ent, err := openpgp.NewEntity("Text", "", "text@skiff.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
		if err != nil {
			t.Fatal(err)
		}
		var pub bytes.Buffer
		w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
		ent.Serialize(w)
		w.Close()
		keyFile := filepath.Join(dir, "text.asc")
		os.WriteFile(keyFile, pub.Bytes(), 0o644)
		e.ok("trust", "--prefix=bb", "--skip-fingerprint-review", keyFile)
		content, _ := os.ReadFile(p)
		var sig bytes.Buffer
		if err := openpgp.ArmoredDetachSignText(&sig, ent, bytes.NewReader(content), nil); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p+".asc", sig.Bytes(), 0o644)
		r = e.skiff("fetch", "--quiet", "oci-archive:"+p)
		if r.code != 125 || !strings.Contains(r.stderr, "text-mode") {
			t.Errorf("text-mode signature: exit %d, %q, %q", r.code, r.stdout, r.stderr)
		}
		checkOneLine(t, r)
	})
}
