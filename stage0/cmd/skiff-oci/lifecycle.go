package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// runc's messages that callers match as substrings.
var (
	errNotRunning     = errors.New("container not running")
	errAlreadyRunning = errors.New("cannot start an already running container")
	errHasStopped     = errors.New("cannot start a container that has stopped")
)

// open finds an existing container and takes its lock; it creates no lock
// file for an ID that does not exist.
func (g *globals) open(id string) (container, *flock, error) {
	if err := g.check(); err != nil {
		return nil, nil, err
	}
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	if _, err := g.be.Open(g.root, id); err != nil {
		return nil, nil, g.notExist(id, err)
	}
	l, err := lockContainer(g.root, id)
	if err != nil {
		return nil, nil, err
	}
	c, err := g.be.Open(g.root, id) // again, under the lock: it may be gone
	if err != nil {
		l.unlock()
		return nil, nil, g.notExist(id, err)
	}
	return c, l, nil
}

// openStatus is open followed by status: the container, its lock (held) and
// its runtime-spec status; on an error nothing stays locked.
func (g *globals) openStatus(id string) (container, *flock, *specs.State, error) {
	c, l, err := g.open(id)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := status(c)
	if err != nil {
		l.unlock()
		return nil, nil, nil, wrapC(id, err)
	}
	return c, l, st, nil
}

// removeHalfMade removes a container directory without a pod manifest (so
// no stage1 gc can run for it): what a create killed while writing its first
// files leaves, or a delete killed while removing the directory (after gc).
// It refuses while an init pid it names lives or anything is mounted below.
func (g *globals) removeHalfMade(id string) bool {
	if checkID(id) != nil {
		return false
	}
	dir, err := filepath.Abs(filepath.Join(g.root, id))
	if err != nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(dir, abi.PodManifestFile)); err == nil {
		return false
	}
	if raw, err := os.ReadFile(filepath.Join(dir, abi.PIDFile)); err == nil {
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || unix.Kill(pid, 0) == nil {
			return false // its init may live: only the stage1's gc may undo it
		}
	}
	if mounted(dir) {
		return false
	}
	l, err := lockContainer(g.root, id)
	if err != nil {
		return false
	}
	rl, err := lockRoot(g.root, true)
	if err != nil {
		l.unlock()
		return false
	}
	defer rl.unlock()
	if os.RemoveAll(dir) != nil {
		l.unlock()
		return false
	}
	os.Remove(g.hooksFile(id))
	l.removeLocked()
	return true
}

// mounted tells whether anything is mounted at or below dir.
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			return true
		}
	}
	return false
}

// wrapC names the container in err unless err already does.
func wrapC(id string, err error) error {
	if strings.Contains(err.Error(), "container "+id) {
		return err
	}
	return fmt.Errorf("container %s: %w", id, err)
}

func (g *globals) notExist(id string, err error) error {
	if errors.Is(err, errNotExist) {
		return fmt.Errorf("container %s %w under %s; see 'skiff-oci --root %s list'", id, errNotExist, g.root, g.root)
	}
	return wrapC(id, err)
}

// status is the container's runtime-spec status, with "paused" when its
// cgroup is frozen.
func status(c container) (*specs.State, error) {
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	if st.Status == specs.StateRunning && st.Pid > 0 && frozen(c) {
		st.Status = statePaused
	}
	return st, nil
}

func newCreateCmd(g *globals) *cobra.Command {
	var o createOpts
	var bundle string
	c := &cobra.Command{
		Use:   "create [flags] ID",
		Short: "Create a container from a bundle; its init waits for 'start'",
		Args:  exactArgs(1, "the container's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, pid, err := g.create(args[0], bundle, o)
			if err != nil {
				return err
			}
			g.debugf("container %s created, init pid %d", args[0], pid)
			return nil
		},
	}
	addCreateFlags(c, &o, &bundle)
	return c
}

