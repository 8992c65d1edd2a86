package appc

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

const testManifest = `{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/hello",
"labels":[{"name":"version","value":"1.0"},{"name":"os","value":"linux"}],
"app":{"exec":["/bin/hello"],"user":"0","group":"0","workingDirectory":"/srv"}}`

// aciTar builds an ACI tar with the given manifest and a small rootfs.
func aciTar(t testing.TB, manifest string, extra ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	write(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, "")
	write(&tar.Header{Typeflag: tar.TypeReg, Name: "./manifest"}, manifest)
	write(&tar.Header{Typeflag: tar.TypeDir, Name: "rootfs", Mode: 0o755}, "")
	write(&tar.Header{Typeflag: tar.TypeDir, Name: "rootfs/bin", Mode: 0o755}, "")
	write(&tar.Header{Typeflag: tar.TypeReg, Name: "rootfs/bin/hello", Mode: 0o755, Uid: 7, PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}}, "#!/bin/sh\necho hi\n")
	write(&tar.Header{Typeflag: tar.TypeLink, Name: "rootfs/bin/hi", Linkname: "rootfs/bin/hello"}, "")
	write(&tar.Header{Typeflag: tar.TypeSymlink, Name: "rootfs/bin/sh", Linkname: "hello"}, "")
	write(&tar.Header{Typeflag: tar.TypeDir, Name: "rootfs/" + strings.Repeat("d", 120) + "/", Mode: 0o700}, "")
	for _, h := range extra {
		write(h, "x")
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

func xzed(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	zw, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func needRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: layer extraction sets ownership")
	}
}

