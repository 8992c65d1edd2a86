package layer

import (
	"archive/tar"
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-project/skiff/internal/directio"
)

// A layer's files of a MiB or more are written around the page cache (all
// but the tail past their last whole MiB), smaller ones and ELF files (which
// pods map as they start) through it, and every byte arrives.
func TestExtractLargeFilesAroundPageCache(t *testing.T) {
	root, _ := sandbox(t)
	probe, err := os.CreateTemp(root, "probe")
	if err != nil {
		t.Fatal(err)
	}
	direct := directio.Set(probe, true) == nil
	probe.Close()
	os.Remove(probe.Name())
	if !direct {
		t.Skipf("the filesystem of %s refuses O_DIRECT", root)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := map[string]int{"whole": 2 * directio.Chunk, "tail": 3*directio.Chunk + 12345, "small": directio.Chunk - 1, "page": 4096}
	contents := map[string][]byte{}
	var hdrs []*tar.Header
	sizes["program"] = 2*directio.Chunk + 100 // an ELF file: through the page cache
	for name, size := range sizes {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if name == "program" {
			copy(b, "\x7fELF\x02\x01\x01")
		}
		contents[name] = b
		hdrs = append(hdrs, file(name, string(b)))
	}
	if _, err := Extract(root, bytes.NewReader(mkTar(t, hdrs...))); err != nil {
		t.Fatal(err)
	}
	for name, size := range sizes {
		p := filepath.Join(root, name)
		res, total, err := directio.Resident(p)
		if err != nil {
			t.Fatal(err)
		}
		if size >= directio.Chunk && name != "program" {
			if max := (size%directio.Chunk + 4095) / 4096; res > max {
				t.Errorf("%s (%d bytes): %d of %d pages in the page cache, want at most %d", name, size, res, total, max)
			}
		} else if res != total {
			t.Errorf("%s (%d bytes): %d of %d pages in the page cache, want all (written through it)", name, size, res, total)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, contents[name]) {
			t.Errorf("%s: %d bytes extracted, differ from the %d in the layer", name, len(got), size)
		}
	}
}

// A layer whose large file ends before the size its header gives fails to
// extract (the tar reader's io.ErrUnexpectedEOF is not taken for the file's end).
func TestExtractTruncatedLargeFile(t *testing.T) {
	root, _ := sandbox(t)
	data := mkTar(t, file("big", string(make([]byte, 3*directio.Chunk))), file("after", "x"))
	// The header and the first 2.5 MiB of the file's 3 MiB, nothing after.
	if _, err := Extract(root, bytes.NewReader(data[:512+5*directio.Chunk/2])); err == nil {
		t.Fatal("extracted a layer whose file was cut short")
	}
}
