package store

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/internal/directio"
)

// A layer-sized blob is written around the page cache, all of it (whole
// chunks, a tail, and sizes that are neither), and a small one through it.
func TestPutBlobAroundPageCache(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	direct := directio.Set(probe, true) == nil
	probe.Close()
	if !direct {
		t.Skipf("the filesystem of %s refuses O_DIRECT", dir)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{directio.Chunk, 3*directio.Chunk + 12345, 4 * directio.Chunk, directio.Chunk - 1, 4096} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		d := digest.FromBytes(data)
		if err := s.PutBlob(d, int64(size), bytes.NewReader(data)); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		got, err := s.ReadBlob(d, int64(size))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: blob read back differs", size)
		}
		p, _ := s.path("blobs", d, "")
		// ReadBlob read it through the page cache: drop that, then look
		// at what the write left there.
		os.Remove(p)
		if err := s.PutBlob(d, int64(size), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		res, total, err := directio.Resident(p)
		if err != nil {
			t.Fatal(err)
		}
		if size >= directio.Chunk {
			// Only the tail past the last whole chunk went through the cache.
			if max := (size%directio.Chunk + 4095) / 4096; res > max {
				t.Errorf("size %d: %d of %d pages in the page cache, want at most %d", size, res, total, max)
			}
		} else if res != total {
			t.Errorf("size %d: %d of %d pages in the page cache, want all (written through it)", size, res, total)
		}
	}
}
