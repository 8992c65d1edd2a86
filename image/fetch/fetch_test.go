package fetch

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// fixture is a two-layer busybox image made with umoci, tagged "latest"
// and "other", as a layout directory and as an archive of it.
type fixture struct{ layout, archive string }

func run(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func makeFixture(t *testing.T) fixture {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: umoci unpack and layer extraction set ownership and device nodes")
	}
	for _, tool := range []string{"umoci", "tar", "/bin/busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s to build a test image: %v", tool, err)
		}
	}
	dir := t.TempDir()
	run(t, dir, "umoci", "init", "--layout", "L")
	run(t, dir, "umoci", "new", "--image", "L:latest")
	run(t, dir, "umoci", "unpack", "--image", "L:latest", "B")
	rootfs := filepath.Join(dir, "B", "rootfs")
	for _, d := range []string{"bin", "etc"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	run(t, dir, "cp", "/bin/busybox", filepath.Join(rootfs, "bin/busybox"))
	os.Symlink("busybox", filepath.Join(rootfs, "bin/sh"))
	os.WriteFile(filepath.Join(rootfs, "etc/gone"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/keep"), []byte("k"), 0o644)
	run(t, dir, "umoci", "repack", "--refresh-bundle", "--image", "L:latest", "B")
	os.Remove(filepath.Join(rootfs, "etc/gone"))
	run(t, dir, "umoci", "repack", "--image", "L:latest", "B")
	run(t, dir, "umoci", "tag", "--image", "L:latest", "other")
	run(t, dir, "tar", "-C", "L", "-cf", "x.tar", ".")
	return fixture{layout: filepath.Join(dir, "L"), archive: filepath.Join(dir, "x.tar")}
}

func mustParse(t *testing.T, s string) reference.Reference {
	t.Helper()
	r, err := reference.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openStore(t *testing.T) *store.Store {
	s, err := store.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestImportArchiveAndDir(t *testing.T) {
	fx := makeFixture(t)
	s := openStore(t)
	ctx := context.Background()
	img, err := Import(ctx, s, mustParse(t, "oci-archive:"+fx.archive+":latest"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.LayerDirs) != 2 {
		t.Fatalf("layers: %v", img.LayerDirs)
	}
	if fi, err := os.Stat(filepath.Join(img.LayerDirs[0], "bin/busybox")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("busybox in lower layer: %v %v", fi, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(img.LayerDirs[1], "etc/gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("whiteout in upper layer: %+v %v", st, err)
	}
	wantNames := []string{"oci-archive:" + fx.archive + ":latest"} // a bare tag is not a store-wide name
	if strings.Join(img.Names, ",") != strings.Join(wantNames, ",") {
		t.Errorf("names %v, want %v", img.Names, wantNames)
	}
	var before unix.Stat_t
	unix.Stat(img.LayerDirs[0], &before)

	// The same image from the directory: same ID, layers not extracted again.
	img2, err := Import(ctx, s, mustParse(t, "oci:"+fx.layout+":other"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	unix.Stat(img2.LayerDirs[0], &after)
	if img2.ID != img.ID || before.Ino != after.Ino {
		t.Errorf("reimport: ID %s vs %s, layer inode %d vs %d", img2.ID, img.ID, after.Ino, before.Ino)
	}
	for _, name := range []string{"oci:" + fx.layout + ":other", img.ID.String(), img.ID.Encoded()[:6]} {
		got, err := s.Lookup(name)
		if err != nil || got.ID != img.ID {
			t.Errorf("Lookup(%q): %v", name, err)
		}
	}
	if got, _ := s.Lookup(img.ID.String()); got == nil || len(got.Names) != 2 || got.Config.RootFS.Type != "layers" {
		t.Errorf("Lookup(%s): %+v", img.ID, got)
	}
	for _, tag := range []string{"latest", "other"} { // bare tags are the archive's, not store-wide names
		if _, err := s.Lookup(tag); err == nil {
			t.Errorf("Lookup(%q) found an image", tag)
		}
	}
}

func TestImportErrors(t *testing.T) {
	fx := makeFixture(t)
	s := openStore(t)
	ctx := context.Background()
	check := func(src, want string) {
		t.Helper()
		_, err := Import(ctx, s, mustParse(t, src), Options{})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Import(%s): %v, want one line containing %q", src, err, want)
		}
	}
	check("oci-archive:"+fx.archive, "oci-archive:"+fx.archive+": index.json lists 2 images, add :REF to choose one (available: latest, other)")
	check("oci:"+fx.layout+":nope", `no image named "nope" in index.json (available: latest, other)`)
	check("oci-archive:/nonexistent.tar", "oci-archive:/nonexistent.tar: open /nonexistent.tar: no such file or directory")

	broken := filepath.Join(t.TempDir(), "L")
	run(t, "/", "cp", "-a", fx.layout, broken)
	os.WriteFile(filepath.Join(broken, "index.json"), []byte(`{"schemaVersion":`), 0o644)
	check("oci:"+broken, "oci:"+broken+": index.json: unexpected end of JSON input")

	// Corrupt every blob: whichever is read first must fail verification.
	run(t, "/", "rm", "-rf", broken)
	run(t, "/", "cp", "-a", fx.layout, broken)
	blobs, _ := filepath.Glob(filepath.Join(broken, "blobs/sha256/*"))
	for _, b := range blobs {
		data, _ := os.ReadFile(b)
		data[len(data)-1] ^= 1 // same size, other content
		os.WriteFile(b, data, 0o644)
	}
	check("oci:"+broken+":latest", "content has digest")

	_, err := Import(ctx, s, reference.Reference{Transport: "ftp", URL: "ftp://x/y"}, Options{})
	if !errors.Is(err, ErrUnsupportedTransport) {
		t.Errorf("ftp: %v", err)
	}
}

func TestUnchangedArchiveIsNotReadAgain(t *testing.T) {
	fx := makeFixture(t)
	s := openStore(t)
	ref := mustParse(t, "oci-archive:"+fx.archive+":latest")
	first, err := Import(context.Background(), s, ref, Options{Gate: store.TrustInstalled})
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite the archive with garbage of the same size, keeping its inode
	// and mtime: a cached import must not read it.
	st, _ := os.Stat(fx.archive)
	if err := os.WriteFile(fx.archive, make([]byte, st.Size()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(fx.archive, st.ModTime(), st.ModTime())
	again, err := Import(context.Background(), s, ref, Options{Gate: store.TrustInstalled})
	if err != nil || again.ID != first.ID {
		t.Fatalf("cached import: %v, %v", again, err)
	}
	// Once the file's identity changes it is read again (and now fails).
	later := st.ModTime().Add(time.Minute)
	os.Chtimes(fx.archive, later, later)
	if _, err := Import(context.Background(), s, ref, Options{Gate: store.TrustInstalled}); err == nil {
		t.Fatal("a changed archive was taken from the cache")
	}
	// Another ref of the same file is not the cached one.
	if cachedImport(s, mustParse(t, "oci-archive:"+fx.archive+":other")) != nil {
		t.Fatal("the cache ignored the ref")
	}
}

// A layout's layer blob that does not match its digest fails the import,
// and nothing of that layer stays in the store: its layers are extracted
// while their blobs are copied, and put in place only once the blob matched.
func TestLayoutLayerWithWrongContent(t *testing.T) {
	fx := makeFixture(t)
	dir := t.TempDir()
	s, err := store.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(t.TempDir(), "L")
	run(t, "/", "cp", "-a", fx.layout, broken)
	blobs, _ := filepath.Glob(filepath.Join(broken, "blobs/sha256/*"))
	var biggest string
	var size int64
	for _, b := range blobs {
		if st, err := os.Stat(b); err == nil && st.Size() > size {
			biggest, size = b, st.Size()
		}
	}
	data, _ := os.ReadFile(biggest) // busybox's layer
	data[len(data)/2] ^= 1          // same size, other content
	os.WriteFile(biggest, data, 0o644)
	_, err = Import(context.Background(), s, mustParse(t, "oci:"+broken+":latest"), Options{})
	if err == nil || !strings.Contains(err.Error(), "content has digest") {
		t.Fatalf("Import: %v, want the blob's digest mismatch", err)
	}
	// The image's other layer (etc/gone's removal) may be in place: it matched.
	layers, _ := filepath.Glob(filepath.Join(dir, "images/layers/sha256/*/bin/busybox"))
	tmp, _ := os.ReadDir(filepath.Join(dir, "images/tmp"))
	if len(layers) != 0 || len(tmp) != 0 {
		t.Errorf("left behind: busybox's layer %q, in tmp/ %v", layers, tmp)
	}
	if s.HasBlob(digest.NewDigestFromEncoded(digest.SHA256, filepath.Base(biggest))) {
		t.Errorf("the wrong blob was stored")
	}
}
