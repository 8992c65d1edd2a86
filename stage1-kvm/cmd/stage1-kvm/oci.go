package main

// OCI mode (stage1 contract v2, stage1/README.md "OCI mode"): skiff-oci-kvm
// runs a bundle's container in a microVM. oci-create checks the bundle,
// writes the guest's copy of its spec and starts the supervisor (oci-run, a
// host process, oci-create's child, so the caller's subreaper once
// oci-create exits), which is the pid callers see: it waits on start.fifo,
// then boots the VM as run does, relays the caller's stdio, maps signals to
// the app through the pod agent and exits with the app's status.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/stage1-kvm/agent"
	"github.com/skiff-project/skiff/stage1-kvm/guest"
	"github.com/skiff-project/skiff/stage1-kvm/vmnet"
	"github.com/skiff-project/skiff/stage1/abi"
)

// Files of OCI mode private to this flavor, in the pod directory.
const (
	s1QEMUPid   = abi.Stage1Dir + "/qemu-pid" // QEMU's pid (pid is the supervisor's)
	s1OCICgroup = abi.OCICgroupFile           // the container's host cgroup, for gc
)

// ociOpts are oci-create's (and oci-run's) flags.
type ociOpts struct {
	consoleSocket string
	systemdCgroup bool
	debug         bool
	preserveFDs   int
	id            string
}

func parseOCI(name string, args []string) (ociOpts, error) {
	var o ociOpts
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&o.consoleSocket, "console-socket", "", "unix socket that receives the pty master")
	fs.BoolVar(&o.systemdCgroup, "systemd-cgroup", false, "cgroupsPath is slice:prefix:name")
	fs.BoolVar(&o.debug, "debug", false, "say what happens")
	fs.IntVar(&o.preserveFDs, "preserve-fds", 0, "pass fds 3 to 3+N-1 to the app")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 1 {
		return o, fmt.Errorf("usage: %s [--console-socket=PATH] [--systemd-cgroup] [--debug] [--preserve-fds=N] ID", name)
	}
	o.id = fs.Arg(0)
	return o, nil
}

// ociCreateMain: oci-create [flags] ID, in the pod directory. Its stderr is
// the container's: why it failed also goes to abi.OCIErrorFile.
func ociCreateMain(args []string) error {
	err := ociCreate(args)
	if err == nil {
		return nil
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(msg) > abi.OCIErrorMax {
		msg = msg[:abi.OCIErrorMax]
	}
	if os.WriteFile(abi.OCIErrorFile, []byte(msg), 0o644) != nil {
		return err // printed, then
	}
	return codeError(abi.ExitSkiffFailure)
}

func ociCreate(args []string) error {
	o, err := parseOCI("oci-create", args)
	if err != nil {
		return err
	}
	var spec specs.Spec
	if err := abi.ReadJSON(filepath.Join(abi.AppsDir, "app", abi.AppSpecFile), &spec); err != nil {
		return err
	}
	bundle, err := os.ReadFile(abi.OCIBundleFile)
	if err != nil {
		return err
	}
	if err := checkKVMSpec(&spec, o); err != nil {
		return err
	}
	if err := makeStage1Dirs(); err != nil {
		return err
	}
	cg := ociCgroup(&spec, o)
	if err := atomicfile.Write(s1OCICgroup, []byte(cg), 0o644); err != nil {
		return err
	}
	if err := abi.WriteJSON(filepath.Join(abi.AppsDir, "app", abi.AppSpecFile), guestSpec(spec, string(bundle))); err != nil {
		return err
	}
	if err := unix.Mkfifo(abi.OCIStartFIFO, 0o600); err != nil {
		return fmt.Errorf("make %s: %w", abi.OCIStartFIFO, err)
	}
	stdio := [3]*os.File{os.Stdin, os.Stdout, os.Stderr}
	var slave *os.File
	if spec.Process.Terminal {
		if slave, err = ptyToSocket(o.consoleSocket); err != nil {
			return err
		}
		defer slave.Close()
		stdio = [3]*os.File{slave, slave, slave}
	}
	// The handshake: the supervisor says it is ready on one pipe (r, w);
	// once the container is created, oci-create says so on the other (cr,
	// cw) and the supervisor acknowledges on the first. Until then it ends
	// when oci-create does (EOF on cr, EPIPE on w): a create killed at any
	// point leaves no supervisor behind. (Not a parent-death signal: it is
	// per thread, and clearing it from a Go goroutine may miss the thread
	// that has it, which then dies with oci-create.)
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cr, cw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer cw.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, append([]string{"oci-run"}, args...)...)
	cmd.Args[0] = "stage1-kvm"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.ExtraFiles = []*os.File{w, cr}
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: slave != nil}
	err = cmd.Start()
	w.Close()
	cr.Close()
	if err != nil {
		return fmt.Errorf("start the supervisor: %w", err)
	}
	pid := cmd.Process.Pid
	kill := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	// The supervisor is in the container's cgroup (and QEMU, its child):
	// pause freezes both, and the VM's use of the host shows under it.
	pc, err := newPodCgroupAt(cg, pid)
	if err != nil {
		kill()
		return err
	}
	_ = pc
	b := make([]byte, 1)
	if n, _ := r.Read(b); n != 1 {
		kill()
		return errors.New("the supervisor failed before it was ready (its message is on the container's stderr)")
	}
	if err := atomicfile.Write(abi.PIDFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		kill()
		return err
	}
	if err := os.WriteFile(abi.OCICreatedFile, nil, 0o644); err != nil {
		kill()
		return err
	}
	if _, err := cw.Write([]byte{1}); err != nil {
		kill()
		return fmt.Errorf("the supervisor is gone: %w", err)
	}
	if n, _ := r.Read(b); n != 1 {
		kill()
		return errors.New("the supervisor failed after create (its message is on the container's stderr)")
	}
	return nil
}

