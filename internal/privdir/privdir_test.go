package privdir

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if was, err := Ensure(dir, 0o700); err != nil || was != 0 {
		t.Fatalf("create: %v %o", err, was)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %o", fi.Mode().Perm())
	}
	os.Chmod(dir, 0o755)
	if was, err := Ensure(dir, 0o700); err != nil || was != 0o755 {
		t.Fatalf("narrow: %v %o", err, was)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("narrowed to %o", fi.Mode().Perm())
	}
	if was, err := Ensure(dir, 0o700); err != nil || was != 0 {
		t.Fatalf("second time: %v %o", err, was)
	}
	os.Chmod(dir, 0o500)
	if was, err := Ensure(dir, 0o711); err != nil || was != 0 {
		t.Fatalf("narrower dir widened: %v %o", err, was)
	}
}
