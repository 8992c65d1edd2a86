//go:build functional

package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gpgHome is a throwaway GnuPG home for making keys and signatures.
type gpgHome struct {
	t   *testing.T
	dir string
	gpg string
}

func newGPGHome(t *testing.T) *gpgHome {
	t.Helper()
	need(t, "gpg")
	dir := t.TempDir()
	home := filepath.Join(dir, "gnupg")
	os.MkdirAll(home, 0o700)
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	return &gpgHome{t: t, dir: dir, gpg: "gpg --batch --quiet --pinentry-mode loopback --passphrase '' --homedir " + home}
}

// key makes a signing key (gpg --quick-gen-key args after the uid, gpg
// options before) and returns its lowercase fingerprint.
func (g *gpgHome) key(uid, pre, expire string) string {
	g.t.Helper()
	sh(g.t, g.dir, g.gpg+" "+pre+" --quick-gen-key '"+uid+"' ed25519 sign "+expire)
	return strings.TrimSpace(sh(g.t, g.dir, g.gpg+" --with-colons --list-keys '="+uid+"' | awk -F: '/^fpr/{print tolower($10); exit}'"))
}

// export writes the public key to FILE in the work directory.
func (g *gpgHome) export(fpr, file string, armored bool) string {
	g.t.Helper()
	opt := ""
	if armored {
		opt = "--armor "
	}
	path := filepath.Join(g.dir, file)
	sh(g.t, g.dir, g.gpg+" "+opt+"--export "+fpr+" > "+path)
	return path
}

// signedCopy copies the busybox test image to NAME.oci.tar, naming the image
// NAME:latest inside (the name a signer must be trusted for), and signs it.
func (g *gpgHome) signedCopy(e *env, name, fpr, pre string) string {
	g.t.Helper()
	path := namedCopy(g.t, e, g.dir, name+".oci.tar", name+":latest")
	sh(g.t, g.dir, g.gpg+" "+pre+" --local-user "+fpr+" --armor --detach-sign "+path)
	return path
}

// namedCopy writes dir/file, a copy of the busybox test image whose index
// names the image refName (org.opencontainers.image.ref.name).
func namedCopy(t *testing.T, e *env, dir, file, refName string) string {
	t.Helper()
	path := filepath.Join(dir, file)
	work := filepath.Join(t.TempDir(), "layout")
	sh(t, dir, "mkdir "+work+" && tar -C "+work+" -xf "+filepath.Join(e.images, "busybox.oci.tar")+
		" && sed -i 's|\"org.opencontainers.image.ref.name\":\"latest\"|\"org.opencontainers.image.ref.name\":\""+refName+"\"|' "+work+"/index.json"+
		" && grep -q '"+refName+"' "+work+"/index.json && tar -C "+work+" -cf "+path+" .")
	return path
}

// runFile runs an image file with verification on.
func (e *env) runFile(path string) result {
	e.t.Helper()
	args := append(append([]string{"run"}, e.stage1...), "oci-archive:"+path, "--", "/bin/echo", "verified")
	return e.skiff(args...)
}

