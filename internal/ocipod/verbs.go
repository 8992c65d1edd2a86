package ocipod

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

// initStartFile, private to this package, holds the init's start time (field
// 22 of /proc/PID/stat) so that a recycled pid is not taken for the init.
const initStartFile = "init-start"

// sigHalt is SIGRTMIN+3 as the container's systemd (glibc) numbers it: halt.
const sigHalt = unix.Signal(34 + 3)

// lock takes the container's flock (exclusive) until the returned func runs.
func (p *Pod) lock() (func(), error) {
	f, err := os.Open(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", p.ID, ErrNotExist)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("container %s: lock: %w", p.ID, err)
	}
	return func() { f.Close() }, nil
}

// entrypoint is the command for a stage1 entrypoint: the host path in the
// stage1's layers, argv[0] the declared path (one multi-call binary).
func (p *Pod) entrypoint(name string, args ...string) (*exec.Cmd, error) {
	path, err := stage1img.Entrypoint(p.Manifest.Stage1, name)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", p.ID, err)
	}
	cmd := &exec.Cmd{Path: path, Args: append([]string{p.Manifest.Stage1.Entrypoints[name]}, args...), Dir: p.Dir}
	return cmd, nil
}

func stdio(given [3]*os.File) [3]*os.File {
	for i, def := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if given[i] == nil {
			given[i] = def
		}
	}
	return given
}

func (p *Pod) create(o CreateOpts) (int, error) {
	unlock, err := p.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(p.Dir, abi.PIDFile)); err == nil {
		return 0, fmt.Errorf("container %s: %w", p.ID, ErrExist)
	}
	var args []string
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket="+o.ConsoleSocket)
	}
	if o.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	if o.Debug {
		args = append(args, "--debug")
	}
	// Socket activation passes through, as with runc: LISTEN_FDS
	// descriptors (fd 3 on, when LISTEN_PID is ours) come before the
	// preserved ones, and the app gets LISTEN_FDS.
	nfds, listen := o.PreserveFDs, 0
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		listen, _ = strconv.Atoi(os.Getenv("LISTEN_FDS"))
		nfds += max(listen, 0)
	}
	if nfds > 0 {
		args = append(args, "--preserve-fds="+strconv.Itoa(nfds))
	}
	cmd, err := p.entrypoint(abi.EntrypointOCICreate, append(args, p.ID)...)
	if err != nil {
		return 0, err
	}
	s := stdio(o.Stdio)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s[0], s[1], s[2]
	for i := 0; i < nfds; i++ {
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(3+i), "preserved"))
	}
	cmd.Env = nil
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LISTEN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if listen > 0 {
		cmd.Env = append(cmd.Env, abi.EnvOCIListenFDs+"="+strconv.Itoa(listen))
	}
	if o.Debug {
		cmd.Env = append(cmd.Env, abi.EnvDebug+"=1")
	}
	_ = os.Remove(filepath.Join(p.Dir, abi.OCIErrorFile))
	if !o.SystemdCgroup && (p.Spec.Linux == nil || p.Spec.Linux.CgroupsPath == "") {
		// The stage1 makes /skiff-oci/ID: the last delete removes the
		// parent, not while this create makes its cgroups.
		if err := os.WriteFile(filepath.Join(p.Dir, defaultCgroupFile), nil, 0o644); err != nil {
			return 0, err
		}
		release, err := flockFile(cgroupParentLock, unix.LOCK_SH)
		if err != nil {
			return 0, fmt.Errorf("container %s: %s: %w", p.ID, cgroupParentLock, err)
		}
		defer release()
	}
	if err := cmd.Run(); err != nil {
		if msg := p.stage1Error(); msg != "" {
			return 0, fmt.Errorf("container %s: create: %s (stage1 oci-create: %v); then delete the container", p.ID, msg, err)
		}
		return 0, fmt.Errorf("container %s: create: stage1 oci-create failed (%v); see its message above, then delete the container", p.ID, err)
	}
	pid, err := p.readPid()
	if err != nil {
		return 0, fmt.Errorf("container %s: create: %w", p.ID, err)
	}
	if st, err := procStart(pid); err == nil {
		_ = os.WriteFile(filepath.Join(p.Dir, initStartFile), []byte(st), 0o644)
	}
	if o.PidFile != "" {
		if err := atomicfile.Write(o.PidFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return 0, fmt.Errorf("container %s: write pid file: %w", p.ID, err)
		}
	}
	return pid, nil
}

