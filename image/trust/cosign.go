package trust

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Cosign signatures (registry images). Keys are PEM "PUBLIC KEY" blocks
// (PKIX): ECDSA P-256, Ed25519 or RSA of at least 2048 bits, named by the
// lowercase hex sha256 of their DER encoding. A signature is one layer of
// the image at tag sha256-HEX.sig of the signed manifest: its content is the
// simple-signing payload below, its annotation CosignSignatureAnnotation the
// base64 signature over the payload bytes (ECDSA: ASN.1 over SHA-256;
// RSA: PKCS #1 v1.5 or PSS over SHA-256; Ed25519: over the bytes).

// Annotations of a cosign signature layer.
const (
	CosignSignatureAnnotation   = "dev.cosignproject.cosign/signature"
	CosignCertificateAnnotation = "dev.sigstore.cosign/certificate"
	// CosignPayloadType is the only critical.type accepted.
	CosignPayloadType = "cosign container image signature"
)

// ErrNameMismatch means a valid signature by a trusted key vouches for an
// image of another repository than the one asked for.
var ErrNameMismatch = errors.New("signature is for another image name")

// maxPayloadSize bounds a simple-signing payload.
const maxPayloadSize = 64 << 10

// CosignKey is a trusted cosign public key.
type CosignKey struct {
	Fingerprint string // lowercase hex sha256 of the DER public key
	Algorithm   string // "ecdsa-p256", "ed25519" or "rsa-BITS"
	Public      crypto.PublicKey
	PEM         []byte // the canonical PEM encoding
}

// ParseCosignKey reads exactly one PEM public key block.
func ParseCosignKey(data []byte) (*CosignKey, error) {
	if len(data) > maxKeySize {
		return nil, fmt.Errorf("key larger than %d bytes", maxKeySize)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM public key: no PEM block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("not a PEM public key: more than one PEM block")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("not a PEM public key: block type %q, want \"PUBLIC KEY\"", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PEM public key: %w", err)
	}
	k := &CosignKey{Public: pub}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("unsupported ECDSA curve %s (want P-256)", p.Curve.Params().Name)
		}
		k.Algorithm = "ecdsa-p256"
	case ed25519.PublicKey:
		k.Algorithm = "ed25519"
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too short (want at least 2048)", p.N.BitLen())
		}
		k.Algorithm = fmt.Sprintf("rsa-%d", p.N.BitLen())
	default:
		return nil, fmt.Errorf("unsupported public key type %T", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	k.Fingerprint = hex.EncodeToString(sum[:])
	k.PEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return k, nil
}

