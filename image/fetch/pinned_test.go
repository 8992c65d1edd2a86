package fetch

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/skiff-project/skiff/image/store"
)

// twoImageArchive writes an OCI archive holding the blobs of two images,
// whose manifests have the same size, and an index naming the first as
// "a". It returns the file, both manifest digests and the index bytes.
func twoImageArchive(t *testing.T) (file string, m1, m2 digest.Digest, index []byte) {
	t.Helper()
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	lw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644, Size: 1})
	lw.Write([]byte("x"))
	lw.Close()
	blobs := map[digest.Digest][]byte{}
	put := func(mt string, data []byte) ocispec.Descriptor {
		d := digest.FromBytes(data)
		blobs[d] = data
		return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))}
	}
	l := put(ocispec.MediaTypeImageLayer, layer.Bytes())
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.Digest}}})
	c := put(ocispec.MediaTypeImageConfig, cfg)
	manifest := func(v string) ocispec.Descriptor {
		data, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: c, Layers: []ocispec.Descriptor{l}, Annotations: map[string]string{"v": v}})
		return put(ocispec.MediaTypeImageManifest, data)
	}
	d1, d2 := manifest("1"), manifest("2")
	if d1.Size != d2.Size {
		t.Fatal("manifests of different sizes")
	}
	d1.Annotations = map[string]string{ocispec.AnnotationRefName: "a"}
	index, _ = json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{d1}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	for d, data := range blobs {
		add("blobs/sha256/"+d.Encoded(), data)
	}
	tw.Close()
	file = filepath.Join(t.TempDir(), "two.tar")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, d1.Digest, d2.Digest, index
}

// What ReadArchive's check read is what Archive.Import imports: rewriting
// the file in place after the check (so that the open file itself reads
// otherwise) changes nothing, while an import that opens the file again
// takes the rewritten index.
func TestArchiveImportsTheBytesItChecked(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: layer extraction sets ownership")
	}
	file, m1, m2, index := twoImageArchive(t)
	orig, _ := os.ReadFile(file)
	swapped := bytes.Replace(index, []byte(m1.Encoded()), []byte(m2.Encoded()), 1)
	at := int64(bytes.Index(orig, index))

	var checked []byte
	a, err := ReadArchive(mustParse(t, "oci-archive:"+file), func(r io.Reader) error {
		var err error
		checked, err = io.ReadAll(r)
		// The check is done: whoever can write the file rewrites it now.
		f, _ := os.OpenFile(file, os.O_WRONLY, 0)
		f.WriteAt(swapped, at)
		f.Close()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if sha256.Sum256(checked) != sha256.Sum256(orig) {
		t.Fatal("the check did not read the file as it was")
	}
	if now, _ := os.ReadFile(file); !bytes.Contains(now, swapped) {
		t.Fatal("the file was not rewritten")
	}
	if names, err := a.Names(); err != nil || len(names) != 1 || names[0] != "a" {
		t.Fatalf("names %v, %v", names, err)
	}
	s := openStore(t)
	img, err := a.Import(context.Background(), s, store.Verification{Kind: store.VerifiedOpenPGP, Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != m1 {
		t.Fatalf("imported %s, the checked bytes name %s (the rewritten file %s)", img.ID, m1, m2)
	}
	if v := img.Verified["oci-archive:"+file]; v.Kind != store.VerifiedOpenPGP || v.Key != "k" {
		t.Errorf("recorded %+v", img.Verified)
	}
	// Control: the rewrite does change what a fresh reading imports.
	again, err := Import(context.Background(), openStore(t), mustParse(t, "oci-archive:"+file), Options{Gate: store.TrustInstalled})
	if err != nil || again.ID != m2 {
		t.Fatalf("fresh import of the rewritten file: %v %v", again, err)
	}
}

// A pinned archive opens nothing it did not keep or cannot check.
func TestArchiveRefusesUnpinnedFiles(t *testing.T) {
	file, m1, _, _ := twoImageArchive(t)
	a, err := ReadArchive(mustParse(t, "oci-archive:"+file), func(r io.Reader) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.src.Open("index.json"); err != nil {
		t.Errorf("index.json: %v", err)
	}
	r, err := a.src.Open("blobs/sha256/" + m1.Encoded())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Errorf("blob: %v", err)
	}
	// A blob whose content is not its name's digest fails at its end.
	a.src.files["blobs/sha256/"+digest.FromString("x").Encoded()] = a.src.files["blobs/sha256/"+m1.Encoded()]
	r, _ = a.src.Open("blobs/sha256/" + digest.FromString("x").Encoded())
	if _, err := io.ReadAll(r); err == nil {
		t.Error("a blob that does not match its digest read without error")
	}
}

// Names an archive gives its image never read as another transport's.
func TestContentNames(t *testing.T) {
	got := contentNames([]string{"latest", "bb:1", "example.com/app:v1", "docker://x/y", "/x/y.aci", "oci-archive:/x", "", "https://h/x"})
	want := []string{"bb:1", "archive:example.com/app:v1", "archive:docker://x/y", "archive:oci-archive:/x", "archive:https://h/x"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
