package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/cgtree"
)

// fakeProc makes proc/PID/{stat,ns/pid[,wchan]} for one process.
func fakeProc(t *testing.T, proc string, pid, ppid int, comm, state, ns, wchan string) {
	t.Helper()
	d := filepath.Join(proc, strconv.Itoa(pid))
	if err := os.MkdirAll(filepath.Join(d, "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (%s) %s %d 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345\n", pid, comm, state, ppid)
	if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ns, filepath.Join(d, "ns", "pid")); err != nil {
		t.Fatal(err)
	}
	if wchan != "" {
		if err := os.WriteFile(filepath.Join(d, "wchan"), []byte(wchan), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHoldersNamesWhatKeepsThePod(t *testing.T) {
	root := t.TempDir()
	proc := filepath.Join(root, "proc")
	const pod, host = "pid:[4026532999]", "pid:[4026531836]"
	fakeProc(t, proc, 100, 50, "systemd", "S", pod, "do_wait")
	fakeProc(t, proc, 101, 200, "sleep", "Z", pod, "")      // its parent (an enter) is outside: never reaped
	fakeProc(t, proc, 102, 100, "sh) D 1 (x", "D", pod, "") // a name that mimics stat's syntax
	fakeProc(t, proc, 200, 1, "stage1", "S", host, "")
	fakeProc(t, proc, 300, 1, "enter\x1b[2J", "S", host, "") // joined through the cgroup; a hostile name
	fakeProc(t, proc, 1, 0, "init", "S", host, "")
	cg := filepath.Join(root, "cg")
	if err := os.MkdirAll(filepath.Join(cg, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte("100\n102\n"), 0o644)
	os.WriteFile(filepath.Join(cg, "app", "cgroup.procs"), []byte("300\n101\n"), 0o644)
	cg2 := filepath.Join(root, "cg2")
	os.MkdirAll(cg2, 0o755)
	os.WriteFile(filepath.Join(cg2, "cgroup.procs"), []byte("300\n"), 0o644) // another hierarchy: named once

	got := holders(proc, 100, []string{cg, cg2})
	want := "init 100 (systemd) S in do_wait; its pid namespace holds 101 (sleep) Z, parent 200 (stage1) S outside the pod, " +
		"102 (sh) D 1 (x) D; its cgroups also hold 300 (enter?[2J) S"
	if got != want {
		t.Errorf("holders:\n got %q\nwant %q", got, want)
	}
	if got := holders(proc, 999, nil); got != "its init 999 is gone" {
		t.Errorf("holders of a gone init: %q", got)
	}
	// Alone in its namespace.
	fakeProc(t, proc, 400, 1, "systemd", "D", "pid:[4026533000]", "0")
	if got, want := holders(proc, 400, nil), "init 400 (systemd) D; nothing else in its pid namespace"; got != want {
		t.Errorf("holders of a lone init:\n got %q\nwant %q", got, want)
	}
	// A crowded namespace is bounded.
	for p := 500; p < 530; p++ {
		fakeProc(t, proc, p, 100, "sleep", "S", pod, "")
	}
	if got := holders(proc, 100, nil); !strings.HasSuffix(got, " and 20 more") || strings.Count(got, "(sleep)") != 11 { // 101, 102 and the first ten
		t.Errorf("holders of a crowded pod: %q", got)
	}
}

// A pod may grow its own cgroups (delegated to --private-users pods):
// CgroupPids reads a bounded part of a hostile tree, follows no symlink and
// says when it stopped early.
func TestCgroupPidsIsBounded(t *testing.T) {
	root := t.TempDir()
	write := func(path, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pids := func(dir, wantErr string) []int {
		t.Helper()
		got, err := CgroupPids(dir)
		if wantErr == "" && err != nil || wantErr != "" && (!errors.Is(err, cgtree.ErrReadInPart) || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("CgroupPids(%s): error %v, want %q", dir, err, wantErr)
		}
		return got
	}

	// A plain tree is read whole.
	plain := filepath.Join(root, "plain")
	write(filepath.Join(plain, "cgroup.procs"), "10\n")
	write(filepath.Join(plain, "a", "cgroup.procs"), "11\n12\n")
	write(filepath.Join(plain, "a", "b", "cgroup.procs"), "13\n")
	if got := pids(plain, ""); !slices.Equal(slices.Sorted(slices.Values(got)), []int{10, 11, 12, 13}) {
		t.Errorf("plain tree: %v", got)
	}

	// Symlinks (a cgroup filesystem has none) are not followed, a cgroup.procs
	// that is no regular file (a fifo would block) is not read.
	outside := filepath.Join(root, "outside")
	write(filepath.Join(outside, "cgroup.procs"), "4242\n")
	links := filepath.Join(root, "links")
	os.MkdirAll(filepath.Join(links, "f"), 0o755)
	os.MkdirAll(filepath.Join(links, "p"), 0o755)
	os.Symlink(outside, filepath.Join(links, "d"))
	os.Symlink(filepath.Join(outside, "cgroup.procs"), filepath.Join(links, "f", "cgroup.procs"))
	if err := unix.Mkfifo(filepath.Join(links, "p", "cgroup.procs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := pids(links, ""); len(got) != 0 {
		t.Errorf("through symlinks: %v", got)
	}
	if got := pids(filepath.Join(links, "d"), ""); len(got) != 0 { // the root itself
		t.Errorf("a symlinked root: %v", got)
	}

	// Deep: read down to cgtree.MaxDepth levels.
	deep := filepath.Join(root, "deep")
	d := deep
	for i := 1; i <= cgtree.MaxDepth+8; i++ {
		d = filepath.Join(d, "d")
		write(filepath.Join(d, "cgroup.procs"), strconv.Itoa(1000+i)+"\n")
	}
	got := pids(deep, fmt.Sprintf("more than %d levels below %s", cgtree.MaxDepth, deep))
	if want := 1000 + cgtree.MaxDepth; len(got) != cgtree.MaxDepth || slices.Max(got) != want {
		t.Errorf("deep tree: %v, want 1001..%d", got, want)
	}
	if got := holders("/nonexistent", 1, nil); strings.Contains(got, "part") {
		t.Errorf("holders without cgroups: %q", got)
	}
	proc := filepath.Join(root, "proc")
	fakeProc(t, proc, 1001, 1, "systemd", "S", "pid:[4026532999]", "")
	if got := holders(proc, 1001, []string{deep}); !strings.HasSuffix(got, "; read only part of the cgroup tree (more than 32 levels below "+deep+")") {
		t.Errorf("holders of a deep tree: %q", got)
	}

	// Wide: at most cgtree.MaxEntries names in all.
	wide := filepath.Join(root, "wide")
	write(filepath.Join(wide, "cgroup.procs"), "20\n")
	for i := 0; i <= cgtree.MaxEntries; i++ {
		f, err := os.Create(filepath.Join(wide, strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if got := pids(wide, fmt.Sprintf("more than %d entries", cgtree.MaxEntries)); !slices.Equal(got, []int{20}) {
		t.Errorf("wide tree: %v", got)
	}

	// A long cgroup.procs: read up to cgtree.MaxProcsBytes, whole lines only
	// (a cut "123456" would name pid 12).
	long := filepath.Join(root, "long")
	write(filepath.Join(long, "cgroup.procs"), strings.Repeat("123456\n", cgtree.MaxProcsBytes/7+10))
	got = pids(long, fmt.Sprintf("a cgroup.procs of more than %d bytes", cgtree.MaxProcsBytes))
	if len(got) != cgtree.MaxProcsBytes/7 || slices.ContainsFunc(got, func(p int) bool { return p != 123456 }) {
		t.Errorf("long cgroup.procs: %d pids, want %d of 123456", len(got), cgtree.MaxProcsBytes/7)
	}
}
