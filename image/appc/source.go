package appc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/image/layer"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
)

// ErrPlainHTTP is returned for an http:// URL (given, discovered or
// redirected to) unless Options.AllowHTTP.
var ErrPlainHTTP = errors.New("plain HTTP is refused")

// ErrNameMismatch is returned when a discovered image's manifest does not
// have the name and labels discovery asked for.
var ErrNameMismatch = errors.New("image manifest does not match the name asked for")

// maxSignature bounds a downloaded signature.
const maxSignature = 64 << 10

// Options say how Open fetches remote images.
type Options struct {
	TmpDir      string // downloads are written here (the store's tmp/), "" for os.TempDir()
	InsecureTLS bool   // do not verify TLS certificates
	AllowHTTP   bool   // allow plain http:// URLs
}

// Source is an ACI brought to a local file, with its manifest read and its
// detached signature (if one was found) in memory.
type Source struct {
	Origin          string // the reference as the user gave it
	Path            string // the ACI file
	Manifest        *ImageManifest
	Signature       []byte   // nil when there is none
	SignatureOrigin string   // where the signature was looked for
	PubKeys         []string // keys that discovery advertised for the name
	// Verification is what Import records as how the image was checked;
	// the verifier fills it in once Verify has passed.
	Verification store.Verification

	rawManifest []byte
	verified    digest.Digest // sha256 of the file Verify checked, "" if not verified
	temp        bool          // Path is a download to remove on Close
}

// Open brings the ACI ref names to a local file: a .aci file is used in
// place, an https URL is downloaded (with URL.asc beside it), and an appc
// name is discovered first. It reads and validates the manifest and checks
// that the image runs on this platform. Close the Source when done.
func Open(ctx context.Context, ref reference.Reference, opts Options) (*Source, error) {
	if ref.Transport == reference.ACI {
		abs, err := filepath.Abs(ref.Path)
		if err != nil {
			return nil, err
		}
		ref.Path = abs
	}
	src := &Source{Origin: ref.String()}
	var err error
	switch ref.Transport {
	case reference.ACI:
		err = src.openFile(ref.Path)
	case reference.HTTPS:
		err = src.download(ctx, newClient(opts), opts, ref.URL, ref.URL+".asc")
	case reference.AppcName:
		err = src.discover(ctx, newClient(opts), opts, ref)
	default:
		err = fmt.Errorf("%q is not an appc transport", ref.Transport)
	}
	if err == nil {
		err = src.readManifest()
	}
	if err == nil && ref.Transport == reference.AppcName {
		err = checkAsked(src.Manifest, ref.Name, ref.Tag)
	}
	if err != nil {
		src.Close()
		return nil, err
	}
	return src, nil
}

// ImportRef imports the appc image ref names into s without verifying its
// signature (image/fetch's importer; callers that verify use Open, Verify
// and Import), recording v as how it was checked. Downloads go to TmpDir(s)
// whatever opts.TmpDir says.
func ImportRef(ctx context.Context, s *store.Store, ref reference.Reference, opts Options, v store.Verification) (*store.Image, error) {
	opts.TmpDir = TmpDir(s)
	src, err := Open(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	src.Verification = v
	return Import(ctx, s, src)
}

// TmpDir is where downloads for the store s go, so that they live on its
// filesystem and are cleaned with it.
func TmpDir(s *store.Store) string { return s.Dir() + "/tmp" }

// Close removes a downloaded file.
func (src *Source) Close() error {
	if src.temp {
		return os.Remove(src.Path)
	}
	return nil
}

func (src *Source) openFile(path string) error {
	src.Path = path
	src.SignatureOrigin = trust.SignaturePathFor(path)
	sig, err := os.Open(src.SignatureOrigin)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer sig.Close()
	src.Signature, err = readLimited(sig, maxSignature, "signature")
	return err
}

func (src *Source) readManifest() error {
	f, err := os.Open(src.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	if src.rawManifest, err = readManifest(f); err != nil {
		return err
	}
	if src.Manifest, err = ParseManifest(src.rawManifest); err != nil {
		return err
	}
	return checkPlatform(src.Manifest)
}

// Verify checks the signature with verify, for the name in the manifest, and
// pins the file's content: Import then refuses a file that changed since.
// verify is trust.Keystore.VerifyDetached in practice.
func (src *Source) Verify(verify func(name string, signed, signature io.Reader) error) error {
	if src.Signature == nil {
		return fmt.Errorf("image %q: %w (no %s)", src.Manifest.Name, trust.ErrUnsigned, src.SignatureOrigin)
	}
	f, err := os.Open(src.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if err := verify(src.Manifest.Name, io.TeeReader(f, h), bytes.NewReader(src.Signature)); err != nil {
		return err
	}
	if _, err := io.Copy(h, f); err != nil { // in case verify stopped short
		return err
	}
	// Import checks that the manifest it converts (the one that named the
	// key) comes from these verified bytes.
	src.verified = digestOf(h)
	return nil
}

// checkAsked applies the discovery rule: the manifest must have the name
// asked for and, when a version was asked for, that version label.
func checkAsked(m *ImageManifest, name, version string) error {
	if m.Name != name {
		return fmt.Errorf("%w: manifest names %q, asked for %q", ErrNameMismatch, m.Name, name)
	}
	if v, _ := m.Label("version"); version != "" && v != version {
		return fmt.Errorf("%w: %q has version %q, asked for %q", ErrNameMismatch, name, v, version)
	}
	return nil
}

func newClient(opts Options) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if opts.InsecureTLS {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure-options=tls
	}
	return &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return checkScheme(req.URL, opts)
	}}
}

func checkScheme(u *url.URL, opts Options) error {
	switch {
	case u.Scheme == "https", u.Scheme == "http" && opts.AllowHTTP:
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%s: %w", u.Redacted(), ErrPlainHTTP)
	}
	return fmt.Errorf("%s: scheme %q is not supported", u.Redacted(), u.Scheme)
}

// statusError is an HTTP answer other than 200.
type statusError struct {
	url, status string
	code        int
}

func (e *statusError) Error() string { return "GET " + e.url + ": " + e.status }

func isNotFound(err error) bool {
	var se *statusError
	return errors.As(err, &se) && (se.code == http.StatusNotFound || se.code == http.StatusGone)
}

// get starts a GET of rawURL and returns the response for a 200 answer.
func get(ctx context.Context, c *http.Client, opts Options, rawURL string) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if err := checkScheme(u, opts); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, &statusError{url: u.Redacted(), status: resp.Status, code: resp.StatusCode}
	}
	return resp, nil
}

// download fetches the ACI at aciURL into a temporary file and the signature
// at ascURL into memory (none when the server has none).
func (src *Source) download(ctx context.Context, c *http.Client, opts Options, aciURL, ascURL string) error {
	resp, err := get(ctx, c, opts, aciURL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.CreateTemp(opts.TmpDir, "aci-")
	if err != nil {
		return err
	}
	src.Path, src.temp = f.Name(), true
	// An ACI is one layer and its manifest, compressed: more than the
	// layer limit is not an image, it is a disk filler.
	lim := layer.CurrentLimits()
	n, err := io.Copy(f, io.LimitReader(resp.Body, lim.MaxSize+1))
	if err == nil {
		err = lim.CheckSize(n)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("GET %s: %w", aciURL, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	src.SignatureOrigin = ascURL
	sresp, err := get(ctx, c, opts, ascURL)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer sresp.Body.Close()
	src.Signature, err = readLimited(sresp.Body, maxSignature, "signature")
	return err
}

func readLimited(r io.Reader, limit int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s larger than %d bytes", what, limit)
	}
	return data, nil
}