// checkKVMSpec refuses what a VM cannot honour, with one line each.
func checkKVMSpec(spec *specs.Spec, o ociOpts) error {
	if o.preserveFDs > 0 {
		return errors.New("--preserve-fds: the kvm stage1 cannot pass host descriptors into its VM; run without them (or with skiff-oci's default stage1)")
	}
	if spec.Process.Terminal && o.consoleSocket == "" {
		return errors.New("process.terminal is set but no --console-socket was given; pass one (runc's rule)")
	}
	if spec.Hooks != nil && (len(spec.Hooks.CreateRuntime) > 0 || len(spec.Hooks.CreateContainer) > 0 || len(spec.Hooks.StartContainer) > 0) {
		return errors.New("hooks createRuntime, createContainer and startContainer would run in the VM's namespaces, which the kvm stage1 does not have on the host; remove them")
	}
	hasNet, hasPID := false, false
	for _, ns := range spec.Linux.Namespaces {
		hasPID = hasPID || ns.Type == specs.PIDNamespace
		if ns.Type == specs.NetworkNamespace && ns.Path != "" {
			if err := checkNetNS(ns.Path); err != nil {
				return err
			}
		} else if ns.Path != "" {
			return fmt.Errorf("linux.namespaces: the %s namespace at %s is a host namespace, which a VM cannot join; let the container have its own (podman: no --pod, --ipc/--uts/--pid private)", ns.Type, ns.Path)
		}
		if ns.Type == specs.UserNamespace {
			return errors.New("linux.namespaces: a user namespace is not supported by the kvm stage1 (the VM is the isolation boundary); remove it (podman: no --userns)")
		}
		hasNet = hasNet || ns.Type == specs.NetworkNamespace
	}
	if !hasPID {
		return errors.New("linux.namespaces has no pid namespace (the host's, as for hostPID or --pid=host): the VM's guest has its own kernel and pid namespace, so the host's cannot be given; add {\"type\": \"pid\"} to linux.namespaces, or run the container with the default stage1")
	}
	if !hasNet {
		return errors.New("linux.namespaces has no network namespace: a VM cannot share the host's network; give the container its own (podman: the default network or --network=none)")
	}
	for _, d := range spec.Linux.Devices {
		if err := guest.CheckDevice(d); err != nil {
			return err
		}
	}
	for k, val := range spec.Linux.Sysctl {
		if err := guest.CheckSysctl(k, val); err != nil {
			return err
		}
	}
	return nil
}

