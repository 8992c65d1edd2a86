package main

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestMain: this test binary run as "BIN death-signal" runs initDeathSignal
// as libcontainer's init would (argv[0] is its caller's) and prints its
// parent-death signal.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "death-signal" {
		if err := initDeathSignal(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		var sig int
		if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(sig)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The init of a pod started by stage1's run dies with it (SIGKILL when its
// parent goes); the init of an oci-create container, which outlives its
// creator, gets no parent-death signal.
func TestInitDeathSignal(t *testing.T) {
	for argv0, want := range map[string]int{"/usr/lib/skiff/run": int(unix.SIGKILL), "/usr/lib/skiff/oci-create": 0} {
		c := exec.Command(os.Args[0], "death-signal")
		c.Args[0] = argv0
		out, err := c.CombinedOutput()
		if err != nil || string(out) != fmt.Sprintln(want) {
			t.Errorf("init called as %s: %v, output %q; want the parent-death signal %d", argv0, err, out, want)
		}
	}
}
