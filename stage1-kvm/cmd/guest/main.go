// Command guest is the kvm stage1's binary inside the microVM; on the host,
// stage1-kvm is (the image carries both). The initramfs installs it at
// /usr/lib/skiff/guest, with the names that pick its command as links to it:
//
//	/init                             PID 1 of the guest (package guest), which
//	                                  mounts the pod and becomes its systemd
//	/usr/lib/systemd/systemd-shutdown the pod's end, which systemd execs as PID 1
//	/usr/lib/skiff/agent              the pod agent (the host's enter, stop, signals)
//	/usr/lib/skiff/app-exec           the apps' units' helpers (package appexec)
//	/usr/lib/skiff/app-exited
//
// It is a binary of its own so that the guest loads none of the host's code:
// the initramfs is smaller and each of its starts in the guest, a handful
// per pod, is faster under TCG (bench/README.md, kvm-boot).
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiff-project/skiff/stage1-kvm/guest"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
	"github.com/skiff-project/skiff/stage1/joiner"
)

var commands = map[string]func(args []string) error{
	"agent":    func([]string) error { return guest.RunAgent() },
	"app-exec": appexec.Main,
	"app-exited": func(args []string) error {
		if len(args) != 1 {
			return errors.New("usage: app-exited APP")
		}
		return appexec.Exited(args[0])
	},
}

func main() {
	name, args := filepath.Base(os.Args[0]), os.Args[1:]
	if os.Getpid() == 1 { // the microVM's PID 1; neither returns
		if name == "systemd-shutdown" {
			guest.Shutdown()
		}
		guest.Init()
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "skiff guest: unknown command %q (the guest's binary runs as agent, app-exec or app-exited)\n", name)
		os.Exit(abi.ExitSkiffFailure)
	}
	joiner.Ensure(name)
	if err := cmd(args); err != nil {
		code := abi.ExitSkiffFailure
		var ee *appexec.ExitError
		if errors.As(err, &ee) {
			code = ee.Code
		}
		fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
		os.Exit(code)
	}
}