// skiff trust with OpenPGP keys: fingerprint review, prefix and root keys,
// --list and --remove, vendor keys masked, expired and revoked keys.
func TestTrustOpenPGP(t *testing.T) {
	e := newEnv(t)
	g := newGPGHome(t)
	const past = "--faked-system-time 20200101T000000"
	app := g.key("App <app@skiff.invalid>", "", "never")
	root := g.key("Root <root@skiff.invalid>", "", "never")
	revoked := g.key("Revoked <revoked@skiff.invalid>", "", "never")
	expired := g.key("Expired <expired@skiff.invalid>", past, "1d")
	appKey, rootKey := g.export(app, "app.asc", true), g.export(root, "root.gpg", false)

	bb := g.signedCopy(e, "bb", app, "")
	other := g.signedCopy(e, "other", app, "")
	rooted := g.signedCopy(e, "rooted", root, "")
	exp := g.signedCopy(e, "exp", expired, past)
	rev := g.signedCopy(e, "rev", revoked, "")
	sh(t, g.dir, "rev=$(ls gnupg/openpgp-revocs.d/"+strings.ToUpper(revoked)+".rev) && sed 's/^:-----BEGIN/-----BEGIN/' $rev | "+g.gpg+" --import")
	revKey := g.export(revoked, "revoked.asc", true)

	check := func(r result, what string) {
		t.Helper()
		if r.code != 0 || r.stdout != "verified\n" {
			t.Fatalf("%s: exit %d, %q, %q", what, r.code, r.stdout, r.stderr)
		}
	}
	refused := func(path string, want ...string) {
		t.Helper()
		r := e.runFile(path)
		if r.code != 125 {
			t.Fatalf("%s: exit %d, want 125: %q", path, r.code, r.stderr)
		}
		checkOneLine(t, r)
		for _, w := range append(want, "--insecure-options=image") {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr %q does not mention %q", path, r.stderr, w)
			}
		}
	}

	refused(bb, "oci-archive:"+bb, "no key is trusted", "skiff trust --prefix=bb KEYFILE")
	// Without a terminal the fingerprint cannot be reviewed: refused, nothing written.
	e.fails(125, []string{"not a terminal", strings.ToUpper(app), "--skip-fingerprint-review"}, "trust", "--prefix=bb", appKey)
	if l := e.trustList(); len(l) != 0 {
		t.Fatalf("key written without review: %+v", l)
	}
	r := e.ok("trust", "--prefix=bb", "--skip-fingerprint-review", appKey)
	if !strings.Contains(r.stdout, "trusted key "+strings.ToUpper(app)) || !strings.Contains(r.stderr, "App <app@skiff.invalid>") {
		t.Errorf("trust: %q %q", r.stdout, r.stderr)
	}
	check(e.runFile(bb), "prefix key")
	// The key is trusted for bb only.
	refused(other, "trusted only for bb", "skiff trust --prefix=other")

	// A root key (binary) is trusted for every image.
	e.ok("trust", "--root", "--skip-fingerprint-review", rootKey)
	check(e.runFile(rooted), "root key")
	l := e.trustList()
	if len(l) != 2 || !l[0].Root || l[0].Fingerprint != root || l[1].Prefix != "bb" || l[1].Kind != "openpgp" || l[1].Origin != "admin" {
		t.Errorf("trust --list: %+v", l)
	}
	table := e.ok("trust", "--list").stdout
	if !strings.HasPrefix(table, "PREFIX") || !strings.Contains(table, strings.ToUpper(app)) {
		t.Errorf("trust --list table: %q", table)
	}
	if lines := strings.Split(strings.TrimSpace(e.ok("trust", "--list", "--no-legend").stdout), "\n"); len(lines) != 2 || strings.HasPrefix(lines[0], "PREFIX") {
		t.Errorf("trust --list --no-legend: %q", lines)
	}

	// Removed, the key no longer verifies bb.
	if r := e.ok("trust", "--remove", strings.ToUpper(app)); !strings.Contains(r.stdout, "removed openpgp key") {
		t.Errorf("trust --remove: %q", r.stdout)
	}
	refused(bb, "not trusted for", "skiff trust --prefix=bb")
	e.fails(125, []string{"no trusted key has that fingerprint", "skiff trust --list"}, "trust", "--remove", app)

	// A vendor key works until removed, which masks it with an empty admin file.
	vendorDir := filepath.Join(e.system, "trustedkeys", "prefix.d", "bb")
	os.MkdirAll(vendorDir, 0o755)
	sh(t, g.dir, "cp "+appKey+" "+filepath.Join(vendorDir, app))
	check(e.runFile(bb), "vendor key")
	if r := e.ok("trust", "--remove", app); !strings.Contains(r.stdout, "masked vendor openpgp key") {
		t.Errorf("trust --remove of a vendor key: %q", r.stdout)
	}
	if fi, err := os.Stat(filepath.Join(e.local, "trustedkeys", "prefix.d", "bb", app)); err != nil || fi.Size() != 0 {
		t.Errorf("no empty masking file: %v", err)
	}
	refused(bb, "not trusted for")
	var masked bool
	for _, k := range e.trustList() {
		masked = masked || k.Fingerprint == app && k.Origin == "vendor" && k.Masked
	}
	if !masked {
		t.Errorf("trust --list does not show the masked vendor key")
	}

	// Expired and revoked keys: trusted, but their signatures are refused.
	e.ok("trust", "--prefix=exp", "--skip-fingerprint-review", g.export(expired, "expired.asc", true))
	refused(exp, "expired", "signed again")
	r = e.ok("trust", "--prefix=rev", "--skip-fingerprint-review", revKey)
	if !strings.Contains(r.stderr, "revoked") {
		t.Errorf("trusting a revoked key gives no warning: %q", r.stderr)
	}
	refused(rev, "revoked", "signed again")

	// Tampered content.
	e.ok("trust", "--prefix=bb", "--skip-fingerprint-review", appKey)
	sh(t, g.dir, "printf x >> "+bb)
	refused(bb, "does not match the content")

	// OpenPGP keys are not for registry images, and the reverse.
	e.fails(125, []string{"cosign"}, "trust", "--prefix=docker://127.0.0.1:5000/x", "--skip-fingerprint-review", appKey)
	e.fails(125, []string{"not a PEM public key"}, "trust", "--prefix=docker://127.0.0.1:5000/x", "--cosign", "--skip-fingerprint-review", appKey)
}

