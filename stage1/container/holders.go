package container

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/skiff-project/skiff/internal/cgtree"
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

// CgroupPids lists the processes in the cgroup directory dir and below, of
// a bounded part of the tree (cgtree.Pids).
func CgroupPids(dir string) ([]int, error) { return cgtree.Pids(dir) }