// checkNetNS checks the network namespace a bundle joins by path (podman's
// default network: netavark or CNI configured it): the VM gets its
// interfaces (vmnet, at start), so it must be a network namespace, and not
// the host's (whose interfaces the redirect would take from the host).
func checkNetNS(p string) error {
	var st, host unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return fmt.Errorf("linux.namespaces: the network namespace at %s: %w", p, err)
	}
	if err := unix.Stat("/proc/self/ns/net", &host); err != nil {
		return fmt.Errorf("the runtime's own network namespace: %w", err)
	}
	if st.Dev == host.Dev && st.Ino == host.Ino {
		return fmt.Errorf("linux.namespaces: the network namespace at %s is the host's, which a VM cannot join (its interfaces would be taken from the host); give the container a namespace of its own (podman: the default network or --network=none, not --network=host)", p)
	}
	if err := vmnet.IsNetNS(p); err != nil {
		return fmt.Errorf("linux.namespaces: %w", err)
	}
	return nil
}

// ociNetNS is the network namespace the bundle joins by path, or "".
func ociNetNS(spec *specs.Spec) string {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// ociCgroup is the container's host cgroup (cgroupfs): cgroupsPath when it
// is a path, else /skiff-oci/ID (also with --systemd-cgroup: there is no
// systemd on the host to ask for slice:prefix:name here).
func ociCgroup(spec *specs.Spec, o ociOpts) string {
	if p := spec.Linux.CgroupsPath; p != "" && !o.systemdCgroup && strings.HasPrefix(p, "/") {
		return path.Clean(p)
	}
	return "/skiff-oci/" + o.id
}

// guestSpec is the bundle's spec as the guest's app-exec and podfs take it:
// the mounts every guest app gets anyway (/proc, /sys, /dev and its
// filesystems, cgroups, mqueue) left out, bind sources made absolute (the
// bundle's relative ones), and no terminal (the host side gives the guest a
// pty when the container has one).
func guestSpec(spec specs.Spec, bundle string) specs.Spec {
	var ms []specs.Mount
	for _, m := range spec.Mounts {
		bind := m.Type == "bind"
		for _, opt := range m.Options {
			bind = bind || opt == "bind" || opt == "rbind"
		}
		d := path.Clean(m.Destination)
		if d == "/proc" || d == "/sys" || d == "/dev" || strings.HasPrefix(d, "/proc/") || strings.HasPrefix(d, "/sys/") || strings.HasPrefix(d, "/dev/") {
			continue
		}
		switch {
		case bind:
			m.Type = "bind"
			if !filepath.IsAbs(m.Source) {
				m.Source = filepath.Join(bundle, m.Source)
			}
			var opts []string
			for _, opt := range m.Options {
				if !strings.Contains(opt, "=") {
					opts = append(opts, opt)
				}
			}
			m.Options = opts
		case m.Type == "tmpfs":
		default:
			continue
		}
		ms = append(ms, m)
	}
	spec.Mounts = ms
	p := *spec.Process
	p.Terminal = false
	p.ConsoleSize = nil
	spec.Process = &p
	return spec
}

// ptyToSocket makes a pty on the host, sends its master over the console
// socket (SCM_RIGHTS, as runc does) and returns its slave.
func ptyToSocket(sock string) (*os.File, error) {
	master, slave, err := agent.OpenPty(agent.Winsize{})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	defer master.Close()
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		slave.Close()
		return nil, err
	}
	defer unix.Close(c)
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: sock}); err != nil {
		slave.Close()
		return nil, fmt.Errorf("console socket %s: %w", sock, err)
	}
	if err := unix.Sendmsg(c, []byte("/dev/ptmx"), unix.UnixRights(int(master.Fd())), nil, 0); err != nil {
		slave.Close()
		return nil, fmt.Errorf("console socket %s: send the pty master: %w", sock, err)
	}
	return slave, nil
}

