package appexec

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"testing"
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
	if pid, err := oldestOther(procs); err != nil || pid != c.Process.Pid {
		t.Errorf("oldestOther = %d, %v; want the child %d", pid, err, c.Process.Pid)
	}
	if s, ok := startTime(os.Getpid()); !ok || s == 0 {
		t.Errorf("startTime(self) = %d, %v", s, ok)
	}
	if err := os.WriteFile(procs, []byte(self+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pid, err := oldestOther(procs); err != nil || pid != 0 {
		t.Errorf("oldestOther with only this process = %d, %v; want 0", pid, err)
	}
	if in, err := inCgroupProcs(procs, os.Getpid()); err != nil || !in {
		t.Errorf("inCgroupProcs(self) = %v, %v", in, err)
	}
}
