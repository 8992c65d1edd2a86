package store

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func layerTar(t *testing.T, name string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: 1})
	tw.Write([]byte("x"))
	tw.Close()
	return buf.Bytes()
}

func put(t *testing.T, s *Store, data []byte) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(data)
	if err := s.PutBlob(d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{Digest: d, Size: int64(len(data))}
}

// addImage stores a one-layer image whose layer holds file name.
func addImage(t *testing.T, s *Store, name string) *Image {
	t.Helper()
	layer := layerTar(t, name)
	l := put(t, s, layer)
	if _, err := s.EnsureLayer(l.Digest, l.Digest); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.Digest}}})
	m, _ := json.Marshal(ocispec.Manifest{Config: put(t, s, cfg), Layers: []ocispec.Descriptor{l}})
	img, err := s.AddImage(put(t, s, m).Digest, []string{name}, Verification{})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// endCheck is a reader that verifies itself as PutVerifiedBlob needs: its
// Read at the end fails when ok is false. reachedEnd records that it was asked.
type endCheck struct {
	r          io.Reader
	ok         bool
	reachedEnd bool
}

func (e *endCheck) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.reachedEnd = true
		if !e.ok {
			return n, errors.New("checksum mismatch")
		}
	}
	return n, err
}

// PutVerifiedBlob stores nothing when the reader's own check fails at its
// end, always reads that far (a reader of exactly the size, of less, of
// more), and still checks the size.
func TestPutVerifiedBlob(t *testing.T) {
	s, _ := Open(t.TempDir())
	d := digest.FromString("hello")
	bad := &endCheck{r: strings.NewReader("hellO")}
	if err := s.PutVerifiedBlob(d, 5, bad); err == nil || !strings.Contains(err.Error(), "checksum mismatch") || s.HasBlob(d) {
		t.Errorf("content its reader refused: %v, stored %v", err, s.HasBlob(d))
	}
	if !bad.reachedEnd {
		t.Error("the reader was not read to its end: its check never ran")
	}
	for _, tc := range []struct {
		content string
		size    int64
	}{{"hell", 5}, {"hello!", 5}, {"hello", 4}, {"hello", -1}} {
		if err := s.PutVerifiedBlob(d, tc.size, &endCheck{r: strings.NewReader(tc.content), ok: true}); err == nil || s.HasBlob(d) {
			t.Errorf("%q with size %d stored: %v", tc.content, tc.size, err)
		}
	}
	good := &endCheck{r: strings.NewReader("hello"), ok: true}
	if err := s.PutVerifiedBlob(d, 5, good); err != nil || !s.HasBlob(d) || !good.reachedEnd {
		t.Errorf("PutVerifiedBlob: %v, stored %v, read to its end %v", err, s.HasBlob(d), good.reachedEnd)
	}
	if tmp, _ := os.ReadDir(s.Dir() + "/tmp"); len(tmp) != 0 {
		t.Errorf("tmp not cleaned: %v", tmp)
	}
}

func TestPutBlobVerifies(t *testing.T) {
	s, _ := Open(t.TempDir())
	d := digest.FromString("hello")
	if err := s.PutBlob(d, 5, strings.NewReader("hellO")); err == nil || s.HasBlob(d) {
		t.Errorf("mismatched content stored: %v", err)
	}
	if err := s.PutBlob(d, 4, strings.NewReader("hello")); err == nil || s.HasBlob(d) {
		t.Errorf("wrong size stored: %v", err)
	}
	if err := s.PutBlob("sha256:../../x", 1, strings.NewReader("x")); err == nil {
		t.Error("invalid digest accepted")
	}
	if err := s.PutBlob(d, 5, strings.NewReader("hello")); err != nil || !s.HasBlob(d) {
		t.Errorf("PutBlob: %v", err)
	}
	if tmp, _ := os.ReadDir(s.Dir() + "/tmp"); len(tmp) != 0 {
		t.Errorf("tmp not cleaned: %v", tmp)
	}
}

func TestImagesAndLookup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: layer extraction sets ownership")
	}
	s, _ := Open(t.TempDir())
	a, b := addImage(t, s, "a"), addImage(t, s, "b")
	if got, err := s.Lookup("a"); err != nil || got.ID != a.ID || len(got.LayerDirs) != 1 {
		t.Fatalf("Lookup(a): %+v %v", got, err)
	}
	if _, err := os.Stat(a.LayerDirs[0] + "/a"); err != nil {
		t.Errorf("layer content: %v", err)
	}
	if got, err := s.Lookup(b.ID.Encoded()[:8]); err != nil || got.ID != b.ID {
		t.Errorf("prefix lookup: %v", err)
	}
	if _, err := s.Lookup("nope"); !errors.Is(err, ErrImageNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing: %v", err)
	}
	if _, err := s.Lookup("sha256:"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("empty prefix: %v", err)
	}
	// A fake record sharing a 4-digit prefix with a makes that prefix ambiguous.
	os.WriteFile(s.Dir()+"/images/sha256/"+a.ID.Encoded()[:4]+strings.Repeat("0", 60)+".json", []byte("{}"), 0o644)
	if _, err := s.Lookup(a.ID.Encoded()[:4]); !errors.Is(err, ErrAmbiguousID) {
		t.Errorf("ambiguous: %v", err)
	}
	if err := s.Touch(a.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Lookup("a")
	if !got.LastUsed.After(a.LastUsed) || !got.Imported.Equal(a.Imported) {
		t.Errorf("Touch: last used %v -> %v", a.LastUsed, got.LastUsed)
	}
	// A name moves to the image that takes it.
	if _, err := s.AddImage(b.ID, []string{"a"}, Verification{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Lookup("a"); got.ID != b.ID {
		t.Errorf("name a not moved to b")
	}
}

func TestPutLayerRace(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: layer extraction sets ownership")
	}
	s, _ := Open(t.TempDir())
	data := layerTar(t, "f")
	id := digest.FromBytes(data)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.PutLayer(id, bytes.NewReader(data))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if tmp, _ := os.ReadDir(s.Dir() + "/tmp"); len(tmp) != 0 {
		t.Errorf("losers left %d dirs in tmp", len(tmp))
	}
	if _, err := s.PutLayer(digest.FromString("other"), bytes.NewReader(data)); err == nil {
		t.Error("diffID mismatch accepted")
	}
}
