//go:build functional

package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/install-deps installs it)", tool)
		}
	}
}

func sh(t *testing.T, dir, script string) string {
	t.Helper()
	c := exec.Command("/bin/sh", "-ec", script)
	c.Dir = dir
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// Archives made by other standard tools run, and so do OCI layout directories.
func TestImagesFromStandardTools(t *testing.T) {
	need(t, "skopeo", "tar")
	e := newEnv(t)
	dir := t.TempDir()
	src := filepath.Join(e.images, "busybox.oci.tar")
	sh(t, dir, "skopeo copy --quiet oci-archive:"+src+" oci-archive:skopeo.tar:bb && mkdir layout && tar -C layout -xf "+src)
	for _, img := range []string{"oci-archive:" + filepath.Join(dir, "skopeo.tar"), "oci-archive:" + filepath.Join(dir, "skopeo.tar") + ":bb", "oci:" + filepath.Join(dir, "layout")} {
		r := e.skiff(e.runArgs(img, "--", "/bin/echo", "ran")...)
		if r.code != 0 || r.stdout != "ran\n" {
			t.Errorf("%s: exit %d, %q, %q", img, r.code, r.stdout, r.stderr)
		}
	}
	e.fails(125, []string{"nosuchref"}, e.runArgs("oci-archive:"+filepath.Join(dir, "skopeo.tar")+":nosuchref")...)
}

// A signed image runs without --insecure-options once its key is trusted; a
// tampered one, or one signed by an untrusted key, is refused.
func TestSignedImageIsVerified(t *testing.T) {
	need(t, "gpg")
	e := newEnv(t)
	dir := t.TempDir()
	gpg := "gpg --batch --quiet --homedir " + filepath.Join(dir, "gnupg")
	os.MkdirAll(filepath.Join(dir, "gnupg"), 0o700)
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", filepath.Join(dir, "gnupg"), "--kill", "all").Run() })
	sh(t, dir, gpg+" --passphrase '' --quick-gen-key 'skiff test <t@skiff.invalid>' ed25519 sign never")
	fpr := strings.TrimSpace(sh(t, dir, gpg+" --with-colons --list-keys | awk -F: '/^fpr/{print tolower($10); exit}'"))
	image := namedCopy(t, e, dir, "bb.oci.tar", "bb:latest")
	sh(t, dir, gpg+" --armor --detach-sign "+image)

	run := func(img string) result {
		args := append(append([]string{"run"}, e.stage1...), "oci-archive:"+img, "--", "/bin/echo", "verified")
		return e.skiff(args...)
	}
	// Signed, but the key is not trusted yet.
	if r := run(image); r.code != 125 || !strings.Contains(r.stderr, "bb") {
		t.Fatalf("untrusted signer: exit %d, %q", r.code, r.stderr)
	}
	keyDir := filepath.Join(e.local, "trustedkeys", "prefix.d", "bb")
	os.MkdirAll(keyDir, 0o755)
	sh(t, dir, gpg+" --armor --export "+fpr+" > "+filepath.Join(keyDir, fpr))
	if r := run(image); r.code != 0 || r.stdout != "verified\n" || strings.Contains(r.stderr, "WARNING") {
		t.Fatalf("trusted signer: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	// The file's name is not the signed name: the same bytes under another
	// file name are still the image bb.
	other := filepath.Join(dir, "other.oci.tar")
	sh(t, dir, "cp "+image+" "+other+" && cp "+image+".asc "+other+".asc")
	if r := run(other); r.code != 0 || r.stdout != "verified\n" {
		t.Fatalf("renamed signed file: exit %d, %q", r.code, r.stderr)
	}
	// --signature names a signature kept elsewhere (rkt's flag).
	elsewhere := filepath.Join(dir, "sigs", "bb.sig")
	sh(t, dir, "mkdir -p sigs && mv "+image+".asc "+elsewhere)
	if r := run(image); r.code != 125 || !strings.Contains(r.stderr, "not signed") {
		t.Fatalf("signature moved away: exit %d, %q", r.code, r.stderr)
	}
	args := append(append([]string{"run"}, e.stage1...), "oci-archive:"+image, "--signature="+elsewhere, "--", "/bin/echo", "verified")
	if r := e.skiff(args...); r.code != 0 || r.stdout != "verified\n" {
		t.Fatalf("--signature: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	if r := e.skiff("fetch", "--signature="+other+".asc", "oci-archive:"+image); r.code != 0 {
		t.Fatalf("fetch --signature: exit %d, %q", r.code, r.stderr)
	}
	sh(t, dir, "mv "+elsewhere+" "+image+".asc")
	// Tampered content is refused.
	sh(t, dir, "printf x >> "+image)
	if r := run(image); r.code != 125 || !strings.Contains(r.stderr, "bb") {
		t.Fatalf("tampered image: exit %d, %q", r.code, r.stderr)
	}
}
