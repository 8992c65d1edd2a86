package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
)

// Bounds on what a signature tag may make skiff read.
const (
	maxSignatureLayers = 32
	maxPayload         = 64 << 10
)

// fetchRegistry brings a docker:// image into the store only after its
// cosign signature is verified: it resolves the tag to a manifest digest
// (storing nothing), verifies the signatures at sha256-HEX.sig for that
// digest, then imports exactly that digest, recording the signatures.
func (p Policy) fetchRegistry(ctx context.Context, s *store.Store, ref reference.Reference, req Request, opts fetch.Options) (*store.Image, error) {
	if img, err := p.stored(s, ref, req, opts.Pull); img != nil || err != nil {
		return img, err
	}
	rm, err := fetch.NewRemote(ref, opts)
	if err != nil {
		return nil, err
	}
	res, err := rm.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	v, err := p.VerifyCosign(ctx, rm, ref, req.Image, res.Digests)
	if err != nil {
		return nil, err
	}
	return rm.Import(ctx, s, res.Digests[0], v)
}

// VerifyCosign checks the cosign signatures of the manifests digests names
// (top first; the last is the image) for ref's repository, and returns the
// record of that verification (the key, and the signatures, so that Admit
// can check them again).
func (p Policy) VerifyCosign(ctx context.Context, rm *fetch.Remote, ref reference.Reference, image string, digests []digest.Digest) (store.Verification, error) {
	repo := ref.Host + "/" + ref.Repo
	var sigs []trust.CosignSignature
	for _, d := range digests {
		found, err := cosignSignatures(ctx, rm, d)
		if err != nil {
			return store.Verification{}, fmt.Errorf("image %q: reading its cosign signature: %w", image, err)
		}
		sigs = append(sigs, found...)
	}
	key, err := p.Keys.VerifyCosign(image, repo, digests, sigs)
	if err != nil {
		return store.Verification{}, fmt.Errorf("%w; %s", err, cosignFix(err, repo))
	}
	return cosignRecord(key, repo, digests, sigs), nil
}

// cosignFix says what to do about a refused registry image.
func cosignFix(err error, repo string) string {
	trustCmd := fmt.Sprintf("'skiff trust --prefix=docker://%s --cosign PUBKEY.pem'", repo)
	switch {
	case errors.Is(err, trust.ErrUnsigned):
		return "sign it ('cosign sign --key KEY " + repo + "@DIGEST') and trust the key with " + trustCmd + ", or pass --insecure-options=image"
	case errors.Is(err, trust.ErrNoTrustedKeys), errors.Is(err, trust.ErrUntrustedSigner):
		return "if you trust the signer, trust its public key with " + trustCmd + " (keyless signatures are not supported), or pass --insecure-options=image"
	case errors.Is(err, trust.ErrNameMismatch):
		return "the publisher must sign this repository's image itself; or pass --insecure-options=image"
	}
	return "fetch it from a source you trust, or pass --insecure-options=image"
}

// cosignSignatures reads the signature layers at the .sig tag of d; none
// when the tag does not exist.
func cosignSignatures(ctx context.Context, rm *fetch.Remote, d digest.Digest) ([]trust.CosignSignature, error) {
	tag := trust.SignatureTag(d)
	data, _, err := rm.Manifest(ctx, tag)
	if errors.Is(err, fetch.ErrManifestUnknown) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return []trust.CosignSignature{{Tag: tag}}, nil // malformed: VerifyCosign says so
	}
	if len(m.Layers) > maxSignatureLayers {
		return nil, fmt.Errorf("tag %s holds %d signatures, more than %d", tag, len(m.Layers), maxSignatureLayers)
	}
	var sigs []trust.CosignSignature
	for _, l := range m.Layers {
		if l.Size > maxPayload {
			return nil, fmt.Errorf("tag %s: signature payload of %d bytes, more than %d", tag, l.Size, maxPayload)
		}
		payload, err := rm.Blob(ctx, l.Digest, maxPayload)
		if err != nil {
			return nil, fmt.Errorf("tag %s: %w", tag, err)
		}
		sigs = append(sigs, trust.CosignSignature{
			Tag:         tag,
			Payload:     payload,
			Signature:   strings.TrimSpace(l.Annotations[trust.CosignSignatureAnnotation]),
			Certificate: l.Annotations[trust.CosignCertificateAnnotation] != "",
		})
	}
	return sigs, nil
}
