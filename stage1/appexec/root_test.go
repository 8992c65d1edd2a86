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