// readPid reads the init's pid, which stage1 wrote.
func (p *Pod) readPid() (int, error) {
	b, err := os.ReadFile(filepath.Join(p.Dir, abi.PIDFile))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file holds %q", strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// procStat reads /proc/PID/stat once: the process's start time (field 22)
// and its state (field 3, "Z" for a zombie).
func procStat(pid int) (start, state string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", "", fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", "", fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return f[19], f[0], nil
}

// procStart is field 22 of /proc/PID/stat, the process's start time.
func procStart(pid int) (string, error) {
	start, _, err := procStat(pid)
	return start, err
}

// livePid is the init's pid while it runs (not a zombie), else 0. (The
// init execs from its group's leader, stage1's pod-init included: a leader
// that reads as a zombie is an init that has ended.)
func (p *Pod) livePid() int {
	pid, err := p.readPid()
	if err != nil {
		return 0
	}
	want, err := os.ReadFile(filepath.Join(p.Dir, initStartFile))
	if err != nil {
		return 0
	}
	got, state, err := procStat(pid)
	if err != nil || got != string(want) || state == "Z" {
		return 0 // gone, another process, or exited and not yet reaped by the caller
	}
	return pid
}

func (p *Pod) status() (specs.ContainerState, int) {
	if _, err := os.Stat(filepath.Join(p.Dir, abi.OCICreatedFile)); err != nil {
		// create has not finished: it holds the lock while it runs.
		f, err := os.Open(p.Dir)
		if err != nil {
			return specs.StateStopped, 0
		}
		defer f.Close()
		if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil {
			return specs.StateCreating, 0
		}
		return specs.StateStopped, 0 // create failed
	}
	pid := p.livePid()
	if pid == 0 {
		return specs.StateStopped, 0
	}
	if _, err := os.Lstat(filepath.Join(p.Dir, abi.OCIStartFIFO)); err == nil {
		return specs.StateCreated, pid
	}
	return specs.StateRunning, pid
}

func (p *Pod) state() (specs.State, error) {
	st, pid := p.status()
	return specs.State{Version: specs.Version, ID: p.ID, Status: st, Pid: pid, Bundle: p.Bundle,
		Annotations: p.Spec.Annotations}, nil
}

func (p *Pod) start() error {
	unlock, err := p.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, pid := p.status()
	if st != specs.StateCreated {
		return fmt.Errorf("container %s is %s: %w", p.ID, st, ErrNotCreated)
	}
	fifo := filepath.Join(p.Dir, abi.OCIStartFIFO)
	f, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("container %s: start: %w", p.ID, err)
	}
	defer f.Close()
	// The init opens the FIFO for writing (that open completes now that it
	// has a reader), writes one byte and goes on to exec systemd.
	buf := make([]byte, 1)
	for deadline := time.Now().Add(60 * time.Second); ; {
		n, _ := unix.Read(int(f.Fd()), buf)
		if n > 0 {
			break
		}
		if p.livePid() != pid {
			return fmt.Errorf("container %s: start: %w (its init exited)", p.ID, ErrNotRunning)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("container %s: start: its init (pid %d) did not take the start signal in 60 s; delete --force it", p.ID, pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.Remove(fifo); err != nil {
		return err
	}
	if p.appInit() {
		return nil // a signal waits for the app's exec (waitAppInit)
	}
	// As runc start, this returns before the app runs (systemd has yet to
	// start its unit): a caller watches the container from now on, and an
	// app that ends at once must end after that. containerd's shim
	// registers its OOM notification (memory.oom_control's eventfd; on
	// cgroup v2 memory.events) on the init's cgroup only once start has
	// returned: an app OOM-killed before then is reported as an "Error",
	// not "OOMKilled". A signal waits for the app instead (see signal).
	// The kvm flavor's app is in its VM: start waits for its boot.
	if supervised(pid) {
		p.waitApp(pid)
	}
	return nil
}

// supervised tells whether the init shares skiff-oci's pid namespace: then
// it is a stage1's supervisor on the host (the kvm flavor's, whose app is
// in a VM), not a container's PID 1. It maps the signals it gets itself
// (every one goes to it as given, --all too: its namespace is the host's)
// and the pod's ready marker says when the app runs.
func supervised(pid int) bool {
	mine, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return false
	}
	its, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	return err == nil && its == mine
}

// waitApp waits (at most 30 s) until the app runs, as after runc start
// (the first signal after start waits for it, the kvm flavor's start too):
// systemd has started its unit and app-exec has exec'd it; or until the app
// or the container has already ended. Until then the unit's main process is
// systemd's fork (systemd's executable, named "(app-exec)") or app-exec: a
// signal sent to either would never reach the app's own handlers.
func (p *Pod) waitApp(pid int) {
	exitRecord := filepath.Join(p.Dir, abi.AppsDir, AppName, abi.AppExitFile)
	if supervised(pid) { // a VM's boot: the ready marker, the exit record or the end
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			_, errReady := os.Lstat(filepath.Join(p.Dir, abi.ReadyFile))
			if _, err := os.Lstat(exitRecord); err == nil || errReady == nil || p.livePid() != pid {
				return
			}
		}
		return
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if app := appMain(pid); app != 0 {
			if isAppExec(app) {
				// app-exec supervises an app in a pid namespace of
				// its own (stage1/README.md "OCI mode"): the app is
				// its child.
				if c := childOf(app); c != 0 {
					app = c
				}
			}
			// The init's executable now (it was pod-init, the stage1
			// binary, until it exec'd systemd), then the process's.
			var initExe, exe unix.Stat_t
			forked := unix.Stat("/proc/"+strconv.Itoa(pid)+"/exe", &initExe) != nil ||
				unix.Stat("/proc/"+strconv.Itoa(app)+"/exe", &exe) != nil ||
				(exe.Dev == initExe.Dev && exe.Ino == initExe.Ino)
			if !forked && !isAppExec(app) {
				waitSettled(app)
				return
			}
		}
		if _, err := os.Lstat(exitRecord); err == nil || p.livePid() != pid {
			return
		}
	}
}

// isAppExec says whether pid is app-exec, or systemd's fork that will be.
func isAppExec(pid int) bool {
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	c := strings.TrimSpace(string(comm))
	return c == "app-exec" || c == "(app-exec)"
}

// childOf is a child of pid (the first found), 0 when it has none.
func childOf(pid int) int {
	es, _ := os.ReadDir("/proc")
	for _, e := range es {
		q, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := procPPid(q); ok && ppid == pid {
			return q
		}
	}
	return 0
}

// procPPid is field 4 of /proc/PID/stat, the parent's pid.
func procPPid(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// waitSettled gives the app's main process, just exec'd, the time to set
// itself up (a shell its traps) before start returns and a caller's signal
// may come: until it first sleeps (or stops, or ends), at most 100 ms.
func waitSettled(app int) {
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(app) + "/stat")
		if err != nil {
			return
		}
		// The state follows the command's closing parenthesis.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'R' && b[i+2] != 'D' {
			return
		}
	}
}

