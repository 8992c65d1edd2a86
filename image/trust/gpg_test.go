package trust

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The keys every GnuPG-based test shares, made once per test binary in one
// GNUPGHOME (ed25519: generation takes milliseconds).
type gpgFixture struct {
	home string

	root, prefix, unknown  string // plain signing keys
	expired, revoked       string // unusable now; their signatures were made while valid
	expiredSig, revokedSig []byte // armored signatures over content
	subkey                 string // certify-only primary with a signing subkey
}

var (
	fixtureOnce sync.Once
	fixture     *gpgFixture
	fixtureErr  error
	fixtureHome string
)

// content is what the fixture's signatures sign.
var content = []byte("an image, or rather its bytes\n")

// fix returns the shared fixture, skipping the test if gpg is not installed.
func fix(t *testing.T) *gpgFixture {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed: the OpenPGP verification tests need GnuPG to make real keys and signatures")
	}
	fixtureOnce.Do(func() { fixture, fixtureErr = newGPGFixture() })
	if fixtureErr != nil {
		t.Fatalf("making test keys with gpg: %v", fixtureErr)
	}
	return fixture
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureHome != "" {
		// Stop the agent this GNUPGHOME started, and only that one.
		exec.Command("gpgconf", "--homedir", fixtureHome, "--kill", "gpg-agent").Run()
		os.RemoveAll(fixtureHome)
	}
	os.Exit(code)
}

func newGPGFixture() (*gpgFixture, error) {
	home, err := os.MkdirTemp("", "skiff-gpg-") // short: the agent's socket lives here
	if err != nil {
		return nil, err
	}
	fixtureHome = home
	f := &gpgFixture{home: home}
	const past = "20200101T000000"
	steps := []struct {
		fpr  *string
		uid  string
		args []string
	}{
		{&f.root, "Root <root@example.com>", []string{"ed25519", "sign", "never"}},
		{&f.prefix, "App <app@example.com>", []string{"ed25519", "sign", "never"}},
		{&f.unknown, "Stranger <stranger@example.org>", []string{"ed25519", "sign", "never"}},
		{&f.revoked, "Revoked <revoked@example.com>", []string{"ed25519", "sign", "never"}},
		{&f.subkey, "Sub <sub@example.com>", []string{"ed25519", "cert", "never"}},
	}
	for _, s := range steps {
		if *s.fpr, err = f.genKey(s.uid, nil, s.args...); err != nil {
			return nil, err
		}
	}
	// Made in 2020 with a one-day life: expired long before now.
	if f.expired, err = f.genKey("Expired <expired@example.com>", []string{"--faked-system-time", past}, "ed25519", "sign", "1d"); err != nil {
		return nil, err
	}
	if f.expiredSig, err = f.signErr(f.expired, content, true, "--faked-system-time", past); err != nil {
		return nil, err
	}
	if f.revokedSig, err = f.signErr(f.revoked, content, true); err != nil {
		return nil, err
	}
	if err := f.revoke(f.revoked); err != nil {
		return nil, err
	}
	if _, err := f.gpg(nil, "--quick-add-key", f.subkey, "ed25519", "sign", "never"); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *gpgFixture) gpg(stdin []byte, args ...string) ([]byte, error) {
	args = append([]string{"--batch", "--yes", "--homedir", f.home, "--pinentry-mode", "loopback", "--passphrase", ""}, args...)
	cmd := exec.Command("gpg", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("gpg %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// genKey makes a key and returns its lowercase fingerprint.
func (f *gpgFixture) genKey(uid string, pre []string, algoUsageExpire ...string) (string, error) {
	args := append(append(pre, "--quick-gen-key", uid), algoUsageExpire...)
	if _, err := f.gpg(nil, args...); err != nil {
		return "", err
	}
	out, err := f.gpg(nil, "--with-colons", "--list-keys", "="+uid)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if fields := strings.Split(line, ":"); fields[0] == "fpr" && len(fields) > 9 {
			return strings.ToLower(fields[9]), nil // the first fpr line is the primary key's
		}
	}
	return "", fmt.Errorf("no fingerprint for %q in %s", uid, out)
}

// export returns the public key, armored or binary.
func (f *gpgFixture) export(t *testing.T, fpr string, armored bool) []byte {
	t.Helper()
	args := []string{"--export"}
	if armored {
		args = append(args, "--armor")
	}
	out, err := f.gpg(nil, append(args, fpr)...)
	if err != nil || len(out) == 0 {
		t.Fatalf("exporting %s: %v (%d bytes)", fpr, err, len(out))
	}
	return out
}

// sign makes a detached signature over data with the key fpr (its newest
// signing subkey if it has one).
func (f *gpgFixture) sign(t *testing.T, fpr string, data []byte, armored bool) []byte {
	t.Helper()
	out, err := f.signErr(fpr, data, armored)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *gpgFixture) signErr(fpr string, data []byte, armored bool, pre ...string) ([]byte, error) {
	args := append(pre, "--local-user", fpr, "--detach-sign")
	if armored {
		args = append(args, "--armor")
	}
	return f.gpg(data, args...)
}

// revoke imports the revocation certificate gpg made with the key.
func (f *gpgFixture) revoke(fpr string) error {
	rev, err := os.ReadFile(filepath.Join(f.home, "openpgp-revocs.d", strings.ToUpper(fpr)+".rev"))
	if err != nil {
		return err
	}
	// gpg puts a ':' before the armor header so that the file is not imported by mistake.
	rev = bytes.Replace(rev, []byte(":-----BEGIN"), []byte("-----BEGIN"), 1)
	_, err = f.gpg(rev, "--import")
	return err
}

// writeKey puts the public key fpr at configDir/trustedkeys/rel/FPR.
func writeKey(t *testing.T, configDir, rel string, key []byte, fpr string) {
	t.Helper()
	dir := filepath.Join(configDir, "trustedkeys", rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fpr), key, 0o644); err != nil {
		t.Fatal(err)
	}
}