func openFile(t *testing.T, path string) *Source {
	t.Helper()
	src, err := Open(context.Background(), reference.Reference{Transport: reference.ACI, Path: path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestImport(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	s, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	plain := aciTar(t, testManifest)
	var ids []digest.Digest
	for i, data := range [][]byte{plain, gzipped(plain), xzed(t, plain)} {
		path := writeFile(t, dir, "hello.aci", data)
		img, err := Import(context.Background(), s, openFile(t, path))
		if err != nil {
			t.Fatalf("import %d: %v", i, err)
		}
		ids = append(ids, img.ID)
		if i == 0 {
			checkImage(t, s, img, path)
		}
	}
	// Compression changes the file, not the layer.
	l0, _ := s.Lookup(ids[0].String())
	l2, _ := s.Lookup(ids[2].String())
	if l0.Manifest.Layers[0].Digest != l2.Manifest.Layers[0].Digest {
		t.Errorf("layers differ by compression: %s, %s", l0.Manifest.Layers[0].Digest, l2.Manifest.Layers[0].Digest)
	}
	if tmp, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(tmp) != 0 {
		t.Errorf("tmp not cleaned: %v", tmp)
	}
}

func checkImage(t *testing.T, s *store.Store, img *store.Image, path string) {
	t.Helper()
	if strings.Join(img.Names, " ") != path+" example.com/hello:1.0" {
		t.Errorf("names %q", img.Names)
	}
	c := img.Config.Config
	if c.User != "0:0" || c.WorkingDir != "/srv" || c.Entrypoint[0] != "/bin/hello" {
		t.Errorf("config %+v", c)
	}
	raw, err := s.ReadBlob(digest.Digest(img.Annotations[AnnotationManifest]), 1<<20)
	if err != nil || string(raw) != testManifest {
		t.Errorf("original manifest: %q, %v", raw, err)
	}
	l := img.Manifest.Layers[0]
	if !s.HasBlob(l.Digest) || img.Config.RootFS.DiffIDs[0] != l.Digest {
		t.Errorf("layer blob %s missing or not the diffID", l.Digest)
	}
	root := img.LayerDirs[0]
	st, err := os.Lstat(filepath.Join(root, "bin/hello"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("bin/hello: %v %v", st, err)
	}
	if hi, err := os.Stat(filepath.Join(root, "bin/hi")); err != nil || !os.SameFile(st, hi) {
		t.Errorf("hard link not kept: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || target != "hello" {
		t.Errorf("symlink: %q %v", target, err)
	}
	for _, absent := range []string{"manifest", "rootfs"} {
		if _, err := os.Lstat(filepath.Join(root, absent)); err == nil {
			t.Errorf("%s is in the layer", absent)
		}
	}
}

func TestImportRefusals(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	s, _ := store.Open(filepath.Join(dir, "store"))
	open := func(data []byte) error {
		path := writeFile(t, dir, "x.aci", data)
		_, err := Open(context.Background(), reference.Reference{Transport: reference.ACI, Path: path}, Options{})
		return err
	}
	deps := strings.Replace(testManifest, `"app"`, `"dependencies":[{"imageName":"example.com/base"}],"app"`, 1)
	for _, tc := range []struct {
		data []byte
		want string
	}{
		{aciTar(t, deps), "appc dependencies are not supported"},
		{aciTar(t, strings.Replace(testManifest, `"linux"`, `"freebsd"`, 1)), `os "freebsd"`},
		{aciTar(t, `{"acKind":"ImageManifest"}`), "acVersion"},
		{[]byte("not a tar at all, long enough to be a header? no"), "reading image archive"},
		{gzipped([]byte("garbage")), "reading image archive"},
	} {
		if err := open(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open: %v, want %q", err, tc.want)
		}
	}
	// Entries the manifest scan does not reach are checked on import.
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeLink, Name: "rootfs/x", Linkname: "manifest"},
		{Typeflag: tar.TypeReg, Name: "etc/passwd"},
	} {
		path := writeFile(t, dir, "y.aci", aciTar(t, testManifest, h))
		src := openFile(t, path)
		if _, err := Import(context.Background(), s, src); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("entry %q imported: %v", h.Name, err)
		}
	}
}

func TestVerifyPinsContent(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	s, _ := store.Open(filepath.Join(dir, "store"))
	path := writeFile(t, dir, "hello.aci", aciTar(t, testManifest))
	src := openFile(t, path)
	if err := src.Verify(nil); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned: %v", err)
	}
	src.Signature = []byte("sig")
	var gotName string
	err := src.Verify(func(name string, signed, sig io.Reader) error {
		gotName = name
		_, err := io.Copy(io.Discard, signed)
		return err
	})
	if err != nil || gotName != "example.com/hello" {
		t.Fatalf("Verify: %v, name %q", err, gotName)
	}
	// The file changes after verification: the import is refused.
	writeFile(t, dir, "hello.aci", aciTar(t, strings.Replace(testManifest, "/bin/hello", "/bin/sh", 1)))
	if _, err := Import(context.Background(), s, src); !errors.Is(err, ErrChanged) {
		t.Errorf("changed file imported: %v", err)
	}
	refused := errors.New("refused")
	if err := src.Verify(func(string, io.Reader, io.Reader) error { return refused }); !errors.Is(err, refused) {
		t.Errorf("Verify does not return the check's error: %v", err)
	}
}

func TestConvertIsDeterministic(t *testing.T) {
	path := writeFile(t, t.TempDir(), "x.aci", gzipped(aciTar(t, testManifest)))
	var a, b bytes.Buffer
	ca, err := convert(context.Background(), path, &a)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := convert(context.Background(), path, &b)
	if ca.diffID != cb.diffID || ca.aci != cb.aci || !bytes.Equal(a.Bytes(), b.Bytes()) || ca.diffID != digest.FromBytes(a.Bytes()) || ca.layerSize != int64(a.Len()) {
		t.Errorf("passes differ: %+v %+v", ca, cb)
	}
	tr := tar.NewReader(&a)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.Name == "bin/hello" && h.PAXRecords["SCHILY.xattr.user.k"] != "v" {
			t.Errorf("xattr lost: %v", h.PAXRecords)
		}
	}
	if len(names) < 4 || names[0] != "bin/" || names[2] != "bin/hi" {
		t.Errorf("layer entries %q", names)
	}
}
