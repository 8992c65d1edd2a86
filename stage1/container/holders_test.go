package container

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
