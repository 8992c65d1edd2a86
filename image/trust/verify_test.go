package trust

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

var sentinels = []error{ErrUnsigned, ErrNoTrustedKeys, ErrUntrustedSigner, ErrBadSignature, ErrKeyExpired, ErrKeyRevoked}

func newKeystore(t *testing.T) Keystore {
	dir := t.TempDir()
	return Keystore{LocalDir: filepath.Join(dir, "etc"), SystemDir: filepath.Join(dir, "usr")}
}

func fingerprintOf(e *openpgp.Entity) string { return fmt.Sprintf("%x", e.PrimaryKey.Fingerprint) }

// wantErr checks that err matches want and no other sentinel, and that its
// text names the image.
func wantErr(t *testing.T, err error, want error, image string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("err %q also matches %v", err, s)
		}
	}
	if prefix := fmt.Sprintf("image %q: ", image); !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("err %q does not start with %q", err, prefix)
	}
}

func verify(k Keystore, image string, data, sig []byte) (*openpgp.Entity, error) {
	return k.VerifyDetached(image, bytes.NewReader(data), bytes.NewReader(sig))
}

func TestVerifyRootKey(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)
	writeKey(t, k.LocalDir, "root.d", f.export(t, f.root, true), f.root)
	for _, armored := range []bool{true, false} {
		sig := f.sign(t, f.root, content, armored)
		for _, image := range []string{"example.com/app", "other.org/x/y", "a"} {
			e, err := verify(k, image, content, sig)
			if err != nil {
				t.Fatalf("armored=%v %s: %v", armored, image, err)
			}
			if got := fingerprintOf(e); got != f.root {
				t.Errorf("signer = %s, want %s", got, f.root)
			}
		}
	}
}

func TestVerifyPrefixKey(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)
	// A binary key file, in the vendor tree: both forms and both trees load.
	writeKey(t, k.SystemDir, "prefix.d/example.com/app", f.export(t, f.prefix, false), f.prefix)
	sig := f.sign(t, f.prefix, content, true)

	for _, image := range []string{"example.com/app", "example.com/app/x", "example.com/app/x/y"} {
		e, err := verify(k, image, content, sig)
		if err != nil {
			t.Fatalf("%s: %v", image, err)
		}
		if got := fingerprintOf(e); got != f.prefix {
			t.Errorf("%s: signer = %s, want %s", image, got, f.prefix)
		}
	}
	// No key at all applies to these names: the signer is trusted for another prefix only.
	for _, image := range []string{"example.com/apple", "example.com", "example.com/ap", "other.org/example.com/app"} {
		_, err := verify(k, image, content, sig)
		wantErr(t, err, ErrUntrustedSigner, image)
		if !strings.Contains(err.Error(), "trusted only for example.com/app") {
			t.Errorf("%s: %v", image, err)
		}
	}

	// With a root key present, the prefix key is still not trusted beyond its prefix.
	writeKey(t, k.LocalDir, "root.d", f.export(t, f.root, true), f.root)
	_, err := verify(k, "example.com/apple", content, sig)
	wantErr(t, err, ErrUntrustedSigner, "example.com/apple")
	want := fmt.Sprintf(`image "example.com/apple": signed by key %s which is trusted only for example.com/app, not for "example.com/apple"`, strings.ToUpper(f.prefix))
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
}