func addCreateFlags(c *cobra.Command, o *createOpts, bundle *string) {
	f := c.Flags()
	f.StringVarP(bundle, "bundle", "b", "", "the bundle directory (config.json and the rootfs); default: the working directory")
	f.StringVar(&o.pidFile, "pid-file", "", "write the container init's pid to this file")
	f.StringVar(&o.consoleSocket, "console-socket", "", "unix socket to send the terminal's master to (process.terminal)")
	f.IntVar(&o.preserveFDs, "preserve-fds", 0, "pass this many descriptors from fd 3 on to the app")
	f.BoolVar(&o.noPivot, "no-pivot", false, "accepted for runc's callers (skiff's stage1 always pivots)")
	f.BoolVar(&o.noNewKeyring, "no-new-keyring", false, "accepted for runc's callers")
}

// create prepares ID from the bundle and starts its init, which waits for
// start. On any failure it leaves nothing behind.
func (g *globals) create(id, bundle string, o createOpts) (container, int, error) {
	if err := g.check(); err != nil {
		return nil, 0, err
	}
	if err := checkID(id); err != nil {
		return nil, 0, err
	}
	if bundle == "" {
		bundle = "."
	}
	abs, err := filepath.Abs(bundle)
	if err != nil {
		return nil, 0, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	spec, err := checkBundle(abs)
	if err != nil {
		return nil, 0, err
	}
	if o.consoleSocket != "" {
		if o.consoleSocket, err = filepath.Abs(o.consoleSocket); err != nil {
			return nil, 0, err
		}
	}
	if spec.Process.Terminal && o.consoleSocket == "" {
		return nil, 0, fmt.Errorf("bundle %s: process.terminal is true but no --console-socket was given; pass one (skiff-oci sends the pty master there) or set terminal to false", abs)
	}
	if !spec.Process.Terminal && o.consoleSocket != "" {
		return nil, 0, fmt.Errorf("--console-socket %s: the bundle's process.terminal is false; drop --console-socket or set terminal to true", o.consoleSocket)
	}
	if o.preserveFDs < 0 {
		return nil, 0, fmt.Errorf("--preserve-fds %d: must not be negative", o.preserveFDs)
	}
	if _, err := g.be.Open(g.root, id); err == nil {
		return nil, 0, fmt.Errorf("%w: %s (under %s); delete it first or use another id", errExists, id, g.root)
	}
	l, err := lockContainer(g.root, id)
	if err != nil {
		return nil, 0, err
	}
	defer l.unlock()
	rl, err := lockRoot(g.root, true)
	if err != nil {
		return nil, 0, err
	}
	c, err := g.be.Prepare(g.root, id, abs, g.opts())
	rl.unlock()
	if err != nil {
		if errors.Is(err, errExists) {
			return nil, 0, fmt.Errorf("%w: %s (under %s); delete it first or use another id", errExists, id, g.root)
		}
		l.removeLocked()
		return nil, 0, wrapC(id, err)
	}
	o.stdio = [3]*os.File{os.Stdin, os.Stdout, os.Stderr}
	err = g.saveHooks(id, spec.Hooks)
	var pid int
	if err == nil {
		pid, err = c.Create(o)
	}
	if err == nil {
		h := g.hooksOf(id)
		var st *specs.State
		if st, err = c.State(); err == nil { // status created, as runtime-tools expects
			if err = runHooks("prestart", h.Prestart, st); err == nil { //nolint:staticcheck // runc runs them still
				err = runHooks("createRuntime", h.CreateRuntime, st)
			}
		}
	}
	if err != nil {
		if derr := c.Delete(true); derr == nil {
			os.Remove(g.hooksFile(id))
			l.removeLocked()
		}
		return nil, 0, wrapC(id, err)
	}
	return c, pid, nil
}

// checkBundle gives the bundle's common mistakes a clear error before
// anything is created (the backend validates the rest).
func checkBundle(dir string) (*specs.Spec, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w; give the bundle directory with --bundle", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s: not a directory; give the bundle directory with --bundle", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %w; write one with 'runc spec' or 'umoci unpack'", dir, errors.Unwrap(err))
	}
	var spec specs.Spec
	if err := jsonStrict(b, &spec); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json is not a valid runtime spec: %v", dir, err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("bundle %s: config.json has no process; 'create' needs one", dir)
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("bundle %s: config.json has no root.path; name the rootfs directory", dir)
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(dir, rootfs)
	}
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s: root.path %s is not a directory; unpack the rootfs there", dir, rootfs)
	}
	return &spec, nil
}

func newStartCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "start ID",
		Short: "Start the app of a created container",
		Args:  exactArgs(1, "the container's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, l, err := g.open(args[0])
			if err != nil {
				return err
			}
			defer l.unlock()
			return g.start(args[0], c)
		},
	}
}

func (g *globals) start(id string, c container) error {
	st, err := status(c)
	if err != nil {
		return wrapC(id, err)
	}
	switch st.Status {
	case specs.StateCreated:
	case specs.StateStopped:
		return fmt.Errorf("container %s: %w; delete it and create it again", id, errHasStopped)
	case specs.StateCreating:
		return fmt.Errorf("container %s: is still being created; wait for 'create' to return", id)
	default:
		return fmt.Errorf("container %s: %w (%s)", id, errAlreadyRunning, st.Status)
	}
	if err := c.Start(); err != nil {
		return wrapC(id, err)
	}
	if h := g.hooksOf(id); len(h.Poststart) > 0 {
		if st, err := c.State(); err == nil {
			g.warnHooks("poststart", h.Poststart, st)
		}
	}
	return nil
}

func newRunCmd(g *globals) *cobra.Command {
	var o createOpts
	var bundle string
	var detach, keep bool
	c := &cobra.Command{
		Use:   "run [flags] ID",
		Short: "Create and start a container, wait for it and delete it (exit status: the app's)",
		Args:  exactArgs(1, "the container's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			sigs := make(chan os.Signal, 8)
			signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
			defer signal.Stop(sigs)
			// The init, the stage1's oci-create's child, becomes ours when
			// oci-create exits, as runc's init is runc run's child: its
			// status is the exit code when the stage1 records none (an
			// app-as-init container's app is the init).
			if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
				return fmt.Errorf("container %s: become a subreaper: %w", id, err)
			}
			c, pid, err := g.create(id, bundle, o)
			if err != nil {
				return err
			}
			l, err := lockContainer(g.root, id)
			if err != nil {
				return err
			}
			err = g.start(id, c)
			l.unlock()
			if err != nil {
				c.Delete(true)
				return err
			}
			if detach {
				return nil
			}
			go func() {
				for s := range sigs {
					c.Signal(int(s.(unix.Signal)), false)
				}
			}()
			code := waitPid(pid)
			if x, ok := c.ExitCode(); ok {
				code = x
			}
			if !keep {
				if l, err := lockContainer(g.root, id); err == nil {
					if err := c.Delete(true); err == nil {
						l.removeLocked()
					} else {
						l.unlock()
						return fmt.Errorf("container %s exited with %d, delete failed: %w", id, code, err)
					}
				}
			}
			return exitStatus(code)
		},
	}
	addCreateFlags(c, &o, &bundle)
	c.Flags().BoolVarP(&detach, "detach", "d", false, "return once the app has started")
	c.Flags().BoolVar(&keep, "keep", false, "do not delete the container when it exits")
	return c
}

// waitPid waits for a child (or, if it is not ours, for it to go away) and
// returns its exit status (128+N for a signal).
func waitPid(pid int) int {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Not our child: wait for it through a pidfd.
			fd, perr := unix.PidfdOpen(pid, 0)
			if perr != nil {
				return 255
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(fds, -1); err != unix.EINTR {
					break
				}
			}
			unix.Close(fd)
			return 255
		}
		break
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func newStateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "state ID",
		Short: "Print a container's state (runtime-spec JSON)",
		Args:  exactArgs(1, "the container's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.check(); err != nil {
				return err
			}
			if err := checkID(args[0]); err != nil {
				return err
			}
			c, err := g.be.Open(g.root, args[0])
			if err != nil {
				return g.notExist(args[0], err)
			}
			st, err := status(c)
			if err != nil {
				return wrapC(args[0], err)
			}
			return writeJSONIndent(cmd.OutOrStdout(), g.stateOut(st))
		},
	}
}

