package trust

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/ holds a fixed key and signatures so that these tests and the fuzz
// targets run without GnuPG. They were made with:
//
//	gpg --quick-gen-key 'Skiff Fuzz Seed <fuzz@example.com>' ed25519 sign never
//	gpg --export [--armor] FPR > key.{gpg,asc}
//	gpg --local-user FPR --detach-sign [--armor|--textmode] content
const seedFingerprint = "7ed831aa895e8cd14a40081e78bdb928521fa106"

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// seedKeystore trusts the testdata key for prefix example.com.
func seedKeystore(tb testing.TB, dir string) Keystore {
	tb.Helper()
	k := Keystore{LocalDir: filepath.Join(dir, "etc"), SystemDir: filepath.Join(dir, "usr")}
	if _, err := k.Add("example.com", false, bytes.NewReader(readTestdata(tb, "key.gpg"))); err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestSeedSignatures(t *testing.T) {
	k := seedKeystore(t, t.TempDir())
	content := readTestdata(t, "content")
	for _, sig := range []string{"content.asc", "content.sig"} {
		e, err := verify(k, "example.com/app", content, readTestdata(t, sig))
		if err != nil {
			t.Fatalf("%s: %v", sig, err)
		}
		if fingerprintOf(e) != seedFingerprint {
			t.Errorf("%s: signer %s", sig, fingerprintOf(e))
		}
		_, err = verify(k, "example.org/app", content, readTestdata(t, sig))
		// No key applies to the name; the signer's key is trusted for another prefix.
		wantErr(t, err, ErrUntrustedSigner, "example.org/app")
		_, err = verify(k, "example.com/app", append(content, 0), readTestdata(t, sig))
		wantErr(t, err, ErrBadSignature, "example.com/app")
	}
	// A text-mode signature holds for the content with other line endings
	// too: it does not sign an image file's bytes, and is refused.
	_, err := verify(k, "example.com/app", content, readTestdata(t, "content.txt.sig"))
	wantErr(t, err, ErrBadSignature, "example.com/app")
	if !strings.Contains(err.Error(), "text-mode") {
		t.Errorf("text-mode signature: %v", err)
	}
	crlf := bytes.ReplaceAll(content, []byte("\n"), []byte("\r\n"))
	_, err = verify(k, "example.com/app", crlf, readTestdata(t, "content.sig"))
	wantErr(t, err, ErrBadSignature, "example.com/app")
}

// FuzzVerifyDetached feeds arbitrary content and signature bytes to
// VerifyDetached with the testdata key trusted. It must never panic, must
// fail with exactly one verification sentinel, and may succeed only with the
// trusted key as signer.
func FuzzVerifyDetached(f *testing.F) {
	content := readTestdata(f, "content")
	for _, name := range []string{"content.asc", "content.sig", "content.txt.sig", "key.asc", "key.gpg"} {
		f.Add(content, readTestdata(f, name))
	}
	f.Add([]byte{}, []byte{})
	f.Add(content, append(readTestdata(f, "content.sig"), readTestdata(f, "content.txt.sig")...))
	k := seedKeystore(f, f.TempDir())
	outcomes := []error{ErrBadSignature, ErrUntrustedSigner, ErrKeyExpired, ErrKeyRevoked}

	f.Fuzz(func(t *testing.T, data, sig []byte) {
		e, err := verify(k, "example.com/app", data, sig)
		if err == nil {
			if e == nil || fingerprintOf(e) != seedFingerprint {
				t.Fatalf("accepted a signature without the trusted key as signer")
			}
			return
		}
		if e != nil {
			t.Fatalf("returned a signer with error %v", err)
		}
		matched := 0
		for _, s := range outcomes {
			if errors.Is(err, s) {
				matched++
			}
		}
		if matched != 1 || !strings.HasPrefix(err.Error(), `image "example.com/app": `) {
			t.Fatalf("error %q matches %d sentinels or does not name the image", err, matched)
		}
	})
}

// FuzzParseKey feeds arbitrary bytes to the key-file parser. It must never
// panic, and a key it accepts must survive Add's armored re-serialization with
// the same fingerprint and its file name being a fingerprint.
func FuzzParseKey(f *testing.F) {
	for _, name := range []string{"key.asc", "key.gpg", "content.asc", "content.sig"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parseKey(data)
		if err != nil {
			return
		}
		fpr := fingerprintOf(e)
		if !isFingerprint(fpr) {
			t.Fatalf("accepted key has fingerprint %q", fpr)
		}
		armored, err := armoredPublicKey(e)
		if err != nil {
			// Add refuses such a key; nothing is written.
			return
		}
		again, err := parseKey(armored)
		if err != nil {
			t.Fatalf("re-serialized key does not parse: %v", err)
		}
		if got := fingerprintOf(again); got != fpr {
			t.Fatalf("re-serialized key has fingerprint %s, want %s", got, fpr)
		}
	})
}
