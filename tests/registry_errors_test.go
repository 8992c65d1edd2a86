//go:build functional

package tests

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeRegistry serves one image, read from an oci-archive, as
// repository test/img (any tag) over plain HTTP on loopback, and can be told
// to fail: a status for every manifest request, a status for every request
// of one blob, or different content for one blob.
type fakeRegistry struct {
	host     string
	manifest []byte
	config   string   // digest
	layers   []string // digests
	blobs    map[string][]byte

	manifestStatus int               // answer every manifest request with this, when set
	blobStatus     map[string]int    // answer requests of these blobs with this status
	blobContent    map[string][]byte // serve this instead of the blob's content

	manifestReqs, blobReqs atomic.Int32
}

func newFakeRegistry(t *testing.T, archive string) *fakeRegistry {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = data
	}
	blob := func(d string) []byte {
		data, ok := files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")]
		if !ok {
			t.Fatalf("%s: no blob %s", archive, d)
		}
		return data
	}
	var idx struct {
		Manifests []struct{ Digest, MediaType string } `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("%s: index.json: %v %+v", archive, err, idx)
	}
	fr := &fakeRegistry{manifest: blob(idx.Manifests[0].Digest), blobs: map[string][]byte{},
		blobStatus: map[string]int{}, blobContent: map[string][]byte{}}
	var m struct {
		MediaType string
		Config    struct{ Digest string }
		Layers    []struct{ Digest string }
	}
	if err := json.Unmarshal(fr.manifest, &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("%s: manifest: %v", archive, err)
	}
	fr.config = m.Config.Digest
	fr.blobs[m.Config.Digest] = blob(m.Config.Digest)
	for _, l := range m.Layers {
		fr.layers = append(fr.layers, l.Digest)
		fr.blobs[l.Digest] = blob(l.Digest)
	}
	srv := httptest.NewServer(http.HandlerFunc(fr.serve)) // 127.0.0.1:0
	t.Cleanup(srv.Close)
	fr.host = strings.TrimPrefix(srv.URL, "http://")
	return fr
}

func (fr *fakeRegistry) ref() string { return "docker://" + fr.host + "/test/img:v1" }

func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

func (fr *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := r.URL.Path
	switch {
	case p == "/v2/":
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "{}")
	case strings.HasPrefix(p, "/v2/test/img/manifests/"):
		fr.manifestReqs.Add(1)
		switch fr.manifestStatus {
		case 0:
		case http.StatusTooManyRequests:
			// A long Retry-After: skiff must give up, not sleep for an hour.
			w.Header().Set("Retry-After", "3600")
			registryError(w, fr.manifestStatus, "TOOMANYREQUESTS", "pull rate limit exceeded")
			return
		default:
			registryError(w, fr.manifestStatus, "UNKNOWN", "backend unavailable")
			return
		}
		sum := sha256.Sum256(fr.manifest)
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", "sha256:"+hex.EncodeToString(sum[:]))
		w.Header().Set("Content-Length", fmt.Sprint(len(fr.manifest)))
		if r.Method != http.MethodHead {
			w.Write(fr.manifest)
		}
	case strings.HasPrefix(p, "/v2/test/img/blobs/"):
		fr.blobReqs.Add(1)
		d := strings.TrimPrefix(p, "/v2/test/img/blobs/")
		if status := fr.blobStatus[d]; status != 0 {
			if status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "3600")
			}
			registryError(w, status, "UNKNOWN", "blob backend unavailable")
			return
		}
		data, ok := fr.blobContent[d]
		if !ok {
			data, ok = fr.blobs[d]
		}
		if !ok {
			registryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", d)
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if r.Method != http.MethodHead {
			w.Write(data)
		}
	default:
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
	}
}

// fetchLimit bounds a failing fetch: retries must end well before it.
const fetchLimit = 60 * time.Second

// skiffWithin runs skiff like e.skiff but fails the test if it has not
// ended within limit (a hang, or retries without end).
func (e *env) skiffWithin(limit time.Duration, args ...string) result {
	e.t.Helper()
	c := e.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		e.t.Fatalf("skiff %q: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit):
		_ = c.Process.Kill()
		<-done
		e.t.Fatalf("skiff %q still running after %s\nstderr: %s", args, limit, errb.String())
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("skiff %q: %v", args, err)
	}
	return r
}

// fetchFails fetches ref from a fake registry and checks that skiff ends in
// time with exit 125 and one line of error naming ref and every word of
// want, and that nothing was stored as an image.
func (e *env) fetchFails(ref string, want ...string) result {
	e.t.Helper()
	args := fetchArgs("--pull-policy=update", ref)
	r := e.skiffWithin(fetchLimit, args...)
	if r.code != 125 {
		e.t.Fatalf("skiff %q: exit %d, want 125\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	for _, w := range append([]string{ref}, want...) {
		if !strings.Contains(r.stderr, w) {
			e.t.Errorf("skiff %q: stderr %q does not mention %q", args, r.stderr, w)
		}
	}
	checkOneErrorLine(e.t, r)
	if r.stdout != "" {
		e.t.Errorf("failed fetch printed %q on stdout", r.stdout)
	}
	if l := e.imageList(); len(l) != 0 {
		e.t.Errorf("failed fetch left images in the store: %+v", l)
	}
	return r
}

// checkOneErrorLine checks that stderr holds exactly one "skiff: " line
// besides warnings: the error. Progress lines (one per layer when stderr is
// not a terminal, such as "IMAGE: layer ID: failed") are not errors.
func checkOneErrorLine(t *testing.T, r result) {
	t.Helper()
	var errs []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if strings.HasPrefix(l, "skiff: ") && !strings.HasPrefix(l, "skiff: WARNING") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 {
		t.Errorf("not one error line: %q", r.stderr)
	}
}

// A registry that rate-limits (429, with a Retry-After of an hour) or fails
// (5xx) on every manifest or blob request: the fetch gives up in bounded
// time with one line naming the image and the status.
func TestRegistryErrorStatuses(t *testing.T) {
	archive := filepath.Join(os.Getenv("SKIFF_TEST_IMAGES"), "busybox.oci.tar")
	for _, tc := range []struct {
		name           string
		manifestStatus int
		blobStatus     int
		config         bool // the config blob fails rather than the layer
		want           []string
	}{
		{name: "manifest-429", manifestStatus: 429, want: []string{"429"}},
		{name: "manifest-500", manifestStatus: 500, want: []string{"500"}},
		{name: "manifest-503", manifestStatus: 503, want: []string{"503"}},
		{name: "layer-429", blobStatus: 429, want: []string{"429"}},
		{name: "layer-503", blobStatus: 503, want: []string{"503"}},
		{name: "config-500", blobStatus: 500, config: true, want: []string{"500"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fr := newFakeRegistry(t, archive)
			fr.manifestStatus = tc.manifestStatus
			if tc.blobStatus != 0 {
				d := fr.layers[0]
				if tc.config {
					d = fr.config
				}
				fr.blobStatus[d] = tc.blobStatus
			}
			r := e.fetchFails(fr.ref(), tc.want...)
			t.Logf("after %d manifest and %d blob requests: %s", fr.manifestReqs.Load(), fr.blobReqs.Load(), strings.TrimSpace(r.stderr))
			if tc.manifestStatus != 0 && fr.blobReqs.Load() != 0 {
				t.Errorf("%d blob requests after the manifest failed", fr.blobReqs.Load())
			}
			// run goes through the same fetch and fails the same way.
			rr := e.skiffWithin(fetchLimit, append([]string{"--insecure-options=image,http", "run"}, append(e.stage1, fr.ref(), "--", "/bin/true")...)...)
			if rr.code != 125 || !strings.Contains(rr.stderr, fr.ref()) || !strings.Contains(rr.stderr, tc.want[0]) {
				t.Errorf("run: exit %d, stderr %q", rr.code, rr.stderr)
			}
			if len(e.pods()) != 0 {
				t.Errorf("a failed fetch left a pod: %+v", e.pods())
			}
			e.ok("image", "verify")

			// Once the registry recovers, the same fetch works.
			fr.manifestStatus, fr.blobStatus = 0, map[string]int{}
			if out := e.skiffWithin(fetchLimit, fetchArgs("--pull-policy=update", fr.ref())...); out.code != 0 || !imageIDLine.MatchString(out.stdout) {
				t.Fatalf("fetch after recovery: exit %d %q %q", out.code, out.stdout, out.stderr)
			}
		})
	}
}

// A layer (or config) blob whose content does not match its digest is
// refused naming the image and the digest, and leaves nothing runnable.
func TestRegistryBlobDigestMismatch(t *testing.T) {
	archive := filepath.Join(os.Getenv("SKIFF_TEST_IMAGES"), "busybox.oci.tar")
	for _, tc := range []struct {
		name    string
		config  bool
		corrupt func([]byte) []byte
	}{
		// A byte flipped in the compressed stream: not even valid gzip.
		{name: "layer-flipped-byte", corrupt: func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }},
		// The gzip header's mtime changed: a valid gzip of the very same tar
		// (right diffID), only the blob digest differs.
		{name: "layer-gzip-mtime", corrupt: func(b []byte) []byte { b[4] ^= 0x01; return b }},
		// Cut short by one byte.
		{name: "layer-truncated", corrupt: func(b []byte) []byte { return b[:len(b)-1] }},
		// Another valid blob of the same size.
		{name: "config-changed", config: true, corrupt: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"architecture"`), []byte(`"Architecture"`), 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fr := newFakeRegistry(t, archive)
			d := fr.layers[0]
			if tc.config {
				d = fr.config
			}
			bad := tc.corrupt(append([]byte(nil), fr.blobs[d]...))
			if bytes.Equal(bad, fr.blobs[d]) {
				t.Fatal("corruption changed nothing")
			}
			fr.blobContent[d] = bad

			// The cause named is the digest mismatch, whatever else failed
			// on the way (a gzip or tar error from the bad bytes): the error
			// names the blob's digest and says its content does not match
			// (go-containerregistry words it "checksum", the store "digest").
			r := e.fetchFails(fr.ref(), d)
			t.Logf("%s", strings.TrimSpace(r.stderr))
			if !strings.Contains(r.stderr, "digest") && !strings.Contains(r.stderr, "checksum") {
				t.Errorf("error does not name the digest mismatch: %q", r.stderr)
			}
			for _, other := range []string{"tar", "gzip", "flate", "diffID"} {
				if strings.Contains(r.stderr, other) {
					t.Errorf("error blames the content (%s), not its digest: %q", other, r.stderr)
				}
			}
			// Nothing runnable: not listed, not runnable without going back
			// to the registry, and no stored blob has the bad content.
			e.fails(125, []string{fr.ref()}, fetchArgs("--pull-policy=never", fr.ref())...)
			rr := e.skiff(append([]string{"--insecure-options=image,http", "run", "--pull-policy=never"}, append(e.stage1, fr.ref(), "--", "/bin/true")...)...)
			if rr.code != 125 {
				t.Errorf("run --pull-policy=never of a refused image: exit %d %q", rr.code, rr.stderr)
			}
			if v := e.skiff("image", "verify"); v.code != 0 {
				t.Errorf("image verify after a refused fetch: exit %d %q %q", v.code, v.stdout, v.stderr)
			}
			sum := sha256.Sum256(bad)
			if !tc.config {
				// The layer is committed only with its blob: the extracted
				// directory (here of the right diffID, from a recompressed
				// blob) is not kept, and the error names the layer, the
				// digest it should have had and the one it had.
				if tc.name != "layer-truncated" && !strings.Contains(r.stderr, "sha256:"+hex.EncodeToString(sum[:])) {
					t.Errorf("error does not name the digest the content had (sha256:%x): %q", sum, r.stderr)
				}
				if !strings.Contains(r.stderr, "layer "+d) {
					t.Errorf("error does not name the layer %s: %q", d, r.stderr)
				}
				for _, sub := range []string{"layers/sha256", "tmp"} {
					if left, _ := os.ReadDir(filepath.Join(e.dir, "images", sub)); len(left) != 0 {
						t.Errorf("refused fetch left %s/%s in the store", sub, left[0].Name())
					}
				}
			}
			if _, err := os.Stat(filepath.Join(e.dir, "images", "blobs", "sha256", hex.EncodeToString(sum[:]))); err == nil {
				t.Error("the bad content is stored as a blob")
			}
			if data, err := os.ReadFile(filepath.Join(e.dir, "images", "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))); err == nil && !bytes.Equal(data, fr.blobs[d]) {
				t.Errorf("blob %s stored with the wrong content", d)
			}

			// The registry serving the right content again: fetched and run.
			delete(fr.blobContent, d)
			e.ok(fetchArgs("--pull-policy=update", fr.ref())...)
			run := e.skiff(append([]string{"--insecure-options=image,http", "run", "--pull-policy=never"}, append(e.stage1, fr.ref(), "--", "/bin/echo", "repaired")...)...)
			if run.code != 0 || run.stdout != "repaired\n" {
				t.Fatalf("run after a good fetch: exit %d %q %q", run.code, run.stdout, run.stderr)
			}
		})
	}
}
