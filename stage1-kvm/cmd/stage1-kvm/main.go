// Command stage1-kvm is the kvm stage1 flavor's host binary: the run, stop,
// gc, enter and oci-create entrypoints (installed at /usr/lib/skiff/stage1-kvm
// with the entrypoints as symlinks; the name it is called by picks the
// command). Inside the microVM, its own binary runs (../guest): /init, the
// pod agent, app-exec and app-exited.
//
// The pod runs in a QEMU microvm booted from the image's own kernel
// (an uncompressed vmlinux, PVH entry) and initramfs. The guest's
// configuration (read-only), one directory for what it reports and each
// app's rootfs (overlays run mounts on the host, in a mount namespace of its
// own so nothing outlives it) reach the guest over virtio-9p, never the pod
// directory (shares.go); inside, systemd runs one unit per app as in the default flavor
// (app-exec and app-exited are the guest's binary). Each app's stdout and
// stderr come back over virtio-serial ports into the same log tee as the
// default flavor's (stage1/stdio); enter, stop, signals and stdin go through
// the pod agent (package agent) on one more port.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/joiner"
)

var commands = map[string]func(args []string) error{
	abi.EntrypointRun:       runMain,
	abi.EntrypointStop:      stopMain,
	abi.EntrypointGC:        gcMain,
	abi.EntrypointEnter:     enterMain,
	"qemu-exec":             qemuExecMain, // run's: QEMU with fewer privileges (qemu.go)
	abi.EntrypointOCICreate: ociCreateMain,
	"oci-run":               ociRunMain, // oci-create's: the container's supervisor (oci.go)
}

func main() {
	name, args := filepath.Base(os.Args[0]), os.Args[1:]
	if name == "stage1-kvm" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "stage1-kvm: unknown command %q\n", name)
		os.Exit(abi.ExitSkiffFailure)
	}
	joiner.Ensure(name)
	if err := cmd(args); err != nil {
		var ce codeError
		if errors.As(err, &ce) {
			os.Exit(int(ce))
		}
		fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
		os.Exit(abi.ExitSkiffFailure)
	}
}

// codeError ends the process with a code and no message.
type codeError int

func (c codeError) Error() string { return fmt.Sprintf("exit status %d", int(c)) }