// ociRunMain: oci-run [flags] ID, oci-create's child and the container's
// pid: says it is ready on fd 3, waits for start (start.fifo), then runs the
// VM as run does and exits with the app's status.
func ociRunMain(args []string) error {
	o, err := parseOCI("oci-run", args)
	if err != nil {
		return err
	}
	ready, created := os.NewFile(3, "ready"), os.NewFile(4, "created")
	var spec specs.Spec
	if err := abi.ReadJSON(filepath.Join(abi.AppsDir, "app", abi.AppSpecFile), &spec); err != nil {
		return err
	}
	cg, err := os.ReadFile(s1OCICgroup)
	if err != nil {
		return err
	}
	var m abi.PodManifest
	if err := abi.ReadJSON(abi.PodManifestFile, &m); err != nil {
		return fmt.Errorf("container %s: %w", o.id, err)
	}
	ro := runOpts{UUID: o.id, Start: time.Now()}
	ro.Debug, ro.Hostname, ro.Interactive = o.debug, spec.Hostname, true
	if ro.PodDir, err = os.Getwd(); err != nil {
		return err
	}
	ro.Net = "none" // no CNI of ours: the bundle's namespace, as its caller made it (setupNet)
	fifo := abi.OCIStartFIFO
	if _, err := ready.Write([]byte{1}); err != nil {
		return err
	}
	// oci-create has made the container (or ended without: EOF).
	b := make([]byte, 1)
	if n, _ := created.Read(b); n != 1 {
		return fmt.Errorf("container %s: oci-create ended before the container was created", o.id)
	}
	created.Close()
	if _, err := ready.Write([]byte{1}); err != nil {
		return err
	}
	ready.Close()
	// Opening for writing blocks until start opens it for reading.
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("container %s: wait for start: %w", o.id, err)
	}
	_, err = f.Write([]byte{0})
	f.Close()
	if err != nil {
		return fmt.Errorf("container %s: wait for start: %w", o.id, err)
	}
	v := &vm{o: ro, m: &m, specs: map[string]*specs.Spec{}, ociCgroup: string(cg), ociNetNS: ociNetNS(&spec)}
	v.cfg.PodDir, v.cfg.Hostname, v.cfg.Debug = ro.PodDir, ro.Hostname, ro.Debug
	v.cfg.Sysctl = spec.Linux.Sysctl
	return v.runPod()
}

// ociSetupNet gives the guest the interfaces of the network namespace the
// bundle joins (podman's default network: a veth with its address and
// routes, which netavark or CNI put there before create), as run does with
// the interfaces of its own CNI: each wired to a tap by tc redirect, the
// guest's NIC taking its MAC, addresses and routes (package vmnet). The
// caller's port forwarding, masquerading and DNS (the bundle's resolv.conf
// and hosts, shared as its other bind mounts) then reach the app in the
// guest unchanged. Without a path, the namespace is the container's own and
// empty: the guest has only its loopback.
func (v *vm) ociSetupNet() error {
	if v.ociNetNS == "" {
		return nil
	}
	names, err := vmnet.Interfaces(v.ociNetNS)
	if err != nil {
		return fmt.Errorf("the bundle's network: %w", err)
	}
	if v.links, err = vmnet.Attach(v.ociNetNS, names); err != nil {
		return fmt.Errorf("the bundle's network: %w", err)
	}
	v.cfg.Net = vmnet.Ifaces(v.links)
	return nil
}

// ociTeardownNet gives the bundle's namespace back as it was (its caller
// tears it down, or another container joins it): the redirects and taps go.
func (v *vm) ociTeardownNet() {
	if err := vmnet.Detach(v.ociNetNS, v.links); err != nil {
		v.o.Debugf("the bundle's network: %v", err)
	}
}