// nsPids lists the processes in the init's pid namespace and in those
// nested in it (an app's own; the init first).
func nsPids(initPid int) []int {
	var ns unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(initPid)+"/ns/pid", &ns); err != nil {
		return nil
	}
	pids := []int{initPid}
	es, _ := os.ReadDir("/proc")
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == initPid {
			continue
		}
		if inPIDNS(pid, ns) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// inPIDNS says whether pid's pid namespace is ns or one nested in it.
func inPIDNS(pid int, ns unix.Stat_t) bool {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	for depth := 0; depth < 33; depth++ { // the kernel nests at most 32
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil {
			break
		}
		if st.Dev == ns.Dev && st.Ino == ns.Ino {
			unix.Close(fd)
			return true
		}
		parent, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		if err != nil {
			return false // the top, or above skiff-oci's own
		}
		fd = parent
	}
	unix.Close(fd)
	return false
}

// appMain is the app's main process: of the init's children in the app's
// unit, the one that started first (an exec'd process can be there too).
func appMain(initPid int) int {
	best, bestStart := 0, uint64(0)
	for _, pid := range nsPids(initPid)[1:] {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 20 || f[1] != strconv.Itoa(initPid) {
			continue
		}
		cg, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if !strings.Contains(string(cg), "skiff-app-"+AppName+".service") {
			continue
		}
		if start, err := strconv.ParseUint(f[19], 10, 64); err == nil && (best == 0 || start < bestStart) {
			best, bestStart = pid, start
		}
	}
	return best
}

