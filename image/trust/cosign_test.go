package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// testdata/cosign/ holds keys and signatures made with openssl:
//
//	openssl ecparam -genkey -name prime256v1 | openssl ec -pubout > ecdsa.pub
//	openssl genpkey -algorithm ed25519 | openssl pkey -pubout > ed25519.pub
//	openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:2048 | openssl pkey -pubout > rsa.pub
//	openssl dgst -sha256 -sign EC.KEY payload.json | base64 -w0 > payload.ecdsa.sig
//	openssl pkeyutl -sign -inkey ED.KEY -rawin -in payload.json | base64 -w0 > payload.ed25519.sig
//	openssl dgst -sha256 -sign RSA.KEY payload.json | base64 -w0 > payload.rsa.sig
const (
	seedRepo   = "registry.example/team/app"
	seedDigest = digest.Digest("sha256:7d865e959b2466918c9863afca942d0fb89d7c9ac0c99bafc3749504ded97730")
)

var seedAlgorithms = []string{"ecdsa", "ed25519", "rsa"}

func seedSig(tb testing.TB, alg string) CosignSignature {
	return CosignSignature{Tag: SignatureTag(seedDigest), Payload: readTestdata(tb, "cosign/payload.json"),
		Signature: string(readTestdata(tb, "cosign/payload."+alg+".sig"))}
}

