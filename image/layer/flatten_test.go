package layer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestFlatten(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	var dirs []string
	for i, layer := range [][]byte{
		mkTar(t, dir("etc"), file("etc/passwd", "root"), file("etc/keep", "k"), dir("opq"), file("opq/old", "o"),
			symlink("link", "etc"), file("a", "1"), hardlink("b", "a")),
		mkTar(t, file("etc/.wh.passwd", ""), file("opq/.wh..wh..opq", ""), file("opq/new", "n"),
			dir("link"), file("link/x", "x")),
	} {
		d := filepath.Join(base, "l"+string(rune('0'+i)))
		os.Mkdir(d, 0o755)
		if _, err := Extract(d, bytes.NewReader(layer)); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	out := filepath.Join(base, "out")
	os.Mkdir(out, 0o755)
	if err := Flatten(out, dirs); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"etc/keep": "k", "opq/new": "n", "link/x": "x", "a": "1", "b": "1"} {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"etc/passwd", "opq/old", "etc/x"} {
		if _, err := os.Lstat(filepath.Join(out, p)); err == nil {
			t.Errorf("%s survived", p)
		}
	}
	if fi, err := os.Lstat(filepath.Join(out, "link")); err != nil || !fi.IsDir() {
		t.Errorf("link replaced by a directory: %v %v", fi, err)
	}
	a, _ := os.Stat(filepath.Join(out, "a"))
	b, _ := os.Stat(filepath.Join(out, "b"))
	if !os.SameFile(a, b) {
		t.Error("hard link not kept")
	}
}
