package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/skiff-project/skiff/image/auth"
	"github.com/skiff-project/skiff/image/layer"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// ErrPlainHTTP is returned for a registry that speaks plain HTTP when
// Options.InsecureHTTP is not set.
var ErrPlainHTTP = errors.New("registry speaks plain HTTP; pass --insecure-options=http")

// layerJobs bounds the layers downloaded at once.
const layerJobs = 6

// registry is one import from a registry: the repository, a puller that
// keeps its connection and token across requests, and the store.
type registry struct {
	s        *store.Store
	ref      reference.Reference
	repo     name.Repository
	puller   *remote.Puller
	hasCreds bool
	progress *progress
	verified store.Verification // recorded with the name
}

func importRegistry(ctx context.Context, s *store.Store, ref reference.Reference, opts Options) (*store.Image, error) {
	r, err := newRegistry(s, ref, opts)
	if err != nil {
		return nil, err
	}
	img, err := r.fetch(ctx)
	if err != nil {
		return nil, r.explain(err)
	}
	return img, nil
}

func newRegistry(s *store.Store, ref reference.Reference, opts Options) (*registry, error) {
	var nameOpts []name.Option
	if opts.InsecureHTTP {
		nameOpts = append(nameOpts, name.Insecure)
	}
	repo, err := name.NewRepository(ref.Host+"/"+ref.Repo, nameOpts...)
	if err != nil {
		return nil, err
	}
	creds, err := auth.Load(opts.AuthFiles)
	if err != nil {
		return nil, err
	}
	keychain := credsKeychain(creds)
	_, hasCreds := creds.Lookup(ref.Host)
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{InsecureSkipVerify: opts.InsecureTLS} //nolint:gosec // only with --insecure-options=tls
	base.MaxIdleConnsPerHost = layerJobs + 2
	puller, err := remote.NewPuller(
		remote.WithTransport(&httpGuard{next: base, allowHTTP: opts.InsecureHTTP}),
		remote.WithAuthFromKeychain(keychain),
		remote.WithUserAgent("skiff"),
		remote.WithJobs(layerJobs),
		remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	)
	if err != nil {
		return nil, err
	}
	return &registry{s: s, ref: ref, repo: repo, puller: puller, hasCreds: hasCreds,
		progress: newProgress(opts, ref.String()), verified: opts.Verification}, nil
}

func (r *registry) fetch(ctx context.Context) (*store.Image, error) {
	return r.fetchPinned(ctx, r.ref.Digest)
}

