package container

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procInfo is what /proc says of one process.
type procInfo struct {
	pid, ppid int
	comm      string
	state     string // R, S, D, Z, T, ...
}

func (p procInfo) String() string {
	return fmt.Sprintf("%d (%s) %s", p.pid, p.comm, p.state)
}

// readProc reads proc/PID/stat ("PID (COMM) STATE PPID ...").
func readProc(proc string, pid int) (procInfo, bool) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procInfo{}, false
	}
	s := string(b)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')') // the name may hold anything but not this last
	if i < 0 || j < i {
		return procInfo{}, false
	}
	f := strings.Fields(s[j+1:])
	if len(f) < 2 {
		return procInfo{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procInfo{}, false
	}
	// A process names itself: no control character of it reaches gc's message.
	comm := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s[i+1:j])
	return procInfo{pid: pid, ppid: ppid, comm: comm, state: f[0]}, true
}

// maxHolders bounds how many processes a holders message names.
const maxHolders = 12

// holders says what keeps a pod whose init is pid from being destroyed
// (libcontainer's "container still running"): the init's state (and what it
// waits in), the other processes of its pid namespace (a zombie there whose
// parent is outside the pod, never reaped, keeps the init in the kernel's
// wait for its namespace), and those in the pod's cgroup directories. proc is
// /proc (a fabricated tree in tests).
func holders(proc string, pid int, cgroupDirs []string) string {
	init, ok := readProc(proc, pid)
	if !ok {
		return fmt.Sprintf("its init %d is gone", pid)
	}
	msg := "init " + init.String()
	if w, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "wchan")); err == nil && len(w) > 0 && string(w) != "0" {
		msg += " in " + string(w)
	}
	// The init's pid namespace: every process whose ns/pid is the init's.
	var inNS []procInfo
	if ns, err := os.Readlink(filepath.Join(proc, strconv.Itoa(pid), "ns", "pid")); err == nil {
		ents, _ := os.ReadDir(proc)
		for _, e := range ents {
			p, err := strconv.Atoi(e.Name())
			if err != nil || p == pid {
				continue
			}
			if l, err := os.Readlink(filepath.Join(proc, e.Name(), "ns", "pid")); err == nil && l == ns {
				if info, ok := readProc(proc, p); ok {
					inNS = append(inNS, info)
				}
			}
		}
	}
	slices.SortFunc(inNS, func(a, b procInfo) int { return a.pid - b.pid })
	isIn := func(p int) bool {
		return p == pid || slices.ContainsFunc(inNS, func(i procInfo) bool { return i.pid == p })
	}
	var named []string
	for _, p := range inNS {
		s := p.String()
		if !isIn(p.ppid) {
			if parent, ok := readProc(proc, p.ppid); ok {
				s += ", parent " + parent.String() + " outside the pod"
			} else {
				s += fmt.Sprintf(", parent %d outside the pod", p.ppid)
			}
		}
		named = append(named, s)
	}
	if len(named) > 0 {
		msg += "; its pid namespace holds " + joinBounded(named)
	} else {
		msg += "; nothing else in its pid namespace"
	}
	// The pod's cgroups: processes there that are not in the namespace
	// (an enter's, joined through the cgroup).
	var others []string
	var inPart error
	seen := map[int]bool{}
	for _, d := range cgroupDirs {
		pids, err := CgroupPids(d)
		if inPart == nil {
			inPart = err
		}
		for _, p := range pids {
			if seen[p] || isIn(p) {
				continue
			}
			seen[p] = true
			if info, ok := readProc(proc, p); ok {
				others = append(others, info.String())
			}
		}
	}
	if len(others) > 0 {
		msg += "; its cgroups also hold " + joinBounded(others)
	}
	if inPart != nil {
		msg += "; " + inPart.Error()
	}
	return msg
}

func joinBounded(s []string) string {
	if len(s) > maxHolders {
		return strings.Join(s[:maxHolders], ", ") + fmt.Sprintf(" and %d more", len(s)-maxHolders)
	}
	return strings.Join(s, ", ")
}

// What CgroupPids reads of a cgroup tree at most. A --private-users pod may
// grow its own (delegated) cgroups: a hostile app can make them deep or wide.
const (
	maxCgroupEntries    = 1 << 16 // names read in all directories
	maxCgroupDepth      = 32      // directories below the walk's root
	maxCgroupProcsBytes = 64 << 10
)

// ErrCgroupsReadInPart says CgroupPids did not read the whole tree.
var ErrCgroupsReadInPart = errors.New("read only part of the cgroup tree")

// CgroupPids lists the processes in the cgroup directory dir and below. It
// follows no symlink (there are none in a cgroup filesystem) and reads a
// bounded part of the tree (maxCgroup*): past a bound it returns what it
// found and an ErrCgroupsReadInPart that says which bound (the names below
// dir are the pod's, so the error names none). A dir that cannot be opened
// holds nothing.
func CgroupPids(dir string) ([]int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil
	}
	w := cgroupWalk{entries: maxCgroupEntries}
	w.walk(fd, 0)
	if w.stopped != "" {
		return w.pids, fmt.Errorf("%w (%s below %s)", ErrCgroupsReadInPart, w.stopped, dir)
	}
	return w.pids, nil
}

type cgroupWalk struct {
	pids    []int
	entries int    // names left to read
	stopped string // the first bound reached
}

func (w *cgroupWalk) stop(bound string) {
	if w.stopped == "" {
		w.stopped = bound
	}
}

// walk reads dfd's cgroup.procs and its subdirectories; it closes dfd.
func (w *cgroupWalk) walk(dfd int, depth int) {
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
			if depth >= maxCgroupDepth {
				w.stop(fmt.Sprintf("more than %d levels", maxCgroupDepth))
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
	w.stop(fmt.Sprintf("more than %d entries", maxCgroupEntries))
}

// readProcs adds the pids of dfd's cgroup.procs, a regular file, up to
// maxCgroupProcsBytes of it (whole lines: a cut pid would name another).
func (w *cgroupWalk) readProcs(dfd int) {
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
	b, _ := io.ReadAll(io.LimitReader(f, maxCgroupProcsBytes+1))
	if len(b) > maxCgroupProcsBytes {
		b = b[:bytes.LastIndexByte(b[:maxCgroupProcsBytes], '\n')+1]
		w.stop(fmt.Sprintf("a cgroup.procs of more than %d bytes", maxCgroupProcsBytes))
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			w.pids = append(w.pids, pid)
		}
	}
}
