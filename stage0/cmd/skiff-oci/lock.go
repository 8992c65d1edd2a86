package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/lazyre"
	"github.com/skiff-project/skiff/stage1/abi"
)

// State under --root: ROOT/ID/ is a container's pod directory (written by
// internal/ocipod); skiff-oci's flocks live beside it, so that they never
// meet the pod's own files: ROOT/.skiff-oci.lock guards creating and
// removing container directories (list takes it shared), and
// ROOT/.locks/ID.lock serialises the verbs on one container.
const (
	rootLockName = ".skiff-oci.lock"
	locksDir     = ".locks"
)

// validID is runc's rule for container IDs; it also keeps an ID a single
// path component under --root.
var validID = lazyre.New(`^[\w+.-]+$`)

func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("container id is empty; give the container's id")
	}
	if !validID.MatchString(id) || id == "." || id == ".." || len(id) > 1024 {
		return fmt.Errorf("invalid container id %q: use letters, digits and _ + - . only", id)
	}
	return nil
}

// flock is a held lock on a file.
type flock struct{ f *os.File }

// lockFile takes an flock on path (creating it), exclusive or shared. A
// lock file can be removed by its holder (removeLocked); a waiter that
// then gets the lock on the removed file notices it and retries on the new
// one.
func lockFile(path string, exclusive bool) (*flock, error) {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		for {
			err = unix.Flock(int(f.Fd()), how)
			if err != unix.EINTR {
				break
			}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil &&
			held.Ino == now.Ino && held.Dev == now.Dev {
			return &flock{f}, nil
		}
		f.Close() // removed (or replaced) while we waited
	}
}

func (l *flock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// removeLocked removes the held lock file, then releases it.
func (l *flock) removeLocked() {
	if l != nil && l.f != nil {
		os.Remove(l.f.Name())
		l.unlock()
	}
}

// ensureRoot makes --root (0700) if it is missing.
func ensureRoot(root string) error {
	if err := os.MkdirAll(filepath.Join(root, locksDir), 0o700); err != nil {
		return fmt.Errorf("state root %s: %w; give a writable --root", root, err)
	}
	return nil
}

func lockRoot(root string, exclusive bool) (*flock, error) {
	if err := ensureRoot(root); err != nil {
		return nil, err
	}
	return lockFile(filepath.Join(root, rootLockName), exclusive)
}

func lockContainer(root, id string) (*flock, error) {
	if err := ensureRoot(root); err != nil {
		return nil, err
	}
	return lockFile(filepath.Join(root, locksDir, id+".lock"), true)
}

// settleCreate waits for stage1 processes still working in the container's
// pod directory (their cwd): an oci-create whose skiff-oci was killed goes on
// setting the container up, and deleting under it would leave a container
// behind. It waits up to a minute, then kills them. Once create has
// finished (the stage1's created marker, abi.OCICreatedFile) nothing is
// setting the container up: what works there then is an exec's enter, which
// lives as long as its process (the container's death ends it), or the kvm
// stage1's supervisor and its QEMU, which delete stops; neither is waited for.
func settleCreate(dir string) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Lstat(filepath.Join(dir, abi.OCICreatedFile)); err == nil {
			return
		}
		pids := cwdIn(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range pids {
				unix.Kill(p, unix.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cwdIn lists the processes (other than this one) whose working directory
// is dir.
func cwdIn(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && cwd == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}
