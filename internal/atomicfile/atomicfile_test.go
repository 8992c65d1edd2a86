package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteFileReplacesWithoutFollowing(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "out")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(link, []byte("new\n"), 0o644)
	if err == nil || !strings.Contains(err.Error(), link+" is a symbolic link") {
		t.Errorf("WriteFile over a link: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	// Write (for skiff's own paths) replaces the link itself.
	if err := Write(link, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("after Write: %v %v", fi.Mode(), err)
	}
}

func TestCheckTargetRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(dir, "reg")
	if err := os.WriteFile(reg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		dir: "is a directory", fifo: "is a fifo", "/dev/null": "is a device",
		reg: "", filepath.Join(dir, "new"): "",
	} {
		err := CheckTarget(path)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), path+" "+want)) {
			t.Errorf("CheckTarget(%s) = %v, want %q", path, err, want)
		}
	}
}

func TestCreateCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	f, err := Create(p, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("data")
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("target exists before Commit: %v", err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	if b, _ := os.ReadFile(p); string(b) != "data" {
		t.Errorf("got %q", b)
	}
	g, err := Create(filepath.Join(dir, "g"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	g.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}