// ociSignal maps a signal to the supervisor (the container's pid) in OCI
// mode: once the agent is up, it goes to the app's main process (SIGTERM is
// the app's clean stop, as with runc; the VM powers off when the app ends);
// before, the app has not run yet, and a stop kills the VM. SIGKILL needs
// no mapping: the supervisor dies and QEMU with it (parent-death signal).
func (v *vm) ociSignal(ctx context.Context, sig unix.Signal, up bool, qemu *exec.Cmd) {
	if sig == unix.SIGWINCH {
		return // the terminal's size follows the pty (agent.Terminal)
	}
	if !up {
		if sig == unix.SIGTERM || sig == unix.SIGINT || sig == unix.SIGQUIT {
			_ = os.WriteFile(s1Stop, nil, 0o644)
			_ = qemu.Process.Kill()
		}
		return
	}
	b := v.broker
	go func() {
		if err := b.Client().Signal(ctx, v.m.Apps[0].Name, sig); err != nil {
			v.o.Debugf("signal %v: %v", sig, err)
			if sig == unix.SIGTERM || sig == unix.SIGINT {
				_ = os.WriteFile(s1Stop, nil, 0o644)
				_ = b.Client().Stop(ctx, agent.StopRequest{})
			}
		}
	}()
}

// ociExec is enter's OCI mode (skiff-oci exec, the v2 flags): the process
// spec runs through the pod agent (app-exec --process in the guest). The
// process the caller sees (--pid-file) is a host process, enter's child
// (the caller's subreaper's once enter exits, with --detach): it relays the
// stdio (a host pty sent over --console-socket when process.terminal) and
// exits with the process's status.
type ociExec struct {
	process, pidFile, consoleSocket string
	detach, child                   bool
}

// maxProcessSpec bounds an exec's process spec.
const maxProcessSpec = 1 << 20

func (x ociExec) run(args []string, req agent.ExecRequest) error {
	var raw []byte
	var err error
	if x.child {
		raw, err = io.ReadAll(io.LimitReader(os.NewFile(3, "process"), maxProcessSpec+1))
	} else {
		var f *os.File
		if f, err = os.Open(x.process); err == nil {
			raw, err = io.ReadAll(io.LimitReader(f, maxProcessSpec+1))
			f.Close()
		}
	}
	if err == nil && len(raw) > maxProcessSpec {
		err = fmt.Errorf("more than %d bytes", maxProcessSpec)
	}
	if err != nil {
		return fmt.Errorf("exec: --process: %w", err)
	}
	var p specs.Process
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("exec: --process: %w", err)
	}
	if len(p.Args) == 0 {
		return errors.New("exec: the process has no args; name the command")
	}
	if x.child {
		req.Args, req.Process = p.Args, raw
		return enterExec(req)
	}
	stdio := [3]*os.File{os.Stdin, os.Stdout, os.Stderr}
	var slave *os.File
	if p.Terminal {
		if x.consoleSocket == "" {
			return errors.New("exec: process.terminal is set but no --console-socket was given; pass one")
		}
		if slave, err = ptyToSocket(x.consoleSocket); err != nil {
			return fmt.Errorf("exec: %w", err)
		}
		defer slave.Close()
		stdio = [3]*os.File{slave, slave, slave}
	}
	p.Terminal, p.ConsoleSize = false, nil // the guest's pty follows the host's
	if raw, err = json.Marshal(p); err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "enter", "--oci-exec-child", "--app="+req.App)
	cmd.Args[0] = "stage1-kvm"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.ExtraFiles = []*os.File{r}
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: slave != nil}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return fmt.Errorf("exec: %w", err)
	}
	_, err = w.Write(raw)
	w.Close()
	if err == nil && x.pidFile != "" {
		tmp := x.pidFile + ".tmp"
		if err = os.WriteFile(tmp, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err == nil {
			err = os.Rename(tmp, x.pidFile)
		}
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("exec: %w", err)
	}
	if x.detach {
		return nil
	}
	_ = cmd.Wait()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return codeError(128 + int(ws.Signal()))
	}
	return codeError(ws.ExitStatus())
}

// relay makes a pipe whose reader copies to out (the caller's stdout or
// stderr, unaltered, no log) and returns its write end, for QEMU, and a
// channel closed once everything is copied.
func relay(out *os.File) (*os.File, <-chan struct{}, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Close()
		_, _ = io.Copy(out, r)
	}()
	return w, done, nil
}
