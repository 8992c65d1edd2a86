// Package fetch brings images into the store from their sources. Import
// applies the pull policy, then picks the transport's importer from an
// explicit table:
//
//	oci:DIR[:REF], oci-archive:FILE[:REF]   layout.go: an OCI image layout, as a directory or a tar
//	docker://HOST/REPO[:TAG|@DIGEST]        registry.go: the distribution API (go-containerregistry)
//	docker-archive:FILE[:REF]               dockerarchive.go: "docker save" output
//
// Each reads a manifest (following an index to linux and this architecture),
// copies and verifies the blobs into the store, extracts each layer once,
// and records the image under its names. The registry importer downloads
// layers in parallel, hashing and extracting while they stream, one blob at
// a time per store (store.LockBlob), reporting progress (progress.go); the
// layout importer extracts a layer per CPU at once, each while its blob is
// copied. An
// archive that has not changed since it was last imported is not read again
// (cache.go). An import holds the store (store.Hold) so that image gc never
// removes what it has written but not yet recorded. A stored image is used
// instead of the source only if Options.Gate admits it, and an import records
// Options.Verification for its names. An archive to be verified is read with
// ReadArchive instead (pinned.go): once, through the signature check, from
// one open file, and imported from what that reading kept. Names an archive
// gives its image never read as another transport's (names.go).
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/skiff-project/skiff/image/appc"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// ErrUnsupportedTransport is returned for references that parse but that
// skiff cannot fetch yet.
var ErrUnsupportedTransport = errors.New("transport is not supported yet")

// ErrNotInStore is returned under --pull-policy=never for an image the store
// does not have.
var ErrNotInStore = errors.New("not in the image store")

// PullPolicy says when Import goes to an image's source.
type PullPolicy int

// Pull policies; the zero value is PullNew.
const (
	PullNew    PullPolicy = iota // only when the store has no image of that name (archives: when the file changed)
	PullUpdate                   // always ask the source; a registry sends only the blobs the store lacks
	PullNever                    // never: the image must be in the store under its name
)

// PullPolicies lists the policies' names, for help texts.
const PullPolicies = "new, update or never"

// ParsePullPolicy parses "new", "update" or "never".
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch s {
	case "new", "":
		return PullNew, nil
	case "update":
		return PullUpdate, nil
	case "never":
		return PullNever, nil
	}
	return 0, fmt.Errorf("--pull-policy=%s: unknown policy; use %s", s, PullPolicies)
}

// Options tune Import. The zero value pulls with PullNew, refuses plain
// HTTP and unverified TLS, uses no credentials and reports no progress.
type Options struct {
	Pull         PullPolicy
	InsecureHTTP bool      // allow registries that speak plain HTTP
	InsecureTLS  bool      // accept registry certificates that do not verify
	AuthFiles    []string  // docker config.json-format files, first match wins (see image/auth)
	Progress     io.Writer // where download progress goes; nil for none
	ProgressBars bool      // Progress is a terminal: redraw a bar per layer instead of printing lines
	// Gate decides whether an image already stored may be used instead of
	// going to the source (image/verify's Policy, or store.TrustInstalled for
	// a stage1); Import refuses to hand out a stored image without one.
	Gate store.Gate
	// Verification is recorded for the names the import gives the image:
	// how the caller checked it (the zero value records it as unverified).
	Verification store.Verification
}

type importer func(ctx context.Context, s *store.Store, ref reference.Reference, opts Options) (*store.Image, error)

// importers maps each implemented transport to its importer.
var importers = map[reference.Transport]importer{
	reference.OCI:           importLayoutDir,
	reference.OCIArchive:    importLayoutArchive,
	reference.Docker:        importRegistry,
	reference.DockerArchive: importDockerArchive,
	reference.ACI:           importAppc,
	reference.HTTPS:         importAppc,
	reference.AppcName:      importAppc,
}

// importAppc imports an appc image (file, URL or discovered name) unverified;
// stage0 verifies appc images itself (appc.Open, Verify, Import).
func importAppc(ctx context.Context, s *store.Store, ref reference.Reference, opts Options) (*store.Image, error) {
	return appc.ImportRef(ctx, s, ref, appc.Options{InsecureTLS: opts.InsecureTLS, AllowHTTP: opts.InsecureHTTP}, opts.Verification)
}

// cachedTransports are the archive transports whose imports are remembered
// by file identity (cache.go).
var cachedTransports = map[reference.Transport]bool{reference.OCIArchive: true, reference.DockerArchive: true}

// Import brings the image ref names into s, as opts.Pull says, and returns
// it. Errors are one line naming the source, e.g.
// "oci-archive:/x/bb.tar: index.json: unexpected end of JSON input".
func Import(ctx context.Context, s *store.Store, ref reference.Reference, opts Options) (*store.Image, error) {
	imp, ok := importers[ref.Transport]
	if !ok {
		return nil, fmt.Errorf("%s: %q: %w", ref, ref.Transport, ErrUnsupportedTransport)
	}
	if ref.Path != "" {
		abs, err := filepath.Abs(ref.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		ref.Path = abs
	}
	if img, err := fromStore(s, ref, opts); img != nil || err != nil {
		return img, err
	}
	release, err := s.Hold()
	if err != nil {
		return nil, err
	}
	defer release()
	img, err := imp(ctx, s, ref, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if cachedTransports[ref.Transport] {
		if err := rememberImport(s, ref, img); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	}
	return img, nil
}

// fromStore returns the stored image the pull policy says to use without
// going to the source, or nil; the gate must admit it.
func fromStore(s *store.Store, ref reference.Reference, opts Options) (*store.Image, error) {
	switch policy := opts.Pull; {
	case policy == PullNever:
		img, err := UseStored(s, ref, opts.Gate)
		if errors.Is(err, store.ErrImageNotFound) {
			return nil, fmt.Errorf("%s: %w and --pull-policy=never; fetch it first ('skiff fetch %s')", ref, ErrNotInStore, ref)
		}
		return img, err
	case policy == PullNew && ref.Transport == reference.Docker:
		img, err := UseStored(s, ref, opts.Gate)
		if errors.Is(err, store.ErrImageNotFound) {
			return nil, nil
		}
		return img, err
	case policy == PullNew && cachedTransports[ref.Transport]:
		img := cachedImport(s, ref)
		if img == nil {
			return nil, nil
		}
		if opts.Gate == nil {
			return nil, fmt.Errorf("image %q: no verification policy given", ref)
		}
		if err := opts.Gate.Admit(img, ref.String()); err != nil {
			return nil, nil // imported from this file unverified: import it again, as the caller asks
		}
		return img, nil
	}
	return nil, nil
}

// UseStored returns the image stored under ref's canonical name (or, for a
// registry reference by digest, under that manifest digest), if gate admits
// it under that name. A missing image is an error matching
// store.ErrImageNotFound.
func UseStored(s *store.Store, ref reference.Reference, gate store.Gate) (*store.Image, error) {
	img, err := s.Use(ref.String(), gate)
	if errors.Is(err, store.ErrImageNotFound) && ref.Digest != "" {
		if img, err = s.Lookup(ref.Digest.String()); err == nil {
			if err = gate.Admit(img, ref.String()); err != nil {
				return nil, err
			}
		}
	}
	return img, err
}
