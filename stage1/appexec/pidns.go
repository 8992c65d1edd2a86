package appexec

// The app's own pid namespace (OCI mode, when the bundle asks for a new
// one: Kubernetes' default). systemd stays PID 1 of the container's pid
// namespace; the app is PID 1 of one nested in it, as under runc: /proc/1 is
// the app, and what `exec` runs sees the app as PID 1 and its children.
//
// app-exec, the unit's main process, is then a supervisor: once it has the
// app's stdio it starts app-exec again (--nested) as PID 1 of a new pid
// namespace, forwards every signal it gets to it and exits with its status,
// so that systemd's view of the unit does not change. The nested app-exec
// makes the app's root as usual, mounts a procfs of its own pid namespace
// over the app's /proc (the pod's) and masks the spec's /proc paths in it
// again, then becomes the app. enter's app-exec alike joins the app's pid
// namespace and starts a nested app-exec there, which joins the app's mount
// namespace (that of PID 1 of its pid namespace, the app).

import (
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/units"
)

// NestedPIDFile, in the stage1's rootfs (out of the apps' reach), says that
// the app runs as PID 1 of a pid namespace of its own nested in the pod's
// (OCI mode: oci-create writes it when the bundle asks for a new pid
// namespace).
const NestedPIDFile = "/etc/skiff/oci-app-pidns"

// nestedPIDNS says whether NestedPIDFile is there.
func nestedPIDNS() bool { return marked(NestedPIDFile) }

// superviseNested starts this app-exec again (its arguments, with
// --nested=keep) in the app's pid namespace: a new one (the app's start) or,
// for enter (inherit), the app's. The child gets this process's stdio, its
// inherited descriptors (those not close-on-exec) at the same numbers, and
// env as its whole environment. It forwards this process's signals to the
// child and ends as the child ends: with its code, or 128+N for signal N.
func superviseNested(app string, inherit bool, keep int, env []string) error {
	if filepath.Base(os.Args[0]) != "app-exec" {
		return fail(abi.ExitSkiffFailure, "app %s: the nested app-exec needs app-exec's own command line, not %q", app, os.Args[0])
	}
	// No Pdeathsig here: Go's fork takes a parent it cannot see (outside
	// the child's pid namespace) for a dead one. The child sets it itself
	// (watchParent) and checks this process's end of guard.
	attr := &syscall.SysProcAttr{}
	if inherit {
		ns, err := appPIDNS(app)
		if err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
		}
		// The caller has locked this thread: its children go there.
		err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWPID)
		ns.Close()
		if err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: join its pid namespace: %v", app, err)
		}
	} else {
		attr.Cloneflags = syscall.CLONE_NEWPID
	}
	extra, err := inheritedFDs()
	if err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	guard, guardW, err := os.Pipe()
	if err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	defer guardW.Close() // held until this process ends
	cmd := &osexec.Cmd{Path: AppExecPath,
		Args: append([]string{"app-exec", "--nested=" + strconv.Itoa(keep), "--guard-fd=" + strconv.Itoa(3+len(extra))}, os.Args[1:]...),
		Env:  append([]string{}, env...), Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, SysProcAttr: attr,
		ExtraFiles: append(extra, guard)}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	if err := cmd.Start(); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: start it in its pid namespace: %v", app, err)
	}
	for _, f := range cmd.ExtraFiles {
		if f != nil {
			f.Close()
		}
	}
	if null, err := os.Open(os.DevNull); err == nil { // the app's input is the app's
		_ = unix.Dup3(int(null.Fd()), 0, 0)
		null.Close()
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == unix.SIGCHLD || s == unix.SIGURG { // its own, and Go's preemption
					continue
				}
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	if st := cmd.ProcessState; st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(st.ExitCode())
	}
	return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
}

// watchParent is the nested app-exec's first step: SIGKILL when the
// app-exec that started it ends (so that neither the app nor an exec'd
// process outlives its supervisor), and an end now if it has already (the
// write end of the pipe at fd guard, which only it held, is closed).
func watchParent(guard int) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("parent-death signal: %w", err)
	}
	fds := []unix.PollFd{{Fd: int32(guard), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	unix.Close(guard)
	if err != nil || n != 0 {
		return errors.New("the app-exec that started this one has ended")
	}
	return nil
}

// AppExecPath is app-exec in the stage1's rootfs.
const AppExecPath = units.AppExecPath

// inheritedFDs are this process's descriptors from 3 on that are not
// close-on-exec (what it was given: socket-activated ones, enter's console
// socket), each at its number less 3 (nil in between).
func inheritedFDs() ([]*os.File, error) {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("list descriptors: %w", err)
	}
	var out []*os.File
	for _, e := range es {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // the directory read, or Go's own
		}
		for len(out) <= fd-3 {
			out = append(out, nil)
		}
		out[fd-3] = os.NewFile(uintptr(fd), "inherited")
	}
	return out, nil
}

// appPIDNS opens the pid namespace of the app (enter): that of the oldest
// process in the app's unit whose pid namespace is not this process's (the
// app, PID 1 there), vetted as joinAppMountNS vets a mount namespace. It
// waits (at most appStartWait) while the app has not made it yet.
func appPIDNS(app string) (*os.File, error) {
	procs := filepath.Join(appCgroup(app), "cgroup.procs")
	exited := filepath.Join(AppsDir, app, abi.AppExitFile)
	for deadline := time.Now().Add(appStartWait); ; time.Sleep(20 * time.Millisecond) {
		f, err := vettedNS(procs, "pid")
		if err != nil || f != nil {
			return f, err
		}
		if _, err := os.Lstat(exited); err == nil {
			return nil, errors.New("the app has exited; there is nothing to enter (see 'skiff status')")
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the app has not started its pid namespace within %s", appStartWait)
		}
	}
}