func trustCosign(tb testing.TB, k Keystore, prefix, alg string) *CosignKey {
	tb.Helper()
	c, err := k.AddCosign(prefix, prefix == "", bytes.NewReader(readTestdata(tb, "cosign/"+alg+".pub")))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestCosignSeeds(t *testing.T) {
	for _, alg := range seedAlgorithms {
		t.Run(alg, func(t *testing.T) {
			k := newKeystore(t)
			sig := seedSig(t, alg)
			_, err := k.VerifyCosign("img", seedRepo, []digest.Digest{seedDigest}, []CosignSignature{sig})
			wantErr(t, err, ErrNoTrustedKeys, "img")

			key := trustCosign(t, k, "registry.example/team", alg)
			got, err := k.VerifyCosign("img", seedRepo, []digest.Digest{seedDigest}, []CosignSignature{sig})
			if err != nil || got.Fingerprint != key.Fingerprint {
				t.Fatalf("verify: %v, %v", got, err)
			}
			// Segment-aware prefix: team does not cover teams.
			_, err = k.VerifyCosign("img", "registry.example/teams/app", []digest.Digest{seedDigest}, []CosignSignature{sig})
			wantErr(t, err, ErrUntrustedSigner, "img")
			if !strings.Contains(err.Error(), "trusted only for docker://registry.example/team") {
				t.Errorf("other prefix: %v", err)
			}
			// Digest of other content.
			other := digest.FromString("other")
			_, err = k.VerifyCosign("img", seedRepo, []digest.Digest{other}, []CosignSignature{sig})
			wantErr(t, err, ErrBadSignature, "img")
			// A signed image of another repository under this one's name.
			trustCosign(t, k, "registry.example/other", alg)
			_, err = k.VerifyCosign("img", "registry.example/other/app", []digest.Digest{seedDigest}, []CosignSignature{sig})
			wantErr(t, err, ErrNameMismatch, "img")
			// Tampered payload.
			bad := sig
			bad.Payload = bytes.Replace(sig.Payload, []byte("team/app"), []byte("team/apq"), 1)
			_, err = k.VerifyCosign("img", seedRepo, []digest.Digest{seedDigest}, []CosignSignature{bad})
			wantErr(t, err, ErrUntrustedSigner, "img")
		})
	}
}

func TestCosignRefusals(t *testing.T) {
	k := newKeystore(t)
	trustCosign(t, k, "registry.example", "ecdsa")
	ds := []digest.Digest{seedDigest}
	_, err := k.VerifyCosign("img", seedRepo, ds, nil)
	wantErr(t, err, ErrUnsigned, "img")
	if !strings.Contains(err.Error(), SignatureTag(seedDigest)) {
		t.Errorf("unsigned: %v", err)
	}
	sig := seedSig(t, "ecdsa")
	for name, s := range map[string]CosignSignature{
		"not base64":   {Payload: sig.Payload, Signature: "!!!"},
		"no signature": {Payload: sig.Payload},
		"bad payload":  {Payload: []byte("{"), Signature: sig.Signature},
	} {
		_, err := k.VerifyCosign("img", seedRepo, ds, []CosignSignature{s})
		if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Keyless: a certificate and a signature by no trusted key.
	keyless := seedSig(t, "ed25519")
	keyless.Certificate = true
	_, err = k.VerifyCosign("img", seedRepo, ds, []CosignSignature{keyless})
	if !errors.Is(err, ErrUntrustedSigner) || !strings.Contains(err.Error(), "keyless") {
		t.Errorf("keyless: %v", err)
	}
	// One good signature among bad ones is enough.
	if _, err := k.VerifyCosign("img", seedRepo, ds, []CosignSignature{keyless, sig}); err != nil {
		t.Errorf("good among bad: %v", err)
	}
}

func TestCosignKeyParsing(t *testing.T) {
	for _, alg := range seedAlgorithms {
		c, err := ParseCosignKey(readTestdata(t, "cosign/"+alg+".pub"))
		if err != nil || !strings.HasPrefix(c.Algorithm, alg[:2]) || len(c.Fingerprint) != 64 {
			t.Errorf("%s: %+v, %v", alg, c, err)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	for name, data := range map[string][]byte{
		"P-384":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"no PEM":     []byte("hello"),
		"two blocks": append(readTestdata(t, "cosign/ecdsa.pub"), readTestdata(t, "cosign/rsa.pub")...),
		"private":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	} {
		if _, err := ParseCosignKey(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCosignListRemove(t *testing.T) {
	k := newKeystore(t)
	key := trustCosign(t, k, "registry.example/team", "ecdsa")
	vendor := Keystore{LocalDir: k.SystemDir}
	vkey := trustCosign(t, vendor, "", "ed25519")
	es, err := k.List()
	if err != nil || len(es) != 2 {
		t.Fatalf("list: %+v, %v", es, err)
	}
	if e := es[0]; e.Kind != KindCosign || e.Prefix != "registry.example/team" || e.Origin != OriginAdmin || e.Fingerprint != key.Fingerprint ||
		e.Path != filepath.Join(k.LocalDir, "trustedkeys", "cosign.d", "prefix.d", "registry.example", "team", key.Fingerprint) {
		t.Errorf("admin entry: %+v", e)
	}
	if e := es[1]; !e.Root || e.Origin != OriginVendor || e.Masked {
		t.Errorf("vendor entry: %+v", e)
	}
	if _, err := k.Remove(strings.ToUpper(key.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	if keys, _ := k.CosignKeysFor(seedRepo); len(keys) != 1 || keys[0].Fingerprint != vkey.Fingerprint {
		t.Errorf("after removing the admin key: %v", keys)
	}
	done, err := k.Remove(vkey.Fingerprint)
	if err != nil || len(done) != 1 || !done[0].MaskedVendor {
		t.Fatalf("masking: %+v, %v", done, err)
	}
	if keys, _ := k.CosignKeysFor(seedRepo); len(keys) != 0 {
		t.Errorf("masked vendor key still trusted: %v", keys)
	}
	if _, err := k.Remove(vkey.Fingerprint); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("removing again: %v", err)
	}
}

func TestNormalizeRepo(t *testing.T) {
	for in, want := range map[string]string{
		"registry.example/team/app":        "registry.example/team/app",
		"registry.example/team/app:v1":     "registry.example/team/app",
		"127.0.0.1:5000/team/app@sha256:x": "127.0.0.1:5000/team/app",
		"127.0.0.1:5000/team/app":          "127.0.0.1:5000/team/app",
		"index.docker.io/library/busybox":  "docker.io/library/busybox",
		"busybox":                          "docker.io/library/busybox",
		"user/app":                         "docker.io/user/app",
	} {
		if got, err := normalizeRepo(in); err != nil || got != want {
			t.Errorf("normalizeRepo(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// signPayload signs a payload as cosign does, with a fresh P-256 key.
func signPayload(t *testing.T, k Keystore, prefix, repo string, d digest.Digest) CosignSignature {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if _, err := k.AddCosign(prefix, false, bytes.NewReader(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))); err != nil {
		t.Fatal(err)
	}
	payload := fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":%q},"optional":null}`, repo, d, CosignPayloadType)
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, priv, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return CosignSignature{Tag: SignatureTag(d), Payload: payload, Signature: base64.StdEncoding.EncodeToString(sig)}
}

// A signature over an index covers the platform manifest chosen from it.
func TestCosignIndexDigest(t *testing.T) {
	k := newKeystore(t)
	index, image := digest.FromString("index"), digest.FromString("image")
	sig := signPayload(t, k, "r.example/x", "r.example/x", index)
	if _, err := k.VerifyCosign("img", "r.example/x", []digest.Digest{index, image}, []CosignSignature{sig}); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseCosignPayload(f *testing.F) {
	f.Add(readTestdata(f, "cosign/payload.json"))
	f.Add([]byte(`{"critical":{"type":"cosign container image signature"}}`))
	f.Add([]byte(`{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"}} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseCosignPayload(data)
		if err != nil {
			return
		}
		if p.Critical.Type != CosignPayloadType {
			t.Fatalf("accepted type %q", p.Critical.Type)
		}
		if _, err := digest.Parse(p.Critical.Image.DockerManifestDigest); err != nil {
			t.Fatalf("accepted digest %q", p.Critical.Image.DockerManifestDigest)
		}
		if _, err := normalizeRepo(p.Critical.Identity.DockerReference); err != nil {
			t.Fatalf("accepted reference %q", p.Critical.Identity.DockerReference)
		}
	})
}

func FuzzParseCosignKey(f *testing.F) {
	for _, alg := range seedAlgorithms {
		f.Add(readTestdata(f, "cosign/"+alg+".pub"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseCosignKey(data)
		if err != nil {
			return
		}
		again, err := ParseCosignKey(k.PEM)
		if err != nil || again.Fingerprint != k.Fingerprint {
			t.Fatalf("canonical PEM does not parse back: %v", err)
		}
	})
}

// FuzzVerifyCosign feeds arbitrary payloads and signatures to the verifier
// with the seed keys trusted: it must never accept a payload that does not
// name the repository and digest asked for.
func FuzzVerifyCosign(f *testing.F) {
	for _, alg := range seedAlgorithms {
		f.Add(readTestdata(f, "cosign/payload.json"), string(readTestdata(f, "cosign/payload."+alg+".sig")))
	}
	dir := f.TempDir()
	k := Keystore{LocalDir: filepath.Join(dir, "etc")}
	for _, alg := range seedAlgorithms {
		trustCosign(f, k, "registry.example", alg)
	}
	f.Fuzz(func(t *testing.T, payload []byte, sig string) {
		s := CosignSignature{Tag: "t", Payload: payload, Signature: sig}
		key, err := k.VerifyCosign("img", seedRepo, []digest.Digest{seedDigest}, []CosignSignature{s})
		if err != nil {
			return
		}
		p, perr := ParseCosignPayload(payload)
		if key == nil || perr != nil || p.Critical.Image.DockerManifestDigest != seedDigest.String() {
			t.Fatalf("accepted %q: %v", payload, perr)
		}
	})
}