// sendHalt waits (a bounded time) until the container's init is systemd and
// takes SIGRTMIN+3, then sends it: a signal sent to a namespace's init before
// it has a handler is dropped.
func sendHalt(pid int) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			return ErrNotRunning
		}
		// Before systemd (pod-init, libcontainer's init) the signal would be
		// lost. systemd takes its signals through a signalfd: blocked, not
		// caught.
		if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); filepath.Base(exe) != "systemd" {
			continue
		}
		var mask uint64
		for _, l := range strings.Split(string(b), "\n") {
			for _, k := range []string{"SigCgt:", "SigBlk:"} {
				if v, ok := strings.CutPrefix(l, k); ok {
					m, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
					mask |= m
				}
			}
		}
		if mask&(1<<(uint(sigHalt)-1)) != 0 {
			return unix.Kill(pid, sigHalt)
		}
	}
	return unix.Kill(pid, unix.SIGKILL) // systemd never came up: nothing to stop cleanly
}

func (p *Pod) signal(sig unix.Signal, all bool) error {
	st, pid := p.status()
	if pid == 0 {
		if all && p.appInit() {
			// As runc: what the app left in the container's cgroup
			// (in the host's pid namespace, its children outlive it).
			if _, err := os.Lstat(filepath.Join(p.Dir, abi.OCICgroupFile)); errors.Is(err, os.ErrNotExist) {
				return nil // a create that failed before the stage1 made one
			}
			return p.killCgroup(0, sig)
		}
		if all {
			return nil // the init was PID 1 of the container's pid namespace: nothing is left
		}
		return fmt.Errorf("container %s: %w", p.ID, ErrNotRunning)
	}
	switch {
	case p.appInit():
		// The app is the init, in the host's pid namespace (hostpid.go).
		if sig == unix.SIGKILL || all {
			return p.killCgroup(pid, sig)
		}
		if st == specs.StateRunning {
			waitAppInit(pid)
		}
		return unix.Kill(pid, sig)
	case supervised(pid):
		if st == specs.StateCreated && (sig == unix.SIGTERM || sig == unix.SIGINT || sig == unix.SIGQUIT || sig == unix.SIGHUP) {
			sig = unix.SIGKILL // nothing runs yet: any stop is a kill
		}
		return unix.Kill(pid, sig)
	case sig == unix.SIGKILL:
		// The init is PID 1 of the container's pid namespace: the kernel
		// kills every process in it.
		return unix.Kill(pid, unix.SIGKILL)
	case all:
		p.waitApp(pid)
		for _, q := range nsPids(pid) {
			_ = unix.Kill(q, sig)
		}
		return nil
	case st == specs.StateCreated:
		// Nothing runs yet but the waiting init: any stop is a kill.
		if sig == unix.SIGTERM || sig == unix.SIGINT || sig == unix.SIGQUIT || sig == unix.SIGHUP {
			return unix.Kill(pid, unix.SIGKILL)
		}
		return unix.Kill(pid, sig)
	}
	// start returned before the app runs: a signal sent to systemd's fork
	// "(app-exec)" or to app-exec would never reach the app's handlers.
	p.waitApp(pid)
	if app := appMain(pid); app != 0 {
		return unix.Kill(app, sig)
	}
	if sig == unix.SIGTERM || sig == unix.SIGINT {
		return sendHalt(pid) // the app is not there yet (or any more): stop the pod
	}
	return fmt.Errorf("container %s: its app is not running: %w", p.ID, ErrNotRunning)
}

func (p *Pod) exitCode() (int, bool) {
	if st, _ := p.status(); st != specs.StateStopped {
		return 0, false
	}
	d, err := os.Open(p.Dir)
	if err != nil {
		return 0, false
	}
	defer d.Close()
	// The pod can write apps/: the record is hostile until validated.
	var x abi.AppExit
	if err := abi.ReadJSONAt(d, filepath.Join(abi.AppsDir, AppName, abi.AppExitFile), &x); err != nil || x.Validate() != nil {
		return 0, false
	}
	return x.Code, true
}

