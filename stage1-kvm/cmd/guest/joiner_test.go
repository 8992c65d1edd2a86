package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// dumpableProbe, set, has this test binary print whether it is dumpable
// and exit, before any test runs (after the C library's constructors).
const dumpableProbe = "SKIFF_TEST_DUMPABLE_PROBE"

func init() {
	if os.Getenv(dumpableProbe) == "1" {
		d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		fmt.Printf("dumpable=%d\n", d)
		os.Exit(0)
	}
}

// The kvm stage1's app-exec (each app's and each entered command's start in
// the guest, as the guest's root) is not dumpable from its first
// instruction, as the default stage1's joiners are: this binary, started as
// app-exec, is not dumpable before any Go code of it runs; started as
// anything else (the agent), it is.
func TestAppExecIsNotDumpableFromTheStart(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"app-exec", "web"}, "dumpable=0"},
		{[]string{"/usr/lib/skiff/app-exec", "web"}, "dumpable=0"},
		{[]string{"/usr/lib/skiff/agent"}, "dumpable=1"},
	} {
		cmd := exec.Command("/proc/self/exe")
		cmd.Args = c.argv
		cmd.Env = append(os.Environ(), dumpableProbe+"=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%q: %v", c.argv, err)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("started as %q: %s, want %s", c.argv, got, c.want)
		}
	}
}
