package main

import (
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestMain: this test binary run as "BIN pod-init CMD..." is pod-init (the
// package's init saw that argv), after a workload that moves an unlocked
// goroutine to other threads; run as "BIN pdeathsig" it prints its
// parent-death signal.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "pod-init":
			podInitAfterThreadChurn(os.Args[2:])
		case "pdeathsig":
			var sig int
			if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0); err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			fmt.Println(sig)
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

func podInitAfterThreadChurn(args []string) {
	var stop atomic.Bool
	for i := 0; i < 4; i++ { // keep every P busy: a goroutine back from a syscall finds none free
		go func() {
			for !stop.Load() {
			}
		}()
	}
	for i := 0; i < 200; i++ {
		_ = unix.Nanosleep(&unix.Timespec{Nsec: 200_000}, nil)
		if unix.Gettid() != unix.Getpid() {
			fmt.Printf("pod-init's main goroutine moved to thread %d of %d\n", unix.Gettid(), unix.Getpid())
			os.Exit(3)
		}
	}
	stop.Store(true)
	if err := podInitMain(args); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

// pod-init execs the pod's systemd from the main thread, with the
// parent-death signal it set on that thread: an exec from another thread
// would leave the group's leader a zombie until the kernel has moved its
// pid (ocipod's state and kill read that as ended), and the new leader
// without the signal (prctl sets it on the calling thread only).
func TestPodInitExecsFromTheMainThread(t *testing.T) {
	out, err := exec.Command(os.Args[0], "pod-init", os.Args[0], "pdeathsig").CombinedOutput()
	if err != nil || string(out) != fmt.Sprintln(int(unix.SIGKILL)) {
		t.Errorf("pod-init: %v, output %q; want the parent-death signal %d from its exec'd command", err, out, unix.SIGKILL)
	}
}
