package fetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A registry blob's reader verifies the content itself, which the store's
// PutVerifiedBlob relies on instead of hashing it again: a blob served with
// other bytes of the same size is refused by the reader at its end, so
// neither it nor a layer extracted from it is stored. Were go-containerregistry
// to stop verifying, this fails (and tests/TestRegistryBlobDigestMismatch).
func TestRegistryBlobReaderVerifies(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: layer extraction sets ownership")
	}
	want, diffID := gzipLayer(t, time.Unix(1, 0))
	served, _ := gzipLayer(t, time.Unix(2, 0))
	d := digest.FromBytes(want)
	var content []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case r.URL.Path == "/v2/test/blob/blobs/"+d.String():
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			w.Write(content)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ref := mustParse(t, "docker://"+strings.TrimPrefix(srv.URL, "http://")+"/test/blob:latest")
	for _, tc := range []struct {
		name    string
		content []byte
		ok      bool
	}{{"other bytes", served, false}, {"the blob", want, true}} {
		t.Run(tc.name, func(t *testing.T) {
			content = tc.content
			s := openStore(t)
			r, err := newRegistry(s, ref, Options{InsecureHTTP: true})
			if err != nil {
				t.Fatal(err)
			}
			rc, err := r.open(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			l := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(len(want))}
			err = storeStreaming(s, l, diffID, verifiedBlob{rc}, true)
			_, extracted, _ := s.LayerDir(diffID)
			if tc.ok != (err == nil) || s.HasBlob(d) != tc.ok || extracted != tc.ok {
				t.Errorf("stored: err %v, blob %v, layer %v", err, s.HasBlob(d), extracted)
			}
			if !tc.ok && err != nil && !strings.Contains(err.Error(), "checksum") {
				t.Errorf("error does not name the checksum: %v", err)
			}
		})
	}
}
