package appexec

import (
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOldestOther(t *testing.T) {
	// a child started after this process; the oldest other than this
	// process among both is the child, and without it there is none
	c := osexec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	procs := filepath.Join(t.TempDir(), "cgroup.procs")
	self, child := strconv.Itoa(os.Getpid()), strconv.Itoa(c.Process.Pid)
	if err := os.WriteFile(procs, []byte(child+"\n"+self+"\n999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pid, err := oldestOther(procs, func(int) bool { return true }); err != nil || pid != c.Process.Pid {
		t.Errorf("oldestOther = %d, %v; want the child %d", pid, err, c.Process.Pid)
	}
	if s, ok := startTime(os.Getpid()); !ok || s == 0 {
		t.Errorf("startTime(self) = %d, %v", s, ok)
	}
	if err := os.WriteFile(procs, []byte(self+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pid, err := oldestOther(procs, func(int) bool { return true }); err != nil || pid != 0 {
		t.Errorf("oldestOther with only this process = %d, %v; want 0", pid, err)
	}
	if in, err := inCgroupProcs(procs, os.Getpid()); err != nil || !in {
		t.Errorf("inCgroupProcs(self) = %v, %v", in, err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:            "/a/b",
		`/a\040b`:         "/a b",
		`/tab\011x\134y`:  "/tab\tx\\y",
		`/trailing\04`:    `/trailing\04`,
		`/not\999octal`:   `/not\999octal`,
		`/nl\012`:         "/nl\n",
		`/two\040\040end`: "/two  end",
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSharedMounts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "shared")
	if got, err := sharedMounts(p); err != nil || got != nil {
		t.Fatalf("no file: %v, %v; want none", got, err)
	}
	os.WriteFile(p, []byte("/opt/stage2/app/rootfs/vol\n\nrelative\n/\n/opt/stage2/app/rootfs/x/../y/\n"), 0o644)
	got, err := sharedMounts(p)
	if err != nil || len(got) != 2 || got[0] != "/opt/stage2/app/rootfs/vol" || got[1] != "/opt/stage2/app/rootfs/y" {
		t.Errorf("sharedMounts = %q, %v", got, err)
	}
}

// joinAppsMountNS joins the mount namespace bound at its path (where the kvm
// guest keeps the apps' roots), does nothing without the file, and refuses
// a file that is not a mount namespace. Each namespace lives on a thread of
// its own, so nothing touches the test's mounts.
func TestJoinAppsMountNS(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: mount namespaces")
	}
	dir := t.TempDir()
	marked, nsFile, plain := filepath.Join(dir, "m"), filepath.Join(dir, "ns"), filepath.Join(dir, "plain")
	for _, d := range []string{marked} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{nsFile, plain} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	onThread := func(fn func() error) chan error { // a thread that ends with fn
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			done <- fn()
		}()
		return done
	}
	private := func() error {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return err
		}
		return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
	}
	// One try: the test's side in a private copy made first, the apps'
	// namespace made after it (it must be the newer one to be bound into
	// the test's).
	try := func() (testErr, appsErr error) {
		made, start, joined := make(chan struct{}), make(chan int), make(chan struct{})
		test := onThread(func() error {
			err := private()
			close(made)
			if err != nil {
				return err
			}
			tid, ok := <-start
			if !ok {
				return nil // the apps' side failed
			}
			defer close(joined)
			if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/mnt", tid), nsFile, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind the namespace: %w", err)
			}
			if _, err := os.Stat(filepath.Join(marked, "app")); err == nil {
				return errors.New("the apps' mount is visible before joining")
			}
			if err := joinAppsMountNS(filepath.Join(dir, "none")); err != nil {
				return fmt.Errorf("no file: %w", err)
			}
			if err := joinAppsMountNS(plain); err == nil {
				return errors.New("a plain file was joined as a mount namespace")
			}
			if err := joinAppsMountNS(nsFile); err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(marked, "app")); err != nil {
				return fmt.Errorf("after joining, the apps' mount: %w", err)
			}
			return nil
		})
		apps := onThread(func() error { // the apps' namespace, with a tmpfs on marked
			<-made
			if err := private(); err != nil {
				close(start)
				return err
			}
			if err := unix.Mount("tmpfs", marked, "tmpfs", 0, ""); err != nil {
				close(start)
				return err
			}
			if err := os.WriteFile(filepath.Join(marked, "app"), nil, 0o600); err != nil {
				close(start)
				return err
			}
			start <- unix.Gettid()
			<-joined
			return nil
		})
		return <-test, <-apps
	}
	// The kernel now and then refuses the bind (EINVAL: the namespace
	// looks no newer than the binder's) although the apps' side made its
	// namespace after the test's had its own; a fresh pair of namespaces
	// then gets through. Only that refusal is retried.
	for i := 0; ; i++ {
		testErr, appsErr := try()
		if i < 20 && testErr != nil && strings.HasPrefix(testErr.Error(), "bind the namespace") && errors.Is(testErr, unix.EINVAL) && appsErr == nil {
			continue
		}
		if testErr != nil {
			t.Error(testErr)
		}
		if appsErr != nil {
			t.Error(appsErr)
		}
		return
	}
}