// fetchPinned imports the image whose top manifest has digest pinned (the
// ref's tag when pinned is ""), recording it under the ref's name.
func (r *registry) fetchPinned(ctx context.Context, pinned digest.Digest) (*store.Image, error) {
	defer r.progress.stop()
	var target name.Reference = r.repo.Tag(r.ref.Tag)
	if pinned != "" {
		target = r.repo.Digest(pinned.String())
	}
	res, err := r.resolve(ctx, target, pinned, 0)
	if err != nil {
		return nil, err
	}
	id, m := res.Digests[len(res.Digests)-1], res.manifest
	if err := r.s.PutBlob(id, int64(len(res.raw)), strings.NewReader(string(res.raw))); err != nil {
		return nil, err
	}
	if err := r.blob(ctx, m.Config); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	data, err := r.s.ReadBlob(m.Config.Digest, maxJSON)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config %s lists %d diffIDs for %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(layerJobs)
	for i, l := range m.Layers {
		item := r.progress.add(l.Digest, l.Size)
		g.Go(func() error {
			if err := r.layer(gctx, l, cfg.RootFS.DiffIDs[i], item); err != nil {
				return fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return r.s.AddImage(id, []string{r.ref.String()}, r.verified)
}

// Resolved is what a reference names in a registry: the digest of the
// manifest the tag (or digest) names and, when that is an index, the digests
// down to the manifest of linux and this architecture, which is the image.
type Resolved struct {
	Digests []digest.Digest // top first; the last is the image manifest (the image ID)

	manifest ocispec.Manifest
	raw      []byte
}

// resolve fetches the manifest target names, following an index to linux
// and this architecture, without storing anything. Each manifest's content
// must have the digest it was asked by (want, when not "").
func (r *registry) resolve(ctx context.Context, target name.Reference, want digest.Digest, depth int) (Resolved, error) {
	if depth > maxIndexDepth {
		return Resolved{}, fmt.Errorf("indexes nested deeper than %d", maxIndexDepth)
	}
	desc, err := r.puller.Get(ctx, target)
	if err != nil {
		return Resolved{}, err
	}
	d := digest.FromBytes(desc.Manifest)
	if want != "" && d != want {
		return Resolved{}, fmt.Errorf("manifest %s: content has digest %s", want, d)
	}
	mt := string(desc.MediaType)
	switch {
	case isIndex(mt):
		idx, err := ParseIndex(desc.Manifest)
		if err != nil {
			return Resolved{}, fmt.Errorf("index %s: %w", d, err)
		}
		sub, err := selectPlatform(idx)
		if err != nil {
			return Resolved{}, fmt.Errorf("index %s: %w", d, err)
		}
		res, err := r.resolve(ctx, r.repo.Digest(sub.Digest.String()), sub.Digest, depth+1)
		res.Digests = append([]digest.Digest{d}, res.Digests...)
		return res, err
	case isManifest(mt):
		m, err := ParseManifest(desc.Manifest)
		if err != nil {
			return Resolved{}, fmt.Errorf("manifest %s: %w", d, err)
		}
		if m.MediaType == "" {
			m.MediaType = mt
		}
		return Resolved{Digests: []digest.Digest{d}, manifest: m, raw: desc.Manifest}, nil
	}
	return Resolved{}, fmt.Errorf("manifest %s: %w: %q", d, ErrUnsupportedMediaType, mt)
}

// ErrManifestUnknown is returned by Remote.Manifest for a tag the
// repository does not have.
var ErrManifestUnknown = errors.New("manifest unknown")

// Remote reads one repository of a registry with the credentials, TLS and
// HTTP options an import uses, so that a caller can look at what a reference
// names (and its signatures) before importing exactly that.
type Remote struct {
	r    *registry
	opts Options
}

// NewRemote prepares access to ref's repository; nothing is fetched yet.
func NewRemote(ref reference.Reference, opts Options) (*Remote, error) {
	if ref.Transport != reference.Docker {
		return nil, fmt.Errorf("%s: not a registry reference", ref)
	}
	quiet := opts
	quiet.Progress = nil // progress starts with Import
	r, err := newRegistry(nil, ref, quiet)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return &Remote{r: r, opts: opts}, nil
}

// Resolve returns what the reference names now, storing nothing.
func (rm *Remote) Resolve(ctx context.Context) (Resolved, error) {
	var target name.Reference = rm.r.repo.Tag(rm.r.ref.Tag)
	if rm.r.ref.Digest != "" {
		target = rm.r.repo.Digest(rm.r.ref.Digest.String())
	}
	res, err := rm.r.resolve(ctx, target, rm.r.ref.Digest, 0)
	if err != nil {
		return Resolved{}, fmt.Errorf("%s: %w", rm.r.ref, rm.r.explain(err))
	}
	return res, nil
}

// Manifest returns the raw manifest at tag in the repository and its media
// type, or an error matching ErrManifestUnknown.
func (rm *Remote) Manifest(ctx context.Context, tag string) ([]byte, string, error) {
	desc, err := rm.r.puller.Get(ctx, rm.r.repo.Tag(tag))
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
			return nil, "", fmt.Errorf("%s:%s: %w", rm.r.repo, tag, ErrManifestUnknown)
		}
		return nil, "", fmt.Errorf("%s:%s: %w", rm.r.repo, tag, rm.r.explain(err))
	}
	if len(desc.Manifest) > maxJSON {
		return nil, "", fmt.Errorf("%s:%s: manifest larger than %d bytes", rm.r.repo, tag, maxJSON)
	}
	return desc.Manifest, string(desc.MediaType), nil
}

// Blob returns blob d of the repository, at most max bytes, checked
// against d.
func (rm *Remote) Blob(ctx context.Context, d digest.Digest, max int64) ([]byte, error) {
	rc, err := rm.r.open(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, rm.r.explain(err))
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("blob %s: larger than %d bytes", d, max)
	}
	if digest.FromBytes(data) != d {
		return nil, fmt.Errorf("blob %s: content does not match its digest", d)
	}
	return data, nil
}

// Import brings the image whose top manifest has digest top (as Resolve
// returned it) into s under the reference's name, recording v as how it was
// verified: a tag that moved since Resolve does not change what is imported.
func (rm *Remote) Import(ctx context.Context, s *store.Store, top digest.Digest, v store.Verification) (*store.Image, error) {
	release, err := s.Hold()
	if err != nil {
		return nil, err
	}
	defer release()
	r := *rm.r
	r.s = s
	r.verified = v
	r.progress = newProgress(rm.opts, rm.r.ref.String())
	img, err := r.fetchPinned(ctx, top)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rm.r.ref, r.explain(err))
	}
	return img, nil
}

