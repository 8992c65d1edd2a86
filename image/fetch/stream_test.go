package fetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// gzipLayer is a one-file tar layer, gzipped with mtime in its header: the
// same tar (diffID) gives a different blob for each mtime.
func gzipLayer(t *testing.T, mtime time.Time) (blob []byte, diffID digest.Digest) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := []byte("hello\n")
	if err := tw.WriteHeader(&tar.Header{Name: "etc/hello", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	zw.ModTime = mtime
	zw.Write(tb.Bytes())
	zw.Close()
	return gb.Bytes(), digest.FromBytes(tb.Bytes())
}

// A layer blob whose bytes are another compression of the right tar (the
// diffID matches, the blob digest does not) leaves the store as it was: no
// blob, no layer directory, nothing in tmp/; the error names the digest
// wanted and the one the content has (the caller names the layer).
func TestStoreStreamingCommitsTheLayerOnlyWithItsBlob(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: layer extraction sets ownership")
	}
	want, diffID := gzipLayer(t, time.Unix(1, 0))
	served, diffID2 := gzipLayer(t, time.Unix(2, 0))
	if diffID != diffID2 || bytes.Equal(want, served) || len(want) != len(served) {
		t.Fatal("the two blobs should differ only in their gzip header")
	}
	s := openStore(t)
	l := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(want), Size: int64(len(want))}
	err := storeStreaming(s, l, diffID, bytes.NewReader(served), true)
	if err == nil {
		t.Fatal("a blob that does not match its digest was stored")
	}
	for _, w := range []string{l.Digest.String(), digest.FromBytes(served).String()} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
	for _, sub := range []string{"blobs/sha256", "layers/sha256", "tmp"} {
		if left, _ := os.ReadDir(filepath.Join(s.Dir(), sub)); len(left) != 0 {
			t.Errorf("%s/%s left in the store", sub, left[0].Name())
		}
	}
	// The right bytes: both stored.
	if err := storeStreaming(s, l, diffID, bytes.NewReader(want), true); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.LayerDir(diffID); !ok || !s.HasBlob(l.Digest) {
		t.Errorf("layer extracted %v, blob stored %v", ok, s.HasBlob(l.Digest))
	}
}
