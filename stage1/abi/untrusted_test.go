package abi

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A pod directory as a hostile pod leaves it: every way a reader could be
// led outside it, made to block or to read without end.
func hostilePodDir(t testing.TB) (pod string, secret string) {
	t.Helper()
	root := t.TempDir()
	pod = filepath.Join(root, "pod")
	secret = filepath.Join(root, "secret.json")
	must(t, os.WriteFile(secret, []byte(`{"code":42}`), 0o600))
	for _, d := range []string{"apps/link-final", "apps/fifo", "apps/huge", "apps/dir/exit.json", "apps/good", "../outside"} {
		must(t, os.MkdirAll(filepath.Join(pod, d), 0o755))
	}
	must(t, os.Symlink(secret, filepath.Join(pod, "apps/link-final/exit.json")))
	must(t, os.Symlink(filepath.Join(root, "outside"), filepath.Join(pod, "apps/link-dir")))
	must(t, os.WriteFile(filepath.Join(root, "outside/exit.json"), []byte(`{"code":42}`), 0o644))
	must(t, os.Symlink("../good", filepath.Join(pod, "apps/link-relative")))
	must(t, os.Symlink("/dev/zero", filepath.Join(pod, "apps/zero")))
	must(t, unix.Mkfifo(filepath.Join(pod, "apps/fifo/exit.json"), 0o644))
	f, err := os.Create(filepath.Join(pod, "apps/huge/exit.json"))
	must(t, err)
	must(t, f.Truncate(MaxFileSize+1))
	f.Close()
	must(t, os.WriteFile(filepath.Join(pod, "apps/good/exit.json"), []byte(`{"app":"good","code":3}`), 0o644))
	return pod, secret
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadJSONAtRefusesHostileFiles(t *testing.T) {
	pod, _ := hostilePodDir(t)
	d, err := os.Open(pod)
	must(t, err)
	defer d.Close()
	for rel, want := range map[string]error{
		"apps/link-final/exit.json":    unix.ELOOP,
		"apps/link-dir/exit.json":      unix.ELOOP,
		"apps/link-relative/exit.json": unix.ELOOP,
		"apps/zero":                    unix.ELOOP,
		"apps/fifo/exit.json":          ErrNotRegular,
		"apps/dir/exit.json":           ErrNotRegular,
		"apps/huge/exit.json":          ErrTooLarge,
		"../secret.json":               unix.EXDEV,
		"/etc/passwd":                  unix.EXDEV,
	} {
		var x AppExit
		err := ReadJSONAt(d, rel, &x)
		if !errors.Is(err, want) {
			t.Errorf("ReadJSONAt(%s): %v (read %+v), want %v", rel, err, x, want)
		}
	}
	var x AppExit
	if err := ReadJSONAt(d, "apps/good/exit.json", &x); err != nil || x.Code != 3 {
		t.Errorf("a plain exit record: %+v, %v", x, err)
	}
}

// ReadJSON with a path relative to the working directory (how stage1 reads
// its pod directory) checks every component; with an absolute one, the file
// itself.
func TestReadJSONRelativeAndAbsolute(t *testing.T) {
	pod, secret := hostilePodDir(t)
	t.Chdir(pod)
	var x AppExit
	if err := ReadJSON("apps/link-dir/exit.json", &x); !errors.Is(err, unix.ELOOP) {
		t.Errorf("through a linked directory: %v (%+v)", err, x)
	}
	if err := ReadJSON("apps/good/exit.json", &x); err != nil || x.Code != 3 {
		t.Errorf("plain: %+v, %v", x, err)
	}
	if err := ReadJSON(filepath.Join(pod, "apps/link-final/exit.json"), &x); !errors.Is(err, unix.ELOOP) {
		t.Errorf("absolute, a linked file: %v", err)
	}
	if err := ReadJSON(filepath.Join(pod, "apps/fifo/exit.json"), &x); !errors.Is(err, ErrNotRegular) {
		t.Errorf("absolute, a FIFO: %v", err)
	}
	if err := ReadJSON(secret, &x); err != nil || x.Code != 42 {
		t.Errorf("absolute, plain: %+v %v", x, err)
	}
	if err := ReadJSON("apps/nothing/exit.json", &x); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v, want ErrNotExist", err)
	} else if !strings.Contains(err.Error(), "apps/nothing/exit.json") {
		t.Errorf("error %q does not name the file", err)
	}
}

// Without openat2 (old kernels), the component walk refuses the same.
func TestOpenBeneathWalk(t *testing.T) {
	pod, _ := hostilePodDir(t)
	d, err := os.Open(pod)
	must(t, err)
	defer d.Close()
	for rel, ok := range map[string]bool{
		"apps/good/exit.json": true, "apps/link-dir/exit.json": false, "apps/link-final/exit.json": false,
		"apps/../../secret.json": false,
	} {
		fd, err := walkBeneath(int(d.Fd()), rel, unix.O_RDONLY|unix.O_NONBLOCK)
		if err == nil {
			unix.Close(fd)
		}
		if (err == nil) != ok {
			t.Errorf("walk %s: %v, want ok=%v", rel, err, ok)
		}
	}
}

// ReadFileAt reads a file of up to max bytes whole, and refuses one byte more
// before reading anything.
func TestReadFileAtBound(t *testing.T) {
	dir := t.TempDir()
	for name, n := range map[string]int{"empty": 0, "max": 100, "over": 101} {
		must(t, os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte{'x'}, n), 0o644))
	}
	d, err := os.Open(dir)
	must(t, err)
	defer d.Close()
	for name, want := range map[string]int{"empty": 0, "max": 100} {
		if b, err := ReadFileAt(d, name, 100); err != nil || len(b) != want {
			t.Errorf("ReadFileAt(%s, 100): %d bytes, %v; want %d", name, len(b), err, want)
		}
	}
	if b, err := ReadFileAt(d, "over", 100); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFileAt(over, 100): %d bytes, %v; want ErrTooLarge", len(b), err)
	}
}