// open starts downloading blob d; the reader fails at its end if the content
// does not match d (go-containerregistry hashes it as it is read), which
// store.PutVerifiedBlob relies on (TestRegistryBlobReaderVerifies).
func (r *registry) open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	l, err := r.puller.Layer(ctx, r.repo.Digest(d.String()))
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

// blob stores a small blob (a config) unless the store has it.
func (r *registry) blob(ctx context.Context, desc ocispec.Descriptor) error {
	if r.s.HasBlob(desc.Digest) {
		return nil
	}
	rc, err := r.open(ctx, desc.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	return r.s.PutVerifiedBlob(desc.Digest, desc.Size, rc)
}

// layer stores the layer blob and its extracted directory, downloading it
// at most once: holding the blob's lock, it skips what the store has, and
// extracts from the download stream as it arrives.
func (r *registry) layer(ctx context.Context, l ocispec.Descriptor, diffID digest.Digest, item *progressItem) error {
	// A compressed layer is (about) no bigger than extracted: refuse a
	// blob that says it is more than the limit before downloading it.
	if lim := layer.CurrentLimits(); l.Size > lim.MaxSize {
		return fmt.Errorf("layer %s: %w: its blob is %d bytes, more than the limit of %d (raise it with skiff --max-layer-size)", l.Digest, layer.ErrTooLarge, l.Size, lim.MaxSize)
	}
	unlock, err := r.s.LockBlob(l.Digest)
	if err != nil {
		return err
	}
	defer unlock()
	_, extracted, err := r.s.LayerDir(diffID)
	if err != nil {
		return err
	}
	if r.s.HasBlob(l.Digest) {
		if !extracted {
			_, err = r.s.EnsureLayer(l.Digest, diffID)
		}
		item.finish("already present", err)
		return err
	}
	rc, err := r.open(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	err = storeStreaming(r.s, l, diffID, verifiedBlob{item.reader(rc)}, !extracted)
	item.finish("", err)
	return err
}

// verifiedBlob is a blob's content read through a reader that verifies its
// digest itself (registry.open's): storeStreaming stores it without hashing
// it again (store.PutVerifiedBlob).
type verifiedBlob struct{ io.Reader }

// storeStreaming stores the blob read from src and, when extract is set,
// extracts it at the same time through a pipe. The layer directory is
// verified by its diffID, the blob by its digest (by the store as it writes
// the blob, or by src itself when it is a verifiedBlob); either failing fails both,
// and the layer is put in place only after the blob. The blob is read to its
// end even when extraction fails first, so that content that does not match
// its digest is reported as that (the cause), not as whatever the extraction
// made of it.
func storeStreaming(s *store.Store, l ocispec.Descriptor, diffID digest.Digest, src io.Reader, extract bool) error {
	put := s.PutBlob
	if _, ok := src.(verifiedBlob); ok {
		put = s.PutVerifiedBlob
	}
	if !extract {
		return put(l.Digest, l.Size, src)
	}
	pr, pw := io.Pipe()
	type extracted struct {
		p   *store.PendingLayer
		err error
	}
	layerDone := make(chan extracted, 1)
	go func() {
		p, err := s.ExtractLayer(diffID, pr)
		if err == nil {
			_, err = io.Copy(io.Discard, pr) // bytes after the tar's end, or a layer the store has
		}
		pr.CloseWithError(err)
		layerDone <- extracted{p, err}
	}()
	blobErr := put(l.Digest, l.Size, io.TeeReader(src, &untilFailed{w: pw}))
	pw.CloseWithError(blobErr)
	x := <-layerDone
	if blobErr == nil && x.err == nil {
		_, err := x.p.Commit()
		return err
	}
	if x.p != nil {
		x.p.Discard()
	}
	if blobErr != nil {
		return blobErr
	}
	if !errors.Is(x.err, io.ErrClosedPipe) {
		return x.err
	}
	return nil
}

// untilFailed writes to w until a write fails, then discards.
type untilFailed struct {
	w      io.Writer
	failed bool
}

func (u *untilFailed) Write(p []byte) (int, error) {
	if !u.failed {
		if _, err := u.w.Write(p); err != nil {
			u.failed = true
		}
	}
	return len(p), nil
}

// httpGuard refuses plain HTTP unless allowed, and names the option when an
// HTTPS request reaches a plain-HTTP server.
type httpGuard struct {
	next      http.RoundTripper
	allowHTTP bool
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.allowHTTP {
		return nil, ErrPlainHTTP
	}
	resp, err := g.next.RoundTrip(req)
	if err != nil && req.URL.Scheme == "https" && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		if g.allowHTTP {
			return nil, err
		}
		return nil, ErrPlainHTTP
	}
	return resp, err
}

// credsKeychain serves credentials from auth files to go-containerregistry.
type credsKeychain auth.Credentials

func (k credsKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	c, ok := auth.Credentials(k).Lookup(target.RegistryStr())
	if !ok {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken}), nil
}

