package ocipod

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

func TestCheckID(t *testing.T) {
	for _, id := range []string{"a", "abc-123_x+y.z", strings.Repeat("x", 1024)} {
		if err := checkID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", ".hidden", "a/b", "a b", "../x", strings.Repeat("x", 1025)} {
		if err := checkID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("%q: %v, want ErrBadID", id, err)
		}
	}
}

// Bad bundles are refused with an error that names the bundle and the fix.
func TestReadBundleRefusesBadBundles(t *testing.T) {
	good := `{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{}}`
	for _, c := range []struct {
		name, config string
		rootfs       bool
		want         string
	}{
		{"missing", "", true, "no such file"},
		{"malformed", "{", true, "not a runtime spec"},
		{"old", strings.Replace(good, "1.0.2", "0.9.0", 1), true, "want 1.x"},
		{"noprocess", `{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{}}`, true, "no process.args"},
		{"noroot", `{"ociVersion":"1.0.2","process":{"args":["x"]},"linux":{}}`, true, "no root.path"},
		{"norootfs", good, false, "is not a directory"},
		{"nolinux", `{"ociVersion":"1.0.2","process":{"args":["x"]},"root":{"path":"rootfs"}}`, true, "no linux section"},
		{"selinux", strings.Replace(good, `"cwd":"/"`, `"cwd":"/","selinuxLabel":"system_u:system_r:container_t:s0"`, 1), true, "does not apply SELinux labels"},
		{"mountlabel", strings.Replace(good, `"linux":{}`, `"linux":{"mountLabel":"system_u:object_r:container_file_t:s0"}`, 1), true, "mount labels"},
	} {
		dir := filepath.Join(t.TempDir(), c.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if c.config != "" {
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(c.config), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if c.rootfs {
			if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err := readBundle(dir)
		if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrBadBundle naming %s and %q", c.name, err, dir, c.want)
		}
	}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "config.json"), []byte(good), 0o644)
	_ = os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	if _, spec, err := readBundle(dir); err != nil || spec.Process.Args[0] != "/bin/true" {
		t.Errorf("good bundle: %v", err)
	}
}

func TestListAndLoadOfMissing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "nothing")
	if ids, err := List(root); err != nil || len(ids) != 0 {
		t.Errorf("List of a missing root: %v, %v", ids, err)
	}
	if _, err := Load(root, "x"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Load of a missing container: %v, want ErrNotExist", err)
	}
	if _, err := Load(root, "../etc"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Load of a bad id: %v, want ErrNotExist", err)
	}
}

// An init whose leader thread reads as a zombie has ended, even while
// another thread of it lives: stage1's pod-init execs from its leader, so
// its leader never reads so while it runs. Once every thread has ended (a
// zombie not yet reaped) it is ended too.
func TestLivePidLeaderZombieIsEnded(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("no /usr/bin/python3 to make a process whose leader thread exits first")
	}
	// The main thread ends with pthread_exit; another waits on stdin.
	cmd := exec.Command(py, "-c", "import threading, ctypes, sys; threading.Thread(target=sys.stdin.read).start(); ctypes.CDLL(None).pthread_exit(None)")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if _, st, err := procStat(pid); err == nil && st == "Z" && len(tasks) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: its leader thread did not exit with another thread alive", pid)
		}
	}
	p := &Pod{Dir: t.TempDir()}
	start, _ := procStart(pid)
	if err := os.WriteFile(filepath.Join(p.Dir, abi.PIDFile), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.Dir, initStartFile), []byte(start), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := p.livePid(); got != 0 {
		t.Errorf("livePid of a process whose leader is a zombie and another thread lives: %d, want 0", got)
	}
	in.Close() // the other thread ends, and so the process: a zombie, not reaped
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if got := p.livePid(); got != 0 {
		t.Errorf("livePid of an exited process not yet reaped: %d, want 0", got)
	}
}

// The container's cgroup is the stage1's record, read as untrusted: no link
// followed, an absolute clean path other than the root.
func TestCgroupRecord(t *testing.T) {
	p := &Pod{ID: "c", Dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(p.Dir, abi.Stage1Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(p.Dir, abi.OCICgroupFile)
	if err := os.WriteFile(rec, []byte("/skiff-oci/c"), 0o644); err != nil {
		t.Fatal(err)
	}
	if cg, err := p.cgroup(); err != nil || cg != "/skiff-oci/c" {
		t.Errorf("cgroup() = %q, %v; want /skiff-oci/c", cg, err)
	}
	for _, bad := range []string{"", "/", "skiff-oci/c", "/a/../b", "/a//b", "/a/\x00", strings.Repeat("/x", 3000)} {
		if err := os.WriteFile(rec, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if cg, err := p.cgroup(); err == nil {
			t.Errorf("record %q: cgroup() = %q; want an error", bad, cg)
		}
	}
	target := filepath.Join(t.TempDir(), "elsewhere")
	os.WriteFile(target, []byte("/skiff-oci/c"), 0o644)
	os.Remove(rec)
	if err := os.Symlink(target, rec); err != nil {
		t.Fatal(err)
	}
	if cg, err := p.cgroup(); err == nil {
		t.Errorf("a link at the record: cgroup() = %q; want an error", cg)
	}
}