// verify reports whether sig is k's signature over payload.
func (k *CosignKey) verify(payload, sig []byte) bool {
	h := sha256.Sum256(payload)
	switch p := k.Public.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(p, h[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(p, payload, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(p, crypto.SHA256, h[:], sig) == nil ||
			rsa.VerifyPSS(p, crypto.SHA256, h[:], sig, nil) == nil
	}
	return false
}

// AddCosign trusts the cosign public key read from key (PEM) for registry
// images whose HOST/REPO is under prefix (given without "docker://"), or for
// every registry image if root is true. It writes the key to
// LocalDir/trustedkeys/cosign.d/{root.d,prefix.d/PREFIX}/FINGERPRINT and
// returns the fingerprint.
func (k Keystore) AddCosign(prefix string, root bool, key io.Reader) (*CosignKey, error) {
	data, err := io.ReadAll(io.LimitReader(key, maxKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("trusting cosign key: reading key: %w", err)
	}
	c, err := ParseCosignKey(data)
	if err != nil {
		return nil, fmt.Errorf("trusting cosign key: %w", err)
	}
	return c, k.write(cosignKind, prefix, root, c.Fingerprint, c.PEM)
}

// CosignKeysFor returns the cosign keys trusted for a registry image whose
// HOST/REPO is name, with KeysFor's prefix and masking rules.
func (k Keystore) CosignKeysFor(name string) ([]*CosignKey, error) {
	files, err := k.gather(cosignKind, name)
	if err != nil {
		return nil, err
	}
	keys := make([]*CosignKey, len(files))
	for i, f := range files {
		keys[i] = f.key.(*CosignKey)
	}
	return keys, nil
}

// CosignPayload is the simple-signing payload a cosign signature signs.
type CosignPayload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// ParseCosignPayload parses and checks a simple-signing payload: one JSON
// object of type CosignPayloadType naming a repository and a sha256
// manifest digest.
func ParseCosignPayload(data []byte) (*CosignPayload, error) {
	if len(data) > maxPayloadSize {
		return nil, fmt.Errorf("payload larger than %d bytes", maxPayloadSize)
	}
	var p CosignPayload
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("payload is not simple-signing JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("payload has data after its JSON object")
	}
	c := p.Critical
	if c.Type != CosignPayloadType {
		return nil, fmt.Errorf("payload type %q, want %q", c.Type, CosignPayloadType)
	}
	d, err := digest.Parse(c.Image.DockerManifestDigest)
	if err != nil || d.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("payload manifest digest %q is not a sha256 digest", c.Image.DockerManifestDigest)
	}
	if _, err := normalizeRepo(c.Identity.DockerReference); err != nil {
		return nil, fmt.Errorf("payload docker-reference %q: %w", c.Identity.DockerReference, err)
	}
	return &p, nil
}

// normalizeRepo turns a docker reference as signers write it (cosign:
// "host/repo"; others add ":tag" or "@digest"; docker.io's official images
// may be "index.docker.io/library/x" or "x") into skiff's HOST/REPO.
func normalizeRepo(ref string) (string, error) {
	if ref == "" {
		return "", errors.New("empty")
	}
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	host, repo, ok := strings.Cut(ref, "/")
	if !ok || !strings.ContainsAny(host, ".:") && host != "localhost" {
		host, repo = "docker.io", ref
	}
	switch host {
	case "index.docker.io", "registry-1.docker.io":
		host = "docker.io"
	}
	if host == "docker.io" && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	name := strings.ToLower(host) + "/" + repo
	if _, err := splitName(name); err != nil {
		return "", err
	}
	return name, nil
}

// CosignSignature is one signature layer read from a registry.
type CosignSignature struct {
	Tag         string // the .sig tag it was read from
	Payload     []byte
	Signature   string // base64, from CosignSignatureAnnotation; "" if absent
	Certificate bool   // the layer carries a (keyless) certificate
}

// SignatureTag is the tag cosign stores the signatures of manifest d under.
func SignatureTag(d digest.Digest) string {
	return string(d.Algorithm()) + "-" + d.Encoded() + ".sig"
}

// VerifyCosign checks that at least one of sigs is a valid signature, by a
// cosign key trusted for repo (HOST/REPO), over a payload naming repo and
// one of digests (the manifest asked for and, for an index, the platform
// manifest chosen from it). image names the image in errors. It returns the
// key that verified. Errors match the package's sentinels: ErrUnsigned,
// ErrNoTrustedKeys, ErrUntrustedSigner (also a key trusted for another
// prefix only: see the message), ErrBadSignature (malformed, or a digest
// that is not the content's), ErrNameMismatch.
func (k Keystore) VerifyCosign(image, repo string, digests []digest.Digest, sigs []CosignSignature) (*CosignKey, error) {
	fail := func(kind error, format string, args ...any) error {
		return &verifyError{image: image, detail: fmt.Sprintf(format, args...), kind: kind}
	}
	if len(sigs) == 0 {
		var tags []string
		for _, d := range digests {
			tags = append(tags, SignatureTag(d))
		}
		return nil, fail(ErrUnsigned, "not signed (no cosign signature at tag %s)", strings.Join(tags, " or "))
	}
	keys, err := k.CosignKeysFor(repo)
	if err != nil {
		return nil, err
	}
	var firstErr, nameErr, digestErr, malformed error
	keyless := false
	for _, s := range sigs {
		key, p, err := verifyOne(keys, s)
		switch {
		case err != nil:
			if malformed == nil {
				malformed = fail(ErrBadSignature, "malformed cosign signature at tag %s: %v", s.Tag, err)
			}
			continue
		case key == nil:
			keyless = keyless || s.Certificate && s.Signature != ""
			continue
		}
		got, _ := normalizeRepo(p.Critical.Identity.DockerReference)
		want := digest.Digest(p.Critical.Image.DockerManifestDigest)
		switch {
		case got != repo:
			if nameErr == nil {
				nameErr = fail(ErrNameMismatch, "signature by key %s at tag %s vouches for %q, not %q (a signed image of another repository)",
					strings.ToUpper(key.Fingerprint), s.Tag, p.Critical.Identity.DockerReference, repo)
			}
		case !containsDigest(digests, want):
			if digestErr == nil {
				digestErr = fail(ErrBadSignature, "signature by key %s is for manifest %s, but the registry serves %s (tampered or replaced content)",
					strings.ToUpper(key.Fingerprint), want, digests[0])
			}
		default:
			return key, nil
		}
	}
	for _, e := range []error{digestErr, nameErr, malformed} {
		if e != nil && firstErr == nil {
			firstErr = e
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if len(keys) == 0 {
		if prefix := k.cosignSignerElsewhere(sigs); prefix != "" {
			return nil, fail(ErrUntrustedSigner, "signed by a cosign key trusted only for %s, not for docker://%s", prefix, repo)
		}
		if keyless {
			return nil, fail(ErrNoTrustedKeys, "no cosign key is trusted for docker://%s and the signature is keyless (certificate), which skiff does not verify", repo)
		}
		return nil, fail(ErrNoTrustedKeys, "no cosign key is trusted for docker://%s", repo)
	}
	if prefix := k.cosignSignerElsewhere(sigs); prefix != "" {
		return nil, fail(ErrUntrustedSigner, "signed by a cosign key trusted only for %s, not for docker://%s", prefix, repo)
	}
	if keyless {
		return nil, fail(ErrUntrustedSigner, "signed keylessly (certificate) or by a key not trusted for docker://%s; skiff verifies key signatures only", repo)
	}
	return nil, fail(ErrUntrustedSigner, "signed by a cosign key that is not trusted for docker://%s", repo)
}

// verifyOne finds the key among keys that made s. It returns an error only
// for a malformed signature, a nil key when no key made it.
func verifyOne(keys []*CosignKey, s CosignSignature) (*CosignKey, *CosignPayload, error) {
	if s.Signature == "" {
		if s.Certificate {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("no %s annotation", CosignSignatureAnnotation)
	}
	raw, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil {
		return nil, nil, fmt.Errorf("signature is not base64: %w", err)
	}
	for _, key := range keys {
		if !key.verify(s.Payload, raw) {
			continue
		}
		p, err := ParseCosignPayload(s.Payload)
		if err != nil {
			return nil, nil, err
		}
		return key, p, nil
	}
	if _, err := ParseCosignPayload(s.Payload); err != nil {
		return nil, nil, err
	}
	return nil, nil, nil
}

// cosignSignerElsewhere returns the prefix ("docker://..." or "every
// registry image") of a trusted cosign key that made one of sigs, or "".
func (k Keystore) cosignSignerElsewhere(sigs []CosignSignature) string {
	entries, err := k.List()
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if e.Kind != KindCosign || e.Masked {
			continue
		}
		key, ok := e.key.(*CosignKey)
		if !ok {
			continue
		}
		for _, s := range sigs {
			if found, _, err := verifyOne([]*CosignKey{key}, s); err == nil && found != nil {
				return e.DisplayPrefix()
			}
		}
	}
	return ""
}

func containsDigest(ds []digest.Digest, d digest.Digest) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}
