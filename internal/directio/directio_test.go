package directio

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"testing/iotest"
)

func directOK(t *testing.T, f *os.File) {
	t.Helper()
	if err := Set(f, true); err != nil {
		t.Skipf("the filesystem of %s refuses O_DIRECT", f.Name())
	}
	if err := Set(f, false); err != nil {
		t.Fatal(err)
	}
}

// Through Write (in pieces that are not chunks) and through ReadFrom (what
// io.Copy uses), a file's whole chunks go around the page cache, its tail and
// a file under a chunk through it, and every byte arrives.
func TestWriterAroundPageCache(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{Chunk, 3*Chunk + 12345, 4 * Chunk, Chunk - 1, 4096, 0} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		for _, how := range []string{"Write", "ReadFrom"} {
			f, err := os.CreateTemp(t.TempDir(), "file-")
			if err != nil {
				t.Fatal(err)
			}
			directOK(t, f)
			w := NewWriter(f)
			if how == "Write" {
				for p := data; len(p) > 0; {
					n := min(len(p), 100_000)
					if _, err := w.Write(p[:n]); err != nil {
						t.Fatal(err)
					}
					p = p[n:]
				}
			} else if n, err := io.Copy(w, bytes.NewReader(data)); err != nil || n != int64(size) {
				t.Fatalf("%s, %d bytes: copied %d, %v", how, size, n, err)
			}
			if err := w.Finish(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			res, total, err := Resident(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if size >= Chunk {
				if max := (size%Chunk + 4095) / 4096; res > max {
					t.Errorf("%s, %d bytes: %d of %d pages in the page cache, want at most %d", how, size, res, total, max)
				}
			} else if res != total {
				t.Errorf("%s, %d bytes: %d of %d pages in the page cache, want all (written through it)", how, size, res, total)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s: file has %d bytes, differs from the %d written", how, len(got), size)
			}
		}
	}
}

// A direct write the kernel refuses (here: from a buffer that is not
// aligned) is written through the page cache instead, and so is the rest.
func TestWriterRefusedWrite(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "file-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	directOK(t, f)
	mem := make([]byte, Chunk+8192)
	w := &Writer{f: f, buf: mem[1 : Chunk+1]} // never page-aligned
	data := bytes.Repeat([]byte("skiff"), (2*Chunk+100)/5)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if !w.tried || w.direct {
		t.Errorf("tried %v, direct %v: want direct tried, then off after the kernel refused a write", w.tried, w.direct)
	}
	if err := w.flush(); err != nil { // the tail (Finish would also pool buf)
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("file has %d bytes, differs from the %d written", len(got), len(data))
	}
}

// ReadFrom passes on the reader's errors, io.ErrUnexpectedEOF included (what
// a tar reader says of a file cut short), and stops there.
func TestWriterReadFromKeepsErrors(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "file-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f)
	defer w.Release()
	cut := io.MultiReader(bytes.NewReader(make([]byte, Chunk+100)), iotest.ErrReader(io.ErrUnexpectedEOF))
	n, err := w.ReadFrom(cut)
	if err != io.ErrUnexpectedEOF || n != Chunk+100 {
		t.Fatalf("ReadFrom = %d, %v; want %d, %v", n, err, Chunk+100, io.ErrUnexpectedEOF)
	}
}