// skiff trust --prefix=NAME alone fetches the keys announced by appc
// discovery; https only unless --insecure-options says otherwise.
func TestTrustDiscovery(t *testing.T) {
	e := newEnv(t)
	b := newACIBuilder(t, e)
	os.MkdirAll(filepath.Join(b.dir, "images", "127.0.0.1"), 0o755)
	b.build("images/127.0.0.1/busybox-1.0-linux-amd64.aci", manifest("127.0.0.1/busybox", nil), true)
	sh(t, b.dir, b.gpg+" --armor --export "+b.fpr+" > pubkeys.asc")
	srv := aciServer(t, b.dir)
	hostport := strings.TrimPrefix(srv.URL, "https://")

	e.fails(125, []string{"certificate", "--insecure-options=tls"}, "trust", "--prefix="+hostport+"/busybox", "--skip-fingerprint-review")
	e.fails(125, []string{"not a terminal"}, "--insecure-options=tls", "trust", "--prefix="+hostport+"/busybox")
	r := e.ok("--insecure-options=tls", "trust", "--prefix="+hostport+"/busybox", "--skip-fingerprint-review")
	if !strings.Contains(r.stdout, "trusted key "+strings.ToUpper(b.fpr)+` for prefix "127.0.0.1/busybox"`) || !strings.Contains(r.stderr, srv.URL+"/pubkeys.asc") {
		t.Fatalf("discovered key: %q %q", r.stdout, r.stderr)
	}
	if r := e.verifiedRun("tls", hostport+"/busybox:1.0"); r.code != 0 || r.stdout != appcOutput {
		t.Fatalf("image of the discovered key: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	// A key URL: plain HTTP refused unless allowed.
	e.fails(125, []string{"plain HTTP", "--insecure-options=http"}, "trust", "--prefix=x.example", "--skip-fingerprint-review", "http://127.0.0.1:1/key.asc")
	r = e.ok("--insecure-options=tls", "trust", "--prefix=url.example", "--skip-fingerprint-review", srv.URL+"/pubkeys.asc")
	if !strings.Contains(r.stdout, `for prefix "url.example"`) {
		t.Errorf("key from a URL: %q", r.stdout)
	}
	var l []trustEntryJSON
	json.Unmarshal([]byte(e.ok("trust", "--list", "--format=json").stdout), &l)
	if len(l) != 2 {
		t.Errorf("trust --list: %+v", l)
	}
	// --help documents the verb.
	if h := e.ok("trust", "--help").stdout; !strings.Contains(h, "cosign.d/prefix.d/HOST/REPO") || !strings.Contains(h, "Keyless") {
		t.Errorf("trust --help: %q", h)
	}
}
