package store

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// residentPages counts the pages of path the page cache holds.
func residentPages(t *testing.T, path string) (resident, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident, len(vec)
}

// A layer-sized blob is written around the page cache, all of it (whole
// chunks, a tail, and sizes that are neither), and a small one through it.
func TestPutBlobAroundPageCache(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	direct := setDirect(probe, true) == nil
	probe.Close()
	if !direct {
		t.Skipf("the filesystem of %s refuses O_DIRECT", dir)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{directChunk, 3*directChunk + 12345, 4 * directChunk, directChunk - 1, 4096} {
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
		res, total := residentPages(t, p)
		if size >= directChunk {
			// Only the tail past the last whole chunk went through the cache.
			if max := (size%directChunk + 4095) / 4096; res > max {
				t.Errorf("size %d: %d of %d pages in the page cache, want at most %d", size, res, total, max)
			}
		} else if res != total {
			t.Errorf("size %d: %d of %d pages in the page cache, want all (written through it)", size, res, total)
		}
	}
}

// A direct write the kernel refuses (here: from a buffer that is not
// aligned) is written through the page cache instead, and so is the rest.
func TestDirectWriterRefusedWrite(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "blob-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := setDirect(f, true); err != nil {
		t.Skipf("the filesystem of %s refuses O_DIRECT", f.Name())
	}
	mem := make([]byte, directChunk+8192)
	w := &directWriter{f: f, buf: mem[1 : directChunk+1], direct: true} // never page-aligned
	data := bytes.Repeat([]byte("skiff"), (2*directChunk+100)/5)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if w.direct {
		t.Error("still direct after the kernel refused a write")
	}
	if err := w.flush(); err != nil { // the tail (Finish would also unmap buf)
		t.Fatal(err)
	}
	w.buf = nil
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("file has %d bytes, differs from the %d written", len(got), len(data))
	}
}