func (p *Pod) delete(force bool) error {
	unlock, err := p.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if st, pid := p.status(); pid != 0 {
		if !force {
			return fmt.Errorf("container %s is %s: %w", p.ID, st, ErrNotStopped)
		}
		_ = unix.Kill(pid, unix.SIGKILL)
		for deadline := time.Now().Add(60 * time.Second); p.livePid() != 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := os.Stat(filepath.Join(p.Dir, abi.CleanFile)); err != nil {
		cmd, err := p.entrypoint(abi.EntrypointGC, p.ID)
		if err != nil {
			return err
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("container %s: stage1 gc: %v: %s; run delete --force again", p.ID, err, strings.TrimSpace(string(out)))
		}
	}
	// A crash of create between its mount and the sandbox start leaves the
	// stage1 rootfs mounted.
	if err := unmountUnder(p.Dir); err != nil {
		return fmt.Errorf("container %s: %w; run delete --force again", p.ID, err)
	}
	_, err = os.Stat(filepath.Join(p.Dir, defaultCgroupFile))
	defaultCgroup := err == nil
	if err := os.RemoveAll(p.Dir); err != nil {
		return fmt.Errorf("container %s: remove its directory: %w", p.ID, err)
	}
	if defaultCgroup {
		removeDefaultCgroupParent()
	}
	cleanStage1Cache(p.Root)
	return nil
}

func (p *Pod) exec(process *specs.Process, o ExecOpts) (*os.Process, error) {
	st, pid := p.status()
	if st != specs.StateRunning && st != specs.StateCreated {
		return nil, fmt.Errorf("container %s: %w", p.ID, ErrNotRunning)
	}
	if process == nil || len(process.Args) == 0 {
		return nil, fmt.Errorf("container %s: exec: the process has no args; name the command", p.ID)
	}
	if o.PreserveFDs > 0 {
		return nil, fmt.Errorf("container %s: exec --preserve-fds is not supported yet; pass the descriptors another way", p.ID)
	}
	if err := unappliedLSM(process, ""); err != nil {
		return nil, fmt.Errorf("container %s: exec: %w", p.ID, err)
	}
	raw, err := json.Marshal(process)
	if err != nil {
		return nil, err
	}
	args := []string{"--pid=" + strconv.Itoa(pid), "--app=" + AppName, "--process=/proc/self/fd/3"}
	if o.Detach {
		args = append(args, "--detach")
	}
	if o.PidFile != "" {
		pf, err := filepath.Abs(o.PidFile)
		if err != nil {
			return nil, err
		}
		args = append(args, "--pid-file="+pf)
	}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket="+o.ConsoleSocket)
	}
	cmd, err := p.entrypoint(abi.EntrypointEnter, args...)
	if err != nil {
		return nil, err
	}
	s := stdio(o.Stdio)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s[0], s[1], s[2]
	cmd.Env = os.Environ()
	if o.Debug {
		cmd.Env = append(cmd.Env, abi.EnvDebug+"=1")
	}
	// The process spec reaches enter on a pipe: no file to clean up.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("container %s: exec: %w", p.ID, err)
	}
	r.Close()
	// Written before returning: a caller that exits at once (detached)
	// would take a writing goroutine with it. enter reads it first thing;
	// if it died, the write fails with EPIPE.
	_, err = w.Write(raw)
	w.Close()
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("container %s: exec: hand the process spec to stage1 enter: %w", p.ID, err)
	}
	if !o.Detach {
		return cmd.Process, nil
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("container %s: exec: stage1 enter failed (%v); see its message above", p.ID, err)
	}
	if o.PidFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(o.PidFile)
	if err != nil {
		return nil, err
	}
	xpid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("container %s: exec: pid file holds %q", p.ID, b)
	}
	return os.FindProcess(xpid)
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	for tries := 0; tries < 100; tries++ {
		ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return nil
		}
		sort.Slice(ms, func(i, j int) bool { return len(ms[i].Mountpoint) > len(ms[j].Mountpoint) })
		for _, m := range ms {
			if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("unmount %s: %w", m.Mountpoint, err)
			}
		}
	}
	return fmt.Errorf("mounts under %s keep coming back", dir)
}

// stage1Error is why oci-create failed, as it wrote it (abi.OCIErrorFile),
// read as untrusted text: no link followed, bounded, one line of printable
// characters; "" when there is none.
func (p *Pod) stage1Error() string {
	dir, err := os.Open(p.Dir)
	if err != nil {
		return ""
	}
	defer dir.Close()
	b, err := abi.ReadFileAt(dir, abi.OCIErrorFile, abi.OCIErrorMax)
	if err != nil {
		return ""
	}
	var out strings.Builder
	for _, r := range strings.ToValidUTF8(string(b), "?") {
		switch {
		case r == '\n' || r == '\t':
			out.WriteByte(' ')
		case unicode.IsControl(r):
		default:
			out.WriteRune(r)
		}
	}
	return strings.TrimSpace(out.String())
}
