package store

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func needRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: layer extraction sets ownership")
	}
}

func TestRemoveImageAndPrune(t *testing.T) {
	needRoot(t)
	s, _ := Open(t.TempDir())
	a, b := addImage(t, s, "a"), addImage(t, s, "b")
	os.WriteFile(filepath.Join(s.Dir(), "tmp", "old"), nil, 0o644)
	os.Chtimes(filepath.Join(s.Dir(), "tmp", "old"), time.Now().Add(-2*time.Hour), time.Now().Add(-2*time.Hour))
	os.WriteFile(filepath.Join(s.Dir(), "tmp", "new"), nil, 0o644)

	if err := s.RemoveImage(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup("a"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("a still found: %v", err)
	}
	if err := s.RemoveImage(a.ID); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("second remove: %v", err)
	}
	// Keeping a's layer (a pod uses it) keeps its directory, not its blobs.
	r, err := s.Prune(map[string]bool{a.LayerDirs[0]: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if r.Blobs != 3 || r.Layers != 0 || r.Tmp != 1 {
		t.Errorf("prune: %+v, want 3 blobs, 0 layers, 1 tmp", r)
	}
	if _, err := os.Stat(a.LayerDirs[0]); err != nil {
		t.Errorf("kept layer removed: %v", err)
	}
	if r, _ := s.Prune(nil, time.Hour); r.Layers != 1 || r.Blobs != 0 {
		t.Errorf("second prune: %+v", r)
	}
	if _, err := os.Stat(a.LayerDirs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unreferenced layer kept: %v", err)
	}
	if got, err := s.Lookup("b"); err != nil || got.ID != b.ID {
		t.Fatalf("b damaged by prune: %v", err)
	}
	if ps, err := s.Verify(nil); err != nil || len(ps) != 0 {
		t.Errorf("verify after prune: %v %v", ps, err)
	}
}

func TestPruneWaitsForHold(t *testing.T) {
	s, _ := Open(t.TempDir())
	release, err := s.Hold()
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("orphan")
	s.PutBlob(d, 6, bytes.NewReader([]byte("orphan")))
	done := make(chan PruneReport)
	go func() { r, _ := s.Prune(nil, time.Hour); done <- r }()
	select {
	case <-done:
		t.Fatal("prune ran during a hold")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if r := <-done; r.Blobs != 1 || s.HasBlob(d) {
		t.Errorf("prune after hold: %+v", r)
	}
}

func TestLockBlob(t *testing.T) {
	s, _ := Open(t.TempDir())
	d := digest.FromString("x")
	unlock, err := s.LockBlob(d)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan bool)
	go func() { u, _ := s.LockBlob(d); got <- true; u() }()
	select {
	case <-got:
		t.Fatal("second LockBlob did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	<-got
	if _, err := s.LockBlob("sha256:../x"); err == nil {
		t.Error("bad digest accepted")
	}
}

func TestVerifyRemovesCorrupt(t *testing.T) {
	needRoot(t)
	s, _ := Open(t.TempDir())
	a, b := addImage(t, s, "a"), addImage(t, s, "b")
	p := filepath.Join(s.Dir(), "blobs", "sha256", a.Manifest.Layers[0].Digest.Encoded())
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("garbage"), 0o644)
	ps, err := s.Verify([]digest.Digest{b.ID})
	if err != nil || len(ps) != 0 {
		t.Fatalf("verify b: %v %v", ps, err)
	}
	ps, err = s.Verify(nil)
	if err != nil || len(ps) != 1 || ps[0].Images[0] != a.ID || !errors.Is(ps[0].Err, ErrCorrupt) {
		t.Fatalf("verify all: %+v %v", ps, err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Error("corrupt blob kept")
	}
	if _, err := s.Lookup("a"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("image with a corrupt blob kept: %v", err)
	}
}

func TestExport(t *testing.T) {
	needRoot(t)
	s, _ := Open(t.TempDir())
	a := addImage(t, s, "a")
	var buf bytes.Buffer
	if err := s.Export(a, "a", &buf); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[hdr.Name] = true
	}
	for _, want := range []string{"oci-layout", "index.json", "blobs/sha256/" + a.ID.Encoded(), "blobs/sha256/" + a.Manifest.Config.Digest.Encoded()} {
		if !names[want] {
			t.Errorf("export lacks %s: %v", want, names)
		}
	}
}

// RemoveName removes one name and keeps the image while it has others; it
// refuses the last name (ErrLastName), which goes with RemoveImage.
func TestRemoveName(t *testing.T) {
	needRoot(t)
	s, _ := Open(t.TempDir())
	a := addImage(t, s, "a")
	if _, err := s.AddImage(a.ID, []string{"a2"}, Verification{}); err != nil {
		t.Fatal(err)
	}
	if id, err := s.RemoveName("a"); err != nil || id != a.ID {
		t.Fatalf("RemoveName(a): %s %v", id, err)
	}
	if _, err := s.Lookup("a"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("a still found: %v", err)
	}
	if got, err := s.Lookup("a2"); err != nil || got.ID != a.ID || len(got.Names) != 1 {
		t.Errorf("Lookup(a2) after removing a: %+v %v", got, err)
	}
	if _, err := s.RemoveName("a2"); !errors.Is(err, ErrLastName) {
		t.Errorf("RemoveName of the last name: %v", err)
	}
	if _, err := s.RemoveName("nope"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("RemoveName(nope): %v", err)
	}
	if _, err := s.Lookup("12"); err == nil || !strings.Contains(err.Error(), "4 hex digits") {
		t.Errorf("short prefix: %v", err)
	}
}
