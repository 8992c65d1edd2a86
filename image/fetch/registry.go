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
		progress: newProgress(opts, ref.String())}, nil
}

func (r *registry) fetch(ctx context.Context) (*store.Image, error) {
	defer r.progress.stop()
	var target name.Reference = r.repo.Tag(r.ref.Tag)
	if r.ref.Digest != "" {
		target = r.repo.Digest(r.ref.Digest.String())
	}
	id, m, err := r.manifest(ctx, target, r.ref.Digest, 0)
	if err != nil {
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
	return r.s.AddImage(id, []string{r.ref.String()})
}

// manifest fetches and stores the manifest target names, following an index
// to linux and this architecture, and returns its digest (the image ID).
func (r *registry) manifest(ctx context.Context, target name.Reference, want digest.Digest, depth int) (digest.Digest, ocispec.Manifest, error) {
	var m ocispec.Manifest
	if depth > maxIndexDepth {
		return "", m, fmt.Errorf("indexes nested deeper than %d", maxIndexDepth)
	}
	desc, err := r.puller.Get(ctx, target)
	if err != nil {
		return "", m, err
	}
	d := digest.FromBytes(desc.Manifest)
	if want != "" && d != want {
		return "", m, fmt.Errorf("manifest %s: content has digest %s", want, d)
	}
	mt := string(desc.MediaType)
	switch {
	case isIndex(mt):
		idx, err := ParseIndex(desc.Manifest)
		if err != nil {
			return "", m, fmt.Errorf("index %s: %w", d, err)
		}
		sub, err := selectPlatform(idx)
		if err != nil {
			return "", m, fmt.Errorf("index %s: %w", d, err)
		}
		return r.manifest(ctx, r.repo.Digest(sub.Digest.String()), sub.Digest, depth+1)
	case isManifest(mt):
		if m, err = ParseManifest(desc.Manifest); err != nil {
			return "", m, fmt.Errorf("manifest %s: %w", d, err)
		}
		if m.MediaType == "" {
			m.MediaType = mt
		}
		return d, m, r.s.PutBlob(d, int64(len(desc.Manifest)), strings.NewReader(string(desc.Manifest)))
	}
	return "", m, fmt.Errorf("manifest %s: %w: %q", d, ErrUnsupportedMediaType, mt)
}

// open starts downloading blob d; the reader fails at its end if the content
// does not match d.
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
	return r.s.PutBlob(desc.Digest, desc.Size, rc)
}

// layer stores the layer blob and its extracted directory, downloading it
// at most once: holding the blob's lock, it skips what the store has, and
// extracts from the download stream as it arrives.
func (r *registry) layer(ctx context.Context, l ocispec.Descriptor, diffID digest.Digest, item *progressItem) error {
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
	err = storeStreaming(r.s, l, diffID, item.reader(rc), !extracted)
	item.finish("", err)
	return err
}

// storeStreaming stores the blob read from src and, when extract is set,
// extracts it at the same time through a pipe. The layer directory is
// verified by its diffID, the blob by its digest; either failing fails both.
func storeStreaming(s *store.Store, l ocispec.Descriptor, diffID digest.Digest, src io.Reader, extract bool) error {
	if !extract {
		return s.PutBlob(l.Digest, l.Size, src)
	}
	pr, pw := io.Pipe()
	layerErr := make(chan error, 1)
	go func() {
		_, err := s.PutLayer(diffID, pr)
		if err == nil {
			_, err = io.Copy(io.Discard, pr) // bytes after the tar's end, or a layer another fetch extracted
		}
		pr.CloseWithError(err)
		layerErr <- err
	}()
	blobErr := s.PutBlob(l.Digest, l.Size, io.TeeReader(src, pw))
	pw.CloseWithError(blobErr)
	if err := <-layerErr; err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return err
	}
	return blobErr
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
	if errors.Is(err, ErrPlainHTTP) {
		return ErrPlainHTTP
	}
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return fmt.Errorf("TLS certificate of registry %s does not verify (%s); pass --insecure-options=tls to skip the check", r.ref.Host, firstLine(err))
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

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
