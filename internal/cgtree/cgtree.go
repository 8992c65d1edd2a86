// Package cgtree finds a cgroup in the host's hierarchies (Dir, Dirs) and
// reads the tree below it, which its processes may have grown themselves (a
// --private-users pod's delegated cgroups, an OCI container given write
// access to its cgroupfs): a bounded part of it, no symlink followed (Pids).
package cgtree

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What Pids reads of a cgroup tree at most. A --private-users pod may
// grow its own (delegated) cgroups: a hostile app can make them deep or wide.
const (
	MaxEntries    = 1 << 16 // names read in all directories
	MaxDepth      = 32      // directories below the walk's root
	MaxProcsBytes = 64 << 10
)

// ErrReadInPart says Pids did not read the whole tree.
var ErrReadInPart = errors.New("read only part of the cgroup tree")

// Pids lists the processes in the cgroup directory dir and below. It
// follows no symlink (there are none in a cgroup filesystem) and reads a
// bounded part of the tree (Max*): past a bound it returns what it
// found and an ErrReadInPart that says which bound (the names below
// dir are the pod's, so the error names none). A dir that cannot be opened
// holds nothing.
func Pids(dir string) ([]int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil
	}
	w := walker{entries: MaxEntries}
	w.walk(fd, 0)
	if w.stopped != "" {
		return w.pids, fmt.Errorf("%w (%s below %s)", ErrReadInPart, w.stopped, dir)
	}
	return w.pids, nil
}

type walker struct {
	pids    []int
	entries int    // names left to read
	stopped string // the first bound reached
}

func (w *walker) stop(bound string) {
	if w.stopped == "" {
		w.stopped = bound
	}
}

// walk reads dfd's cgroup.procs and its subdirectories; it closes dfd.
func (w *walker) walk(dfd int, depth int) {
	f := os.NewFile(uintptr(dfd), "cgroup")
	defer f.Close()
	w.readProcs(dfd)
	for w.entries > 0 {
		ents, err := f.ReadDir(min(w.entries, 256))
		w.entries -= len(ents)
		for _, e := range ents {
			if !e.IsDir() { // a symlink is not
				continue
			}
			if depth >= MaxDepth {
				w.stop(fmt.Sprintf("more than %d levels", MaxDepth))
				continue
			}
			cfd, err := unix.Openat(dfd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil { // gone meanwhile
				continue
			}
			w.walk(cfd, depth+1)
		}
		if err != nil { // io.EOF at the end
			return
		}
	}
	w.stop(fmt.Sprintf("more than %d entries", MaxEntries))
}

// readProcs adds the pids of dfd's cgroup.procs, a regular file, up to
// MaxProcsBytes of it (whole lines: a cut pid would name another).
func (w *walker) readProcs(dfd int) {
	if w.entries <= 0 {
		return
	}
	fd, err := unix.Openat(dfd, "cgroup.procs", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "cgroup.procs")
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return
	}
	b, _ := io.ReadAll(io.LimitReader(f, MaxProcsBytes+1))
	if len(b) > MaxProcsBytes {
		b = b[:bytes.LastIndexByte(b[:MaxProcsBytes], '\n')+1]
		w.stop(fmt.Sprintf("a cgroup.procs of more than %d bytes", MaxProcsBytes))
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			w.pids = append(w.pids, pid)
		}
	}
}

// Dirs maps "" for cgroup2 and, on a v1 or hybrid host, each
// controller of the v1 hierarchies under root to the directory of cgroup cg
// there, when there is one. root is cgroup2 itself on a pure cgroup2 host
// (its subdirectories are groups, not hierarchies), else cgroup2 is
// root/unified (if mounted) and a v1 hierarchy is a directory named after
// its controllers ("cpu,cpuacct"; its links "cpu" and "cpuacct" are
// skipped). It reads all of root; Dir looks up one controller.
func Dirs(root, cg string) map[string]string {
	out := map[string]string{}
	if d, ok := Dir(root, cg, ""); ok {
		out[""] = d
	}
	if pureV2(root) {
		return out
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == "unified" || !exists(filepath.Join(root, name, "cgroup.procs")) {
			continue
		}
		if d, ok := group(filepath.Join(root, name), cg); ok {
			for _, c := range strings.Split(name, ",") {
				out[c] = d
			}
		}
	}
	return out
}

// Dir is Dirs(root, cg)[controller] with a few stats instead of a read of
// all of root, for a controller with a hierarchy of its own or a link to
// its hierarchy named after it (freezer, pids, memory; "" is cgroup2).
func Dir(root, cg, controller string) (string, bool) {
	switch {
	case pureV2(root):
		if controller == "" {
			return group(root, cg)
		}
	case controller == "":
		if exists(filepath.Join(root, "unified", "cgroup.controllers")) {
			return group(root+"/unified", cg)
		}
	case exists(filepath.Join(root, controller, "cgroup.procs")):
		return group(filepath.Join(root, controller), cg)
	}
	return "", false
}

// pureV2 says whether root is itself cgroup2 (a pure cgroup2 host).
func pureV2(root string) bool { return exists(filepath.Join(root, "cgroup.controllers")) }

// group is cgroup cg in hierarchy h, when it is there: a directory, not
// reached through a link.
func group(h, cg string) (string, bool) {
	fi, err := os.Lstat(h + cg)
	return h + cg, err == nil && fi.IsDir()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