func TestVerifyRefusals(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)
	for _, fpr := range []string{f.root, f.expired, f.revoked} {
		writeKey(t, k.LocalDir, "root.d", f.export(t, fpr, true), fpr)
	}
	good := f.sign(t, f.root, content, false)
	goodArmored := f.sign(t, f.root, content, true)
	tampered := append(bytes.Clone(content), '!')
	flipped := bytes.Clone(good)
	flipped[len(flipped)-3] ^= 0x40 // inside the signature's MPI/EdDSA value

	for _, tc := range []struct {
		name      string
		data, sig []byte
		want      error
		text      string // substring of the error
	}{
		{"tampered content", tampered, good, ErrBadSignature, "signature by key " + strings.ToUpper(f.root) + " does not match the content"},
		{"tampered content armored", tampered, goodArmored, ErrBadSignature, "does not match the content"},
		{"unknown key", content, f.sign(t, f.unknown, content, true), ErrUntrustedSigner, "signed by key " + strings.ToUpper(f.unknown) + " which is not trusted"},
		{"flipped signature bit", content, flipped, ErrBadSignature, "key " + strings.ToUpper(f.root)},
		{"garbage", content, []byte("this is not a signature"), ErrBadSignature, "malformed signature"},
		{"empty", content, nil, ErrBadSignature, "malformed signature: no signature packet"},
		{"truncated", content, good[:len(good)/2], ErrBadSignature, "malformed signature"},
		{"truncated armor", content, goodArmored[:len(goodArmored)/2], ErrBadSignature, "malformed signature"},
		{"public key instead", content, f.export(t, f.root, false), ErrBadSignature, "malformed signature: a detached signature holds only signature packets"},
		{"armored key instead", content, f.export(t, f.root, true), ErrBadSignature, `armored "pgp public key block" block`},
		{"huge", content, bytes.Repeat([]byte{0xff}, maxSignatureSize+1), ErrBadSignature, "larger than"},
		{"expired key", content, f.expiredSig, ErrKeyExpired, "signed by key " + strings.ToUpper(f.expired) + " which has expired"},
		{"revoked key", content, f.revokedSig, ErrKeyRevoked, "signed by key " + strings.ToUpper(f.revoked) + " which has been revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := verify(k, "example.com/app", tc.data, tc.sig)
			if e != nil {
				t.Errorf("returned signer %s on failure", fingerprintOf(e))
			}
			wantErr(t, err, tc.want, "example.com/app")
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err %q does not contain %q", err, tc.text)
			}
		})
	}
}

func TestVerifySigningSubkey(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)
	writeKey(t, k.LocalDir, "prefix.d/example.com", f.export(t, f.subkey, true), f.subkey)
	sig := f.sign(t, f.subkey, content, false)
	e, err := verify(k, "example.com/app", content, sig)
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprintOf(e); got != f.subkey {
		t.Errorf("signer = %s, want the primary key %s", got, f.subkey)
	}
}

func TestMasking(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)
	writeKey(t, k.SystemDir, "root.d", f.export(t, f.root, true), f.root)
	writeKey(t, k.SystemDir, "prefix.d/example.com/app", f.export(t, f.prefix, true), f.prefix)
	sig := f.sign(t, f.root, content, true)
	if _, err := verify(k, "example.com/app", content, sig); err != nil {
		t.Fatalf("vendor key: %v", err)
	}

	// An empty admin file in a prefix directory masks the vendor root key for
	// names under that prefix only.
	writeKey(t, k.LocalDir, "prefix.d/example.com", nil, f.root)
	_, err := verify(k, "example.com/app", content, sig)
	wantErr(t, err, ErrUntrustedSigner, "example.com/app")
	if _, err := verify(k, "other.org/x", content, sig); err != nil {
		t.Errorf("other.org/x: %v", err)
	}

	// One in root.d masks it everywhere.
	writeKey(t, k.LocalDir, "root.d", nil, f.root)
	_, err = verify(k, "other.org/x", content, sig)
	wantErr(t, err, ErrNoTrustedKeys, "other.org/x")
	keys, err := k.KeysFor("example.com/app")
	if err != nil || len(keys) != 1 || fingerprintOf(keys[0]) != f.prefix {
		t.Errorf("KeysFor = %d keys, %v; want only %s", len(keys), err, f.prefix)
	}

	// An admin key is never masked, and appears once however often it is trusted.
	writeKey(t, k.LocalDir, "root.d", f.export(t, f.root, true), f.root)
	writeKey(t, k.LocalDir, "prefix.d/example.com/app", f.export(t, f.root, false), f.root)
	if _, err := verify(k, "example.com/app", content, sig); err != nil {
		t.Errorf("admin key: %v", err)
	}
	if keys, _ := k.KeysFor("example.com/app"); len(keys) != 2 {
		t.Errorf("KeysFor = %d keys, want 2", len(keys))
	}
}

