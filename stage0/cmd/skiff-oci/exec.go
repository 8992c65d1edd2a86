package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

type execFlags struct {
	process, cwd, user string
	env, caps          []string
	gids               []string
	tty, noNewPrivs    bool
	o                  execOpts
}

func newExecCmd(g *globals) *cobra.Command {
	var x execFlags
	c := &cobra.Command{
		Use:   "exec [flags] ID [COMMAND [ARG...]]",
		Short: "Run a process in a running container (exit status: the process's, unless --detach)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || (x.process == "" && len(args) < 2) {
				return fmt.Errorf("%s: expects ID and COMMAND (or --process FILE); see '%s --help'", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, l, st, err := g.openStatus(id)
			if err != nil {
				return err
			}
			if st.Status != specs.StateRunning && st.Status != specs.StateCreated {
				l.unlock()
				return fmt.Errorf("container %s: %w (%s); exec needs a running container", id, errNotRunning, st.Status)
			}
			p, err := x.processSpec(st.Bundle, args[1:])
			if err != nil {
				l.unlock()
				return err
			}
			if p.Terminal != (x.o.consoleSocket != "") {
				l.unlock()
				return fmt.Errorf("container %s: exec: a terminal (--tty or process.terminal) and --console-socket go together (skiff-oci sends the pty master there)", id)
			}
			if x.o.consoleSocket != "" {
				if x.o.consoleSocket, err = filepath.Abs(x.o.consoleSocket); err != nil {
					l.unlock()
					return err
				}
			}
			x.o.stdio = [3]*os.File{os.Stdin, os.Stdout, os.Stderr}
			proc, err := c.Exec(p, x.o)
			l.unlock()
			if err != nil {
				return fmt.Errorf("container %s: exec %s: %w", id, strings.Join(p.Args, " "), err)
			}
			if x.o.pidFile != "" {
				if _, err := os.Stat(x.o.pidFile); err != nil {
					return fmt.Errorf("container %s: exec %s: the stage1 wrote no pid file (%v); the process may not run", id, strings.Join(p.Args, " "), err)
				}
			}
			if x.o.detach {
				if proc != nil {
					proc.Release()
				}
				return nil
			}
			if proc == nil {
				return fmt.Errorf("container %s: exec %s: the stage1 gave no process to wait for", id, strings.Join(p.Args, " "))
			}
			return exitStatus(waitPid(proc.Pid))
		},
	}
	f := c.Flags()
	f.SetInterspersed(false)
	f.StringVarP(&x.process, "process", "p", "", "file with the process's spec (runtime-spec process JSON)")
	f.BoolVarP(&x.o.detach, "detach", "d", false, "return once the process runs")
	f.StringVar(&x.o.pidFile, "pid-file", "", "write the process's pid to this file")
	f.StringVar(&x.o.consoleSocket, "console-socket", "", "unix socket to send the terminal's master to (with --tty)")
	f.IntVar(&x.o.preserveFDs, "preserve-fds", 0, "pass this many descriptors from fd 3 on")
	f.BoolVarP(&x.tty, "tty", "t", false, "give the process a terminal")
	f.StringVar(&x.cwd, "cwd", "", "working directory in the container")
	f.StringArrayVarP(&x.env, "env", "e", nil, "set an environment variable (KEY=VALUE)")
	f.StringVarP(&x.user, "user", "u", "", "UID[:GID] to run as")
	f.StringArrayVarP(&x.gids, "additional-gids", "g", nil, "additional group ids")
	f.StringArrayVarP(&x.caps, "cap", "c", nil, "add a capability")
	f.BoolVar(&x.noNewPrivs, "no-new-privs", false, "set no_new_privs")
	for _, n := range []string{"process-label", "apparmor", "cgroup", "pidfd-socket"} {
		f.String(n, "", "accepted for runc's callers")
		_ = f.MarkHidden(n)
	}
	f.Bool("ignore-paused", false, "")
	_ = f.MarkHidden("ignore-paused")
	return c
}

// processSpec is --process's spec, or the container's own process (from
// its bundle) with the command line's overrides, as runc builds it.
func (x *execFlags) processSpec(bundle string, args []string) (*specs.Process, error) {
	if x.process != "" {
		b, err := os.ReadFile(x.process)
		if err != nil {
			return nil, fmt.Errorf("--process %s: %w", x.process, err)
		}
		var p specs.Process
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("--process %s: not a runtime-spec process: %v", x.process, err)
		}
		if len(p.Args) == 0 && p.CommandLine == "" {
			return nil, fmt.Errorf("--process %s: args is empty; name the program to run", x.process)
		}
		return &p, nil
	}
	p := &specs.Process{Cwd: "/"}
	if b, err := os.ReadFile(filepath.Join(bundle, "config.json")); err == nil {
		var spec specs.Spec
		if json.Unmarshal(b, &spec) == nil && spec.Process != nil {
			cp := *spec.Process
			p = &cp
			p.Terminal, p.ConsoleSize = false, nil
		}
	}
	p.Args = args
	if x.cwd != "" {
		p.Cwd = x.cwd
	}
	p.Terminal = x.tty
	for _, kv := range x.env {
		k, _, _ := strings.Cut(kv, "=")
		out := p.Env[:0:0]
		for _, e := range p.Env {
			if ek, _, _ := strings.Cut(e, "="); ek != k {
				out = append(out, e)
			}
		}
		p.Env = append(out, kv)
	}
	if x.user != "" {
		us, gs, hasG := strings.Cut(x.user, ":")
		uid, err := strconv.ParseUint(us, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: give UID[:GID] as numbers", x.user)
		}
		p.User = specs.User{UID: uint32(uid)}
		if hasG {
			gid, err := strconv.ParseUint(gs, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: give UID[:GID] as numbers", x.user)
			}
			p.User.GID = uint32(gid)
		}
	}
	for _, g := range x.gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--additional-gids %q: give a number", g)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(n))
	}
	if len(x.caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		for _, c := range x.caps {
			c = strings.ToUpper(c)
			if !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			p.Capabilities.Bounding = append(p.Capabilities.Bounding, c)
			p.Capabilities.Effective = append(p.Capabilities.Effective, c)
			p.Capabilities.Permitted = append(p.Capabilities.Permitted, c)
		}
	}
	if x.noNewPrivs {
		p.NoNewPrivileges = true
	}
	return p, nil
}