// vettedNS opens the namespace kind (a /proc/PID/ns name) of the oldest
// process listed in procs (a cgroup.procs file) whose namespace of that kind
// is not this thread's, opened while a pidfd shows the process alive from
// before the open to after the checks (so its pid was not reused on the way)
// and in procs; nil when there is none.
func vettedNS(procs, kind string) (*os.File, error) {
	var mine unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/"+kind, &mine); err != nil {
		return nil, err
	}
	pid, err := oldestOther(procs, func(pid int) bool {
		var its unix.Stat_t
		return unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &its) == nil && (its.Ino != mine.Ino || its.Dev != mine.Dev)
	})
	if err != nil || pid == 0 {
		return nil, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the app's process %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	nsfd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil // it has just exited
	}
	f := os.NewFile(uintptr(nsfd), kind)
	var its unix.Stat_t
	in, err := inCgroupProcs(procs, pid)
	if err != nil || !in || unix.PidfdSendSignal(pidfd, 0, nil, 0) != nil || unix.Fstat(nsfd, &its) != nil ||
		its.Ino == mine.Ino && its.Dev == mine.Dev {
		f.Close()
		return nil, err
	}
	return f, nil
}

// joinNestedMountNS is joinAppMountNS for a process in the app's own pid
// namespace: the app is its PID 1, whose mount namespace it joins through a
// pidfd (no pid is read from /proc, which is the pod's). It says false, and
// changes nothing, when the app is not in a root of its own (yet).
func joinNestedMountNS() (bool, error) {
	pidfd, err := unix.PidfdOpen(1, 0)
	if err != nil {
		return false, nil // the app is gone
	}
	defer unix.Close(pidfd)
	var before, after unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/mnt", &before); err != nil {
		return false, err
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return false, fmt.Errorf("unshare the thread's fs information: %w", err)
	}
	if err := unix.Setns(pidfd, unix.CLONE_NEWNS); err != nil {
		return false, fmt.Errorf("join the app's mount namespace: %w", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/mnt", &after); err != nil {
		return false, err
	}
	if after.Ino == before.Ino && after.Dev == before.Dev {
		return false, nil // still the pod's: the app has no root of its own yet
	}
	return true, unix.Chdir("/")
}

// mountNestedProc mounts a procfs of this process's pid namespace over the
// app's /proc (this process is in the app's root), then masks the spec's
// masked and read-only paths in /proc again as podfs masks them in the
// pod's: a directory under an empty read-only tmpfs, a file under /dev/null,
// a read-only path bound on itself read-only. A new procfs without them
// would show what they hide. Each path is taken cleaned ("/proc/net/../x" is
// /proc/x) and must resolve below /proc through no magic link
// (/proc/self/root/... is refused).
func mountNestedProc(spec *specs.Spec) error {
	const nse = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("proc", "/proc", "proc", nse, ""); err != nil {
		return fmt.Errorf("mount the app's procfs: %w", err)
	}
	if spec.Linux == nil {
		return nil
	}
	// a read-only bind that keeps the flags of what it binds (in a user
	// namespace a remount may not clear them)
	roBind := func(src, dst string, flags uintptr) error {
		if err := unix.Mount(src, dst, "", unix.MS_BIND|flags, ""); err != nil {
			return err
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(dst, &fs); err != nil {
			return err
		}
		keep := uintptr(fs.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
		return unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|flags|keep, "")
	}
	for _, p := range spec.Linux.MaskedPaths {
		c, st, err := inNestedProc(p)
		switch {
		case err != nil:
		case st == nil:
			continue // not in /proc, or not in this kernel's
		case st.IsDir():
			err = unix.Mount("tmpfs", c, "tmpfs", unix.MS_RDONLY|nse, "size=0")
		default:
			err = roBind("/dev/null", c, 0)
		}
		if err != nil {
			return fmt.Errorf("mask %s in the app's procfs: %w", p, err)
		}
	}
	for _, p := range spec.Linux.ReadonlyPaths {
		c, st, err := inNestedProc(p)
		if err == nil && st != nil {
			err = roBind(c, c, unix.MS_REC)
		}
		if err != nil {
			return fmt.Errorf("make %s read-only in the app's procfs: %w", p, err)
		}
	}
	return nil
}

// inNestedProc is the bundle's path p cleaned, when it is in /proc, and
// what it is there: resolved below /proc with no magic link followed (the
// mount on the cleaned path then lands where it resolved: procfs's own
// symlinks are the kernel's). A path outside /proc, or not in this kernel's,
// has no FileInfo.
func inNestedProc(p string) (string, os.FileInfo, error) {
	c := path.Clean(p)
	if !path.IsAbs(p) || !strings.HasPrefix(c, "/proc/") {
		return c, nil, nil
	}
	proc, err := os.OpenFile("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return c, nil, err
	}
	defer proc.Close()
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(int(proc.Fd()), strings.TrimPrefix(c, "/proc/"), how)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return c, nil, nil
	case errors.Is(err, unix.EXDEV), errors.Is(err, unix.ELOOP):
		return c, nil, fmt.Errorf("%s leads out of /proc (through a link); name the path in /proc itself", c)
	case err != nil:
		return c, nil, &os.PathError{Op: "open", Path: c, Err: err}
	}
	f := os.NewFile(uintptr(fd), c)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return c, nil, err
	}
	return c, st, nil
}