func TestAdd(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)

	fpr, err := k.Add("", true, bytes.NewReader(f.export(t, f.root, true)))
	if err != nil || fpr != f.root {
		t.Fatalf("Add root = %q, %v; want %s", fpr, err, f.root)
	}
	// Binary key, given with its secret part: only the public part is stored.
	secret, err := f.gpg(nil, "--export-secret-keys", f.prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range [][]byte{f.export(t, f.prefix, false), secret} {
		fpr, err = k.Add("example.com/app", false, bytes.NewReader(key))
		if err != nil || fpr != f.prefix {
			t.Fatalf("Add prefix = %q, %v; want %s", fpr, err, f.prefix)
		}
	}
	stored, err := os.ReadFile(filepath.Join(k.LocalDir, "trustedkeys/prefix.d/example.com/app", f.prefix))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(stored, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		t.Errorf("stored key is not an armored public key:\n%s", stored)
	}
	if e, err := parseKey(stored); err != nil || e.PrivateKey != nil {
		t.Errorf("stored key: err %v, has private key %v", err, e != nil && e.PrivateKey != nil)
	}
	if ents, _ := os.ReadDir(filepath.Dir(filepath.Join(k.LocalDir, "trustedkeys/prefix.d/example.com/app", f.prefix))); len(ents) != 1 {
		t.Errorf("prefix directory holds %d entries, want the key alone", len(ents))
	}

	if _, err := verify(k, "x.org/y", content, f.sign(t, f.root, content, true)); err != nil {
		t.Errorf("root key added: %v", err)
	}
	if _, err := verify(k, "example.com/app/z", content, f.sign(t, f.prefix, content, false)); err != nil {
		t.Errorf("prefix key added: %v", err)
	}
	if _, err := verify(k, "example.com/apple", content, f.sign(t, f.prefix, content, false)); !errors.Is(err, ErrUntrustedSigner) {
		t.Errorf("prefix key beyond its prefix: %v", err)
	}

	// Adding over a masking file un-masks.
	writeKey(t, k.LocalDir, "prefix.d/m", nil, f.unknown)
	if _, err := k.Add("m", false, bytes.NewReader(f.export(t, f.unknown, true))); err != nil {
		t.Fatal(err)
	}
	if keys, err := k.KeysFor("m"); err != nil || len(keys) != 2 {
		t.Errorf("KeysFor(m) = %d keys, %v; want root and the added key", len(keys), err)
	}
}

func TestAddRefuses(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)
	key := f.export(t, f.root, true)
	two := append(f.export(t, f.root, false), f.export(t, f.prefix, false)...)
	for _, tc := range []struct {
		prefix string
		root   bool
		key    []byte
	}{
		{"", false, key},
		{"example.com", true, key},
		{"/etc", false, key},
		{"../x", false, key},
		{"a/../../x", false, key},
		{"a//b", false, key},
		{"a/", false, key},
		{"./a", false, key},
		{`a\b`, false, key},
		{"example.com", false, nil},
		{"example.com", false, []byte("not a key")},
		{"example.com", false, f.sign(t, f.root, content, true)},
		{"example.com", false, two},
	} {
		if fpr, err := k.Add(tc.prefix, tc.root, bytes.NewReader(tc.key)); err == nil {
			t.Errorf("Add(%q, %v, %d bytes) = %s, want an error", tc.prefix, tc.root, len(tc.key), fpr)
		}
	}
	if _, err := os.Stat(filepath.Join(k.LocalDir, "trustedkeys")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused Adds wrote to the keystore: %v", err)
	}
	if _, err := (Keystore{SystemDir: k.SystemDir}).Add("", true, bytes.NewReader(key)); err == nil {
		t.Error("Add with no LocalDir succeeded")
	}
}

func TestKeysForBadKeystore(t *testing.T) {
	f := fix(t)
	for _, tc := range []struct {
		name, file string
		data       []byte
		text       string
	}{
		{"misnamed", "mykey.asc", f.export(t, f.root, true), "not a lowercase hex key fingerprint"},
		{"upper-case name", strings.ToUpper(f.root), f.export(t, f.root, true), "not a lowercase hex key fingerprint"},
		{"wrong key", f.root, f.export(t, f.prefix, true), "holds key " + strings.ToUpper(f.prefix)},
		{"not a key", f.root, []byte("hello"), "not an OpenPGP public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKeystore(t)
			writeKey(t, k.SystemDir, "prefix.d/example.com", tc.data, tc.file)
			_, err := k.KeysFor("example.com/app")
			if err == nil || !strings.Contains(err.Error(), tc.text) || !strings.HasPrefix(err.Error(), `image "example.com/app": `) {
				t.Fatalf("err = %v, want one about %q", err, tc.text)
			}
			_, err = verify(k, "example.com/app", content, f.sign(t, f.root, content, true))
			for _, s := range sentinels {
				if errors.Is(err, s) {
					t.Errorf("keystore error %q matches %v", err, s)
				}
			}
			// Names the broken directory does not apply to are unaffected.
			if _, err := k.KeysFor("other.org/app"); err != nil {
				t.Errorf("other.org/app: %v", err)
			}
		})
	}

	// Hidden files (atomic-write temporaries) and missing trees are fine.
	k := newKeystore(t)
	writeKey(t, k.LocalDir, "root.d", []byte("partial"), "."+f.root+".tmp-123")
	if keys, err := k.KeysFor("example.com"); err != nil || len(keys) != 0 {
		t.Errorf("KeysFor = %d keys, %v; want none, nil", len(keys), err)
	}
	if keys, err := (Keystore{}).KeysFor("example.com"); err != nil || len(keys) != 0 {
		t.Errorf("empty Keystore: %d keys, %v", len(keys), err)
	}
}