// explain turns a registry failure into one line saying what went wrong
// and, where there is one, what to do.
func (r *registry) explain(err error) error {
	// Certificate errors first: for a loopback or private-network host the
	// library tries https and http at once, and when https fails on the
	// certificate, http is refused too; the registry speaks TLS, so naming
	// http would be the wrong advice.
	if cause := certError(err); cause != nil {
		return fmt.Errorf("TLS certificate of registry %s does not verify (%s); pass --insecure-options=tls to skip the check", r.ref.Host, firstLine(cause))
	}
	if errors.Is(err, ErrPlainHTTP) {
		return ErrPlainHTTP
	}
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	what := ""
	if len(terr.Errors) > 0 {
		what = " (" + string(terr.Errors[0].Code)
		if msg := terr.Errors[0].Message; msg != "" {
			what += ": " + msg
		}
		what += ")"
	}
	switch code := terr.StatusCode; {
	case code == http.StatusUnauthorized && r.hasCreds:
		return fmt.Errorf("unauthorized: registry %s rejected the credentials from the auth files%s", r.ref.Host, what)
	case code == http.StatusUnauthorized:
		return fmt.Errorf("unauthorized: registry %s requires credentials and none are configured for it (auth.d/*.json in the local config, $REGISTRY_AUTH_FILE or ~/.docker/config.json)%s", r.ref.Host, what)
	case code == http.StatusForbidden:
		return fmt.Errorf("access denied by registry %s%s", r.ref.Host, what)
	case code == http.StatusNotFound:
		return fmt.Errorf("not found in registry %s%s", r.ref.Host, what)
	case code == http.StatusTooManyRequests:
		return fmt.Errorf("registry %s is rate limiting (429 Too Many Requests); try again later", r.ref.Host)
	case code >= 500:
		return fmt.Errorf("registry %s failed: %d %s%s", r.ref.Host, code, http.StatusText(code), what)
	}
	return fmt.Errorf("registry %s: %d %s%s", r.ref.Host, terr.StatusCode, http.StatusText(terr.StatusCode), what)
}

// certError returns the certificate verification failure in err, or nil.
func certError(err error) error {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &verify):
		return verify
	case errors.As(err, &unknownCA):
		return unknownCA
	case errors.As(err, &hostErr):
		return hostErr
	case errors.As(err, &invalid):
		return invalid
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
