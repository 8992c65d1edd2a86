package appexec

import (
	"flag"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/units"
)

// Main is app-exec's command line: app-exec [--inherit] [--env=KEY=VALUE]...
// APP [-- CMD...], the ExecStart of an app's service (and what enter runs in
// the pod, with --inherit and the environment it adds). It returns only on
// failure.
func Main(args []string) error {
	fs := flag.NewFlagSet("app-exec", flag.ContinueOnError)
	inherit := fs.Bool("inherit", false, "keep this process's stdio instead of asking stage1 for the app's")
	var env envFlag
	fs.Var(&env, "env", "KEY=VALUE added to the app's environment (repeatable)")
	process := fs.String("process", "", "with --inherit: an OCI process (JSON) to run instead of the app's own (OCI exec)")
	nested := fs.Int("nested", 0, "internal: this process is in the app's own pid namespace, started by app-exec with the app's stdio and N descriptors (pidns.go)")
	consoleFD := fs.Int("console-fd", 0, "with --inherit: the console socket's fd; the process gets a pty whose master goes there (enter on a terminal)")
	guard := fs.Int("guard-fd", -1, "internal, with --nested: the read end of a pipe whose write end only the starting app-exec holds")
	reapFD := fs.Int("reap-fd", -1, "with --inherit: run the command under a reaper that kills all it started once this descriptor, the read end of a pipe whose write end only enter holds, ends (reaper.go)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *reapFD >= 0 {
		if !*inherit || *process != "" || *nested > 0 {
			return fmt.Errorf("app-exec: --reap-fd needs --inherit, and neither --process nor --nested")
		}
		var rest []string // the flags parsed but this one, then the rest as given
		for _, a := range args[:len(args)-fs.NArg()] {
			if n := strings.TrimLeft(a, "-"); n != "reap-fd" && !strings.HasPrefix(n, "reap-fd=") {
				rest = append(rest, a)
			}
		}
		// A terminal on stdin that app-exec does not make itself (the kvm
		// guest agent's pty, which the reaper, a session leader, must not
		// take) is the command's controlling terminal.
		ctty := *consoleFD == 0 && term.IsTerminal(0)
		return reap(append(rest, fs.Args()...), *reapFD, ctty)
	}
	if *nested > 0 {
		if err := watchParent(*guard); err != nil {
			return fail(abi.ExitSkiffFailure, "app-exec: %v", err)
		}
	}
	if *process != "" {
		if !*inherit {
			return fmt.Errorf("app-exec: --process needs --inherit")
		}
		return execProcess(fs.Arg(0), []byte(*process), *consoleFD, *nested)
	}
	if fs.NArg() < 1 {
		return fmt.Errorf("usage: app-exec [--inherit] APP [-- CMD...]")
	}
	cmd := fs.Args()[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	var inRoot func() error
	if *consoleFD > 0 {
		if !*inherit {
			return fmt.Errorf("app-exec: --console-fd needs --inherit")
		}
		inRoot = func() error { return ptyOnConsoleSocket(*consoleFD) }
	}
	return exec(fs.Arg(0), cmd, *inherit, env, inRoot, *nested)
}

type envFlag []string

func (e *envFlag) String() string { return fmt.Sprint(*e) }
func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

// Exited is the ExecStopPost of an app's service (app-exited APP): it records
// the app's exit from systemd's variables and, in a pod of several apps, ends
// the pod with `systemctl exit` once the last one is done (a single app's
// unit ends the pod itself, through SuccessAction/FailureAction).
func Exited(app string) error {
	if _, err := RecordExit(app, os.Getenv, func() abi.AppExit {
		return abi.AppExit{ExitedAt: time.Now().UTC()}
	}); err != nil {
		return err
	}
	done, code, apps, err := AllExited()
	if err != nil || !done || (apps == 1 && os.Getenv(units.EnvExitWithApp) != "1") {
		return err
	}
	return osexec.Command("/usr/bin/systemctl", "--no-block", "exit", strconv.Itoa(code)).Run()
}