func newKillCmd(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "kill [--all] ID [SIGNAL]",
		Short: "Send a signal (default SIGTERM: a clean stop) to a container's init",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("%s: expects ID [SIGNAL], got %d argument(s); see '%s --help'", cmd.CommandPath(), len(args), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			sig := int(unix.SIGTERM)
			if len(args) == 2 {
				s, err := parseSignal(args[1])
				if err != nil {
					return err
				}
				sig = s
			}
			c, l, st, err := g.openStatus(args[0])
			if err != nil {
				return err
			}
			defer l.unlock()
			if st.Status == specs.StateCreating || st.Status == specs.StateStopped && !all {
				return fmt.Errorf("container %s: %w", args[0], errNotRunning)
			}
			// runc: --all of a stopped container signals what is left in
			// its cgroup (only an app that was the init leaves anything:
			// the container's pid namespace otherwise ended with it).
			// A paused container's processes take SIGKILL once thawed:
			// thaw them, as runc does, or the container would not die.
			var frozenPaths map[string]string
			if st.Status == statePaused && sig == int(unix.SIGKILL) {
				frozenPaths, _ = cgroupPaths(c)
			}
			err = c.Signal(sig, all)
			if frozenPaths != nil {
				if terr := freezePaths(frozenPaths, false); terr != nil && err == nil {
					err = fmt.Errorf("killed, but could not thaw it: %w; run 'skiff-oci resume %s'", terr, args[0])
				}
			}
			if err != nil {
				if errors.Is(err, unix.ESRCH) {
					return fmt.Errorf("container %s: %w: no such process", args[0], errNotRunning)
				}
				return wrapC(args[0], err)
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&all, "all", "a", false, "send the signal to every process of the container")
	return c
}

// parseSignal reads a signal as a number or a name, with or without SIG.
func parseSignal(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %s: out of range; use 1 to 64 or a name such as SIGTERM", s)
		}
		return n, nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if strings.HasPrefix(name, "SIGRTMIN") || strings.HasPrefix(name, "SIGRTMAX") {
		base, rest := 34, name[len("SIGRTMIN"):]
		if strings.HasPrefix(name, "SIGRTMAX") {
			base = 64
		}
		off := 0
		if rest != "" {
			n, err := strconv.Atoi(rest)
			if err != nil {
				return 0, fmt.Errorf("unknown signal %q; use a number or a name such as SIGTERM", s)
			}
			off = n
		}
		if n := base + off; n >= 34 && n <= 64 {
			return n, nil
		}
		return 0, fmt.Errorf("signal %s: out of range", s)
	}
	if n := unix.SignalNum(name); n != 0 {
		return int(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q; use a number or a name such as SIGTERM", s)
}

func newDeleteCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "delete [--force] ID",
		Short: "Delete a stopped (or, with --force, any) container and everything it left",
		Args:  exactArgs(1, "the container's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if checkID(id) == nil {
				if dir, err := filepath.Abs(filepath.Join(g.root, id)); err == nil {
					settleCreate(dir)
				}
			}
			c, l, err := g.open(id)
			if err != nil {
				if force && errors.Is(err, errNotExist) {
					return nil // runc: delete --force of an unknown id succeeds
				}
				if force && g.removeHalfMade(id) {
					return nil
				}
				return err
			}
			defer l.unlock()
			st, err := status(c)
			if err != nil && !force {
				return fmt.Errorf("container %s: %w; use --force", id, err)
			}
			if err == nil && !force {
				switch st.Status {
				case specs.StateStopped:
				default: // runtime-spec: even a created container (runc deletes that one)
					return fmt.Errorf("cannot delete container %s that is not stopped: %s; stop it with 'skiff-oci kill %s' or use --force", id, st.Status, id)
				}
			}
			if err == nil && st.Status == statePaused {
				thaw(c) // a frozen init cannot be stopped
			}
			rl, err := lockRoot(g.root, true)
			if err != nil {
				return err
			}
			defer rl.unlock()
			h := g.hooksOf(id)
			final, serr := c.State()
			if err := c.Delete(true); err != nil {
				return wrapC(id, err)
			}
			if serr == nil && len(h.Poststop) > 0 {
				final.Status, final.Pid = specs.StateStopped, 0
				g.warnHooks("poststop", h.Poststop, final)
			}
			os.Remove(g.hooksFile(id))
			l.removeLocked()
			return nil
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "kill the container first if it runs")
	return c
}
