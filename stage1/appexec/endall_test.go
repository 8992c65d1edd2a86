package appexec

import (
	"bufio"
	"fmt"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The roles this test binary takes when the test starts it again (in a PID
// namespace of its own, as its init, and that init's children).
const endAllRole = "SKIFF_ENDALL_ROLE"

func init() {
	switch os.Getenv(endAllRole) {
	case "":
		return
	case "init":
		os.Exit(endAllInit())
	case "polite": // ends on SIGTERM, and says so
		term := make(chan os.Signal, 1)
		signal.Notify(term, unix.SIGTERM)
		fmt.Println("ready")
		<-term
		_ = os.WriteFile(filepath.Join(os.Getenv("MARKS"), "polite"), []byte("SIGTERM"), 0o644)
		os.Exit(0)
	case "stubborn": // only SIGKILL ends it
		signal.Ignore(unix.SIGTERM)
		fmt.Println("ready")
		select {}
	case "orphaner": // leaves a stubborn child to init
		c := osexec.Command("/proc/self/exe")
		c.Env = append(os.Environ(), endAllRole+"=stubborn")
		c.Stdout = os.Stdout
		if err := c.Start(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// endAllInit is the namespace's init: it starts the processes EndAll must
// end, waits until each is ready, ends them as the pod's systemd-shutdown
// does (SIGTERM with a timeout, then SIGKILL) and reports what it saw on
// stdout.
func endAllInit() int {
	r, w, err := os.Pipe()
	if err != nil {
		return 1
	}
	for _, role := range []string{"polite", "stubborn", "orphaner"} {
		c := osexec.Command("/proc/self/exe")
		c.Env = append(os.Environ(), endAllRole+"="+role)
		c.Stdout = w
		if err := c.Start(); err != nil {
			fmt.Println("start", role, err)
			return 1
		}
	}
	w.Close()
	lines := bufio.NewScanner(r)
	for range 3 { // polite, stubborn and the orphaner's stubborn child
		if !lines.Scan() {
			fmt.Println("a child never became ready")
			return 1
		}
	}
	vm := os.Getenv("VM") == "1"
	start := time.Now()
	EndAll(unix.SIGTERM, 300*time.Millisecond, vm)
	termTook := time.Since(start)
	alive := unix.Kill(-1, 0) != unix.ESRCH
	EndAll(unix.SIGKILL, 5*time.Second, vm)
	fmt.Printf("after SIGTERM: alive=%v (waited %v); after SIGKILL: alive=%v\n",
		alive, termTook.Round(100*time.Millisecond), unix.Kill(-1, 0) != unix.ESRCH)
	return 0
}

// EndAll, as a PID namespace's init, gives every process SIGTERM first (one
// that handles it ends by itself), waits its timeout for the stubborn ones
// (an orphan among them) and ends them with SIGKILL, reaping all; as the
// pod's init (kill(-1, 0) tells when none is left) and as a VM's (no child
// left tells).
func TestEndAllTermsThenKills(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("a PID namespace of its own needs root")
	}
	for _, vm := range []string{"0", "1"} {
		t.Run("vm="+vm, func(t *testing.T) { testEndAll(t, vm) })
	}
}

func testEndAll(t *testing.T, vm string) {
	marks := t.TempDir()
	c := osexec.Command("/proc/self/exe", "-test.run=^$")
	c.Env = append(os.Environ(), endAllRole+"=init", "MARKS="+marks, "VM="+vm)
	c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID, Pdeathsig: unix.SIGKILL}
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("the namespace's init: %v: %s", err, out)
	}
	want := "after SIGTERM: alive=true (waited 300ms); after SIGKILL: alive=false"
	if !strings.Contains(string(out), want) {
		t.Errorf("init reported %q; want %q", out, want)
	}
	if b, err := os.ReadFile(filepath.Join(marks, "polite")); err != nil || string(b) != "SIGTERM" {
		t.Errorf("the process that handles SIGTERM did not get it before SIGKILL: %q %v", b, err)
	}
}
