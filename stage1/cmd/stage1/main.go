// Command stage1 is the default stage1 flavor's one binary. It is installed in
// the stage1 image at /usr/lib/skiff/stage1, with the entrypoints the image
// declares (run, enter, stop, gc) and the in-pod helpers (app-exec,
// app-exited) as symlinks to it; the name it is called by picks the command.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/skiff-project/skiff/internal/idmap"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
	"github.com/skiff-project/skiff/stage1/container"
	"github.com/skiff-project/skiff/stage1/joiner"
)

// commands is the table of what this binary can be called as.
var commands = map[string]func(args []string) error{
	abi.EntrypointRun:   runMain,
	abi.EntrypointStop:  stopMain,
	abi.EntrypointGC:    gcMain,
	abi.EntrypointEnter: enterMain,
	"app-exec":          appexec.Main,
	"app-exited": func(args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("usage: app-exited APP")
		}
		return appexec.Exited(args[0])
	},
	"pod-init":              podInitMain,
	abi.EntrypointOCICreate: ociCreateMain,
	"oci-stdio":             ociStdioMain,
	"oci-join":              ociJoinMain,
	"systemd-shutdown":      podShutdownMain, // the pod's, as its PID 1 execs it (shutdown.go)
}

func main() {
	if container.IsInit() {
		if err := initDeathSignal(); err != nil { // inpod.go
			fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
			os.Exit(abi.ExitSkiffFailure)
		}
		container.Init() // libcontainer's re-exec of this binary; never returns
	}
	idmap.Hold() // the helper of idmap.UserNS; returns elsewhere
	name, args := filepath.Base(os.Args[0]), os.Args[1:]
	if name == "stage1" && len(args) > 0 { // called as "stage1 COMMAND ..."
		name, args = args[0], args[1:]
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "stage1: unknown command %q\n", name)
		os.Exit(abi.ExitSkiffFailure)
	}
	joiner.Ensure(name)
	if err := cmd(args); err != nil {
		code := abi.ExitSkiffFailure
		var ee *appexec.ExitError
		var ce codeError
		switch {
		case errors.As(err, &ee):
			code = ee.Code
		case errors.As(err, &ce):
			os.Exit(int(ce)) // the pod's own exit code, nothing to report
		}
		if name == abi.EntrypointOCICreate && writeOCIError(err) == nil {
			os.Exit(code) // the front end reports it (its stderr is the container's)
		}
		fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
		os.Exit(code)
	}
}

// codeError ends the process with a code and no message: how run reports the
// pod's exit code.
type codeError int

func (c codeError) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// writeOCIError records why oci-create failed in the pod directory (the
// working directory) for the front end: one line, bounded, never through a
// link.
func writeOCIError(err error) error {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(msg) > abi.OCIErrorMax {
		msg = msg[:abi.OCIErrorMax]
	}
	f, err := os.OpenFile(abi.OCIErrorFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(msg)
	return errors.Join(err, f.Close())
}
