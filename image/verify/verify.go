// Package verify is skiff's image verification policy, the one every front
// end (the skiff command now, the OCI runtime command line and app add
// next) applies, and the gate the image store consults before it hands out
// a stored image to be run.
//
// A Policy says what must be verified and by which keys:
//
//   - oci-archive: and docker-archive: files need a detached binary OpenPGP
//     signature (FILE.asc) by a trusted key; the key must be trusted for
//     the name the archive's own content gives the image
//     (org.opencontainers.image.ref.name, RepoTags), never for the file's
//     name, and the signature is checked before the key's scope. The file
//     is read once, through the signature check, and imported from those
//     bytes (fetch.ReadArchive).
//   - appc images (.aci files, URLs, discovered names) need a detached
//     OpenPGP signature by a key trusted for the name in their manifest.
//   - registry images (docker://) need a cosign signature by a key trusted
//     for HOST/REPO over the manifest digest that is imported.
//   - oci: directories cannot be verified.
//
// What a stored image's record must show (Admit): every import records, per
// name, how the image was verified (store.Verification: the kind of
// signature, the key, the signed name, and for cosign the signatures
// themselves). With verification on, an image found in the store is used
// only if the record of the name it was asked by shows a signature that the
// current keys still accept for that name: a cosign record is verified again
// from the stored signatures (any of the image's records may serve), an
// OpenPGP record needs its key still trusted for the signed name (and, for
// an appc name, the signed name to be that name). Anything else (an image
// fetched with --insecure-options=image, a key no longer trusted, a store
// older than these records) is refused with the fix: fetch it again, or
// pass --insecure-options=image.
//
// With Policy.Insecure (--insecure-options=image) nothing is verified, every
// import is recorded as unverified, and stored images are used as they are;
// each such use is announced through Policy.Warn.
package verify

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
)

// Policy is the verification policy: the trusted keys, whether verification
// is on, and where warnings go. Its zero Keys trust nothing.
type Policy struct {
	Keys trust.Keystore
	// Insecure turns image verification off (--insecure-options=image).
	Insecure bool
	// Warn is told, one line each, what is not verified; nil for nowhere.
	Warn func(msg string)
}

// Request is one image a front end asks for.
type Request struct {
	Image     string // as the user gave it (reference syntax)
	Signature string // the detached signature of an image file or URL; "" for the one beside it
	// Fetch are the pull policy and the transport options; Fetch sets its
	// Gate and Verification.
	Fetch fetch.Options
	// Refetch goes to the source for an image stored under the name whose
	// record does not satisfy the policy, instead of refusing it: what
	// 'skiff fetch' asks for (a run refuses, naming that fix).
	Refetch bool
}

// Fetch brings the image req names into s, as the pull policy says, after
// verifying it as the policy says, and returns it; an image already stored
// is used only if Admit admits it.
func (p Policy) Fetch(ctx context.Context, s *store.Store, req Request) (*store.Image, error) {
	ref, err := reference.Parse(req.Image)
	if err != nil {
		return nil, err
	}
	if ref.Path != "" { // the store knows files by absolute path
		if ref.Path, err = filepath.Abs(ref.Path); err != nil {
			return nil, err
		}
	}
	if req.Signature != "" && ref.Transport == reference.Docker {
		return nil, fmt.Errorf("image %q: --signature is for image files and URLs; registry images are verified with their cosign signatures", req.Image)
	}
	opts := req.Fetch
	opts.Gate = p
	var img *store.Image
	switch {
	case isAppc(ref.Transport):
		img, err = p.fetchAppc(ctx, s, ref, req, opts)
	case p.Insecure:
		p.warn("signature verification of image %q skipped (--insecure-options=image)", req.Image)
		p.warnTransport(ref, req.Image, opts)
		opts.Verification = store.Verification{Kind: store.Unverified}
		img, err = fetch.Import(ctx, s, ref, opts)
	case ref.Transport == reference.Docker:
		p.warnTransport(ref, req.Image, opts)
		img, err = p.fetchRegistry(ctx, s, ref, req, opts)
	default:
		img, err = p.fetchArchive(ctx, s, ref, req, opts)
	}
	if err != nil {
		return nil, err
	}
	_ = s.Touch(img.ID)
	return img, nil
}

// stored returns the image stored under ref's name if the pull policy says
// to use it and Admit admits it; nil when the source is to be asked.
func (p Policy) stored(s *store.Store, ref reference.Reference, req Request, pull fetch.PullPolicy) (*store.Image, error) {
	if pull == fetch.PullUpdate {
		return nil, nil
	}
	img, err := fetch.UseStored(s, ref, p)
	switch {
	case err == nil:
		return img, nil
	case errors.Is(err, store.ErrImageNotFound) && pull == fetch.PullNever:
		return nil, fmt.Errorf("%s: %w and --pull-policy=never; fetch it first ('skiff fetch %s')", req.Image, fetch.ErrNotInStore, req.Image)
	case errors.Is(err, store.ErrImageNotFound):
		return nil, nil
	case errors.Is(err, ErrNotVerified) && req.Refetch && pull != fetch.PullNever:
		return nil, nil
	}
	return nil, err
}

func (p Policy) warn(format string, args ...any) {
	if p.Warn != nil {
		p.Warn(fmt.Sprintf(format, args...))
	}
}

// warnTransport announces the transport checks skipped for a registry image.
func (p Policy) warnTransport(ref reference.Reference, image string, opts fetch.Options) {
	if ref.Transport != reference.Docker && ref.Transport != reference.HTTPS && ref.Transport != reference.AppcName {
		return
	}
	if opts.InsecureTLS {
		p.warn("TLS certificate verification skipped for image %q (--insecure-options=tls)", image)
	}
	if opts.InsecureHTTP {
		p.warn("plain HTTP allowed for image %q (--insecure-options=http)", image)
	}
}

// isAppc reports whether images of transport t are appc images.
func isAppc(t reference.Transport) bool {
	return t == reference.ACI || t == reference.HTTPS || t == reference.AppcName
}