func TestBadImageNames(t *testing.T) {
	k := newKeystore(t)
	for _, name := range []string{"", "/abs", "../x", "a/../b", "a//b", "a/", ".", "a\x00b"} {
		if _, err := k.KeysFor(name); err == nil {
			t.Errorf("KeysFor(%q) succeeded", name)
		}
		if _, err := verify(k, name, content, nil); err == nil {
			t.Errorf("VerifyDetached(%q) succeeded", name)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestVerifyReadErrors(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)
	writeKey(t, k.LocalDir, "root.d", f.export(t, f.root, true), f.root)
	sig := f.sign(t, f.root, content, true)
	for name, call := range map[string]func() error{
		"content": func() error {
			_, err := k.VerifyDetached("a/b", io.MultiReader(bytes.NewReader(content[:3]), failingReader{}), bytes.NewReader(sig))
			return err
		},
		"signature": func() error {
			_, err := k.VerifyDetached("a/b", bytes.NewReader(content), failingReader{})
			return err
		},
	} {
		err := call()
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Errorf("%s: err = %v, want the read error", name, err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				t.Errorf("%s: read error %q matches %v", name, err, s)
			}
		}
	}
}

func TestSignaturePathFor(t *testing.T) {
	if got := SignaturePathFor("/tmp/app.aci"); got != "/tmp/app.aci.asc" {
		t.Errorf("SignaturePathFor = %q", got)
	}
	if err := fmt.Errorf("image %q: %w", "x", ErrUnsigned); !errors.Is(err, ErrUnsigned) {
		t.Error("ErrUnsigned does not wrap")
	}
}

// The signature is checked before the signer's scope: tampered content is
// a bad signature whatever the key is trusted for, and VerifySignature
// accepts any trusted key, leaving the name to Scope.
func TestSignatureBeforeScope(t *testing.T) {
	f := fix(t)
	k := newKeystore(t)
	writeKey(t, k.LocalDir, "prefix.d/example.com", f.export(t, f.prefix, true), f.prefix)
	sig := f.sign(t, f.prefix, content, true)
	_, err := verify(k, "other.org/x", append(append([]byte{}, content...), 'x'), sig)
	wantErr(t, err, ErrBadSignature, "other.org/x")
	if !strings.Contains(err.Error(), "signature invalid") {
		t.Errorf("tampered: %v", err)
	}
	_, err = verify(k, "other.org/x", content, sig)
	wantErr(t, err, ErrUntrustedSigner, "other.org/x")
	if !strings.Contains(err.Error(), "trusted only for example.com") {
		t.Errorf("scope: %v", err)
	}
	signer, err := k.VerifySignature("file", bytes.NewReader(content), bytes.NewReader(sig))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Scope("file", signer, []string{"example.com/app"}); err != nil {
		t.Errorf("in scope: %v", err)
	}
	wantErr(t, k.Scope("file", signer, []string{"example.com/app", "other.org/x"}), ErrUntrustedSigner, "file")
	wantErr(t, k.Scope("file", signer, nil), ErrUntrustedSigner, "file") // an unnamed image: root keys only
	var unknown *UnknownSignerError
	if _, err := (Keystore{LocalDir: t.TempDir()}).VerifySignature("file", bytes.NewReader(content), bytes.NewReader(sig)); !errors.As(err, &unknown) || !errors.Is(err, ErrUntrustedSigner) {
		t.Errorf("no keys: %v", err)
	}
	for in, want := range map[string]string{"example.com/app:v1": "example.com/app", "localhost:5000/a": "localhost:5000/a",
		"bb": "bb", "h:1/a/b:c@sha256:00": "h:1/a/b"} {
		if got := ImageName(in); got != want {
			t.Errorf("ImageName(%q) = %q, want %q", in, got, want)
		}
	}
}
