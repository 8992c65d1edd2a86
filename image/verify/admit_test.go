package verify

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
)

// The key in image/trust/testdata, and its fingerprint.
const seedFingerprint = "7ed831aa895e8cd14a40081e78bdb928521fa106"

func TestAdmit(t *testing.T) {
	dir := t.TempDir()
	p := Policy{Keys: trust.Keystore{LocalDir: filepath.Join(dir, "etc"), SystemDir: filepath.Join(dir, "usr")}}
	archive := "oci-archive:/images/app.tar"
	appcName := "example.com/app:1.0"
	pgp := store.Verification{Kind: store.VerifiedOpenPGP, Key: seedFingerprint, Signed: "example.com/app"}
	img := &store.Image{ID: digest.FromString("m"), Verified: map[string]store.Verification{
		archive:                         pgp,
		appcName:                        pgp,
		"example.com/other:1.0":         pgp,
		"oci-archive:/images/u.tar":     {Kind: store.Unverified},
		"docker://example.com/app:1.0":  pgp,
		"oci-archive:/images/gone.tar":  {Kind: store.VerifiedOpenPGP, Key: "00" + seedFingerprint[2:], Signed: "example.com/app"},
		"oci-archive:/images/root.tar":  {Kind: store.VerifiedOpenPGP, Key: seedFingerprint},
		"https://example.com/x/app.aci": pgp,
	}}
	refused := func(name string) {
		t.Helper()
		if err := p.Admit(img, name); !errors.Is(err, ErrNotVerified) {
			t.Errorf("%s: admitted or wrong error: %v", name, err)
		}
	}
	// No key trusted yet: nothing is admitted, whatever the record says.
	for name := range img.Verified {
		refused(name)
	}
	refused("oci-archive:/images/never-recorded.tar")
	key, err := os.Open("../trust/testdata/key.gpg")
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	if _, err := p.Keys.Add("example.com/app", false, key); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{archive, appcName, "https://example.com/x/app.aci"} {
		if err := p.Admit(img, name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	refused("example.com/other:1.0")         // signed for example.com/app, asked as another appc name
	refused("docker://example.com/app:1.0")  // registry images need a cosign record
	refused("oci-archive:/images/u.tar")     // fetched unverified
	refused("oci-archive:/images/gone.tar")  // a key that is not trusted
	refused("oci-archive:/images/root.tar")  // unnamed: a root key only
	refused("oci-archive:/images/never.tar") // no record
	p.Insecure = true
	if err := p.Admit(img, "oci-archive:/images/u.tar"); err != nil {
		t.Errorf("insecure policy: %v", err)
	}
}
