package main

// App-as-init (OCI mode, interface v2, since stage1 interface 2's
// "app-as-init" addition; stage1/README.md "OCI mode"): a bundle whose
// linux.namespaces has no pid entry (Kubernetes' hostPID, podman's
// --pid=host) asks for the host's pid namespace, where systemd cannot be
// PID 1. The container is set up as for any bundle (cgroup, mount namespace
// with the stage1's tree and the app's root, the other namespaces, the
// start FIFO), but its init, once start releases it, becomes the app itself
// (appexec.ExecAsInit: the app's own root, user, capabilities, seccomp
// filter, as its unit would run it) instead of exec'ing systemd: the app is
// the container's init in the host's pid namespace, as under runc.
//
// The app's root is a mount namespace of its own (as always), so the
// sandbox's namespace, with the stage1's tree, would go with the init's
// exec; oci-create keeps it (a bind mount of its nsfs file in the pod's
// stage1 directory, which delete's unmount of the pod directory drops), and
// exec (stage1 enter) runs app-exec there: libcontainer's exec cannot, as it
// joins the init's mount namespace, the app's, where no stage1 file is.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
	"github.com/skiff-project/skiff/stage1/container"
)

// s1OCIMountNS holds the sandbox's mount namespace of an app-as-init
// container (a bind mount of its nsfs file); its presence says the pod is
// one.
const s1OCIMountNS = "stage1/oci-mntns"

// ociAppInitNS says whether the bundle's container is in the host's pid
// namespace (app-as-init): linux.namespaces has no pid entry, or one whose
// path is this process's own pid namespace (containerd 1.6 gives the
// containers of a hostPID pod the pause container's, /proc/PID/ns/pid); it
// returns nss without that entry. A user namespace with it is refused:
// Kubernetes refuses hostPID with hostUsers: false too, and exec
// (ociHostPIDExec) joins the container's namespaces from a thread of a Go
// process, which cannot join a user namespace.
func ociAppInitNS(nss []specs.LinuxNamespace) (bool, []specs.LinuxNamespace, error) {
	var out []specs.LinuxNamespace
	user := false
	for _, n := range nss {
		user = user || n.Type == specs.UserNamespace
		if n.Type != specs.PIDNamespace {
			out = append(out, n)
			continue
		}
		if n.Path == "" {
			return false, nss, nil
		}
		host, err := sameNS(n.Path, "/proc/self/ns/pid", unix.CLONE_NEWPID)
		if err != nil {
			return false, nil, fmt.Errorf("linux.namespaces: pid path %s: %w", n.Path, err)
		}
		if !host {
			return false, nss, nil
		}
	}
	if user {
		return false, nil, errors.New("linux.namespaces has a user namespace and the host's pid namespace (no pid entry, or the host's by path: hostPID, --pid=host): the app as the container's init in the host's pid namespace runs without a user namespace only; drop the user namespace or give the container a pid namespace of its own")
	}
	return true, out, nil
}

// sameNS says whether the namespace files p and q (of type flag) are one
// namespace.
func sameNS(p, q string, flag int) (bool, error) {
	var st [2]unix.Stat_t
	for i, path := range []string{p, q} {
		f, err := openNS(path, flag)
		if err != nil {
			return false, err
		}
		err = unix.Fstat(int(f.Fd()), &st[i])
		f.Close()
		if err != nil {
			return false, err
		}
	}
	return st[0].Dev == st[1].Dev && st[0].Ino == st[1].Ino, nil
}

// ociAppInit makes the sandbox's init the app: pod-init --oci-app=N APP
// (podInitOCIApp) instead of the keeper and systemd, and writes
// appexec.AppInitFile in the stage1's rootfs, out of the app's reach.
func ociAppInit(rootfs string, sb *container.Pod, app string, preserveFDs int) error {
	p := rootfs + appexec.AppInitFile
	if err := os.MkdirAll(rootfs+"/etc/skiff", 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		return err
	}
	sb.Args = []string{"/usr/lib/skiff/stage1", "pod-init", "--oci-app=" + strconv.Itoa(preserveFDs), app}
	return os.WriteFile(abi.OCIAppInitFile, nil, 0o644)
}

// holdSandboxMountNS binds the mount namespace of the created init pid (the
// sandbox's, where it waits for start) on s1OCIMountNS.
func holdSandboxMountNS(pid int) error {
	f, err := os.OpenFile(s1OCIMountNS, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("hold the sandbox's mount namespace: %w", err)
	}
	f.Close()
	if err := unix.Mount("/proc/"+strconv.Itoa(pid)+"/ns/mnt", s1OCIMountNS, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("hold the sandbox's mount namespace: %w", err)
	}
	return nil
}

// appInitPod says whether the pod (the working directory) is an app-as-init
// container.
func appInitPod() bool {
	_, err := os.Lstat(s1OCIMountNS)
	return err == nil
}

// podInitOCIApp is pod-init --oci-app=N[:tty] APP: the container's first
// process in app-as-init mode, started once start has released it. With tty
// its stdio is the pty libcontainer made (see ociConsole); it becomes the
// app with its own stdio and the N preserved descriptors (fd 3 on).
func podInitOCIApp(spec string, args []string) error {
	n, tty, err := parseOCIFDs(spec)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return errors.New("usage: pod-init --oci-app=N[:tty] APP")
	}
	if tty {
		if err := ociConsole(); err != nil {
			return fmt.Errorf("pod-init: %w", err)
		}
	}
	listen := os.Getenv(envOCIListenFDs)
	if _, err := strconv.Atoi(listen); err != nil {
		listen = ""
	}
	return appexec.ExecAsInit(args[0], n, listen)
}

// ociJoinMain is oci-join FD CMD...: the first step of an exec in an
// app-as-init container, started by ociHostPIDExec in the sandbox's
// namespaces. Not dumpable since its first instruction (dumpable.go), it
// says so to its starter (one byte on FD, a socket), which only then puts
// it in the container's cgroups; it waits until that is done (one byte
// back), then execs CMD (app-exec).
func ociJoinMain(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: oci-join FD CMD...")
	}
	fd, err := strconv.Atoi(args[0])
	if err != nil || fd < 3 {
		return errors.New("usage: oci-join FD CMD...")
	}
	buf := []byte{1}
	if _, err := unix.Write(fd, buf); err != nil {
		return fmt.Errorf("oci-join: tell its starter (stage1 enter) it runs: %w", err)
	}
	n, _ := unix.Read(fd, buf)
	unix.Close(fd)
	if n != 1 {
		return errors.New("oci-join: its starter (stage1 enter) ended before the process joined the container's cgroups")
	}
	return syscall.Exec(args[1], args[1:], os.Environ())
}

// ociHostPIDExec is container.ExecWith for an app-as-init container: argv
// (app-exec --inherit ...) runs in the sandbox's mount namespace (held by
// s1OCIMountNS) and the init's network, ipc, uts and cgroup namespaces,
// joined by a thread of this process that then starts it through oci-join,
// and in the container's cgroups (the host's pid namespace is already
// this process's); app-exec then joins the app's cgroup2 group and mount
// namespace and isolates the process as the app.
func ociHostPIDExec(stateRoot, id string, argv []string, o container.ExecOpts) (int, error) {
	initPid, cgroups, err := container.InitCgroups(stateRoot, id)
	if err != nil {
		return 0, err
	}
	// oci-join's end and ours: it says it runs (not dumpable), we say when
	// it is in the container's cgroups.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	peer, release := os.NewFile(uintptr(pair[0]), "oci-join"), os.NewFile(uintptr(pair[1]), "oci-join release")
	defer release.Close()
	extra := append(append([]*os.File{}, o.ExtraFiles...), peer)
	joinFD := strconv.Itoa(3 + len(extra) - 1)
	cmd := &exec.Cmd{
		Path: "/usr/lib/skiff/stage1", Args: append([]string{"/usr/lib/skiff/stage1", "oci-join", joinFD}, argv...),
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Dir: "/",
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, ExtraFiles: extra,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = startInSandbox(cmd, initPid)
	peer.Close()
	if err != nil {
		return 0, fmt.Errorf("exec in pod: %w", err)
	}
	pid := cmd.Process.Pid
	fail := func(err error) (int, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("exec in pod: %w", err)
	}
	// Into the container's cgroups, where its processes see it, only once
	// it is not dumpable: not in the instants between its exec and its
	// constructor (EOF: it has ended).
	if _, err := io.ReadFull(release, make([]byte, 1)); err != nil {
		return fail(fmt.Errorf("oci-join ended before it ran (%v); see its message above", err))
	}
	for _, dir := range cgroups {
		if err := os.WriteFile(dir+"/cgroup.procs", []byte(strconv.Itoa(pid)), 0); err != nil {
			return fail(fmt.Errorf("join the container's cgroup %s: %w", dir, err))
		}
	}
	if _, err := release.Write([]byte{1}); err != nil {
		return fail(err)
	}
	if o.PidFile != "" {
		if err := atomicfile.WriteFile(o.PidFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fail(fmt.Errorf("write pid file: %w", err))
		}
	}
	if o.Detach {
		return 0, nil
	}
	if o.Started != nil {
		o.Started(pid, cmd.Process.Signal)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, err
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}

// startInSandbox starts cmd from a thread of its own that has joined the
// network, ipc, uts and cgroup namespaces of initPid and the mount
// namespace held by s1OCIMountNS; the thread ends with it (it stays locked),
// so nothing else of this process runs there.
func startInSandbox(cmd *exec.Cmd, initPid int) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with this goroutine
		done <- func() error {
			var fds []*os.File
			defer func() {
				for _, f := range fds {
					f.Close()
				}
			}()
			for _, kind := range []struct {
				name string
				flag int
			}{{"net", unix.CLONE_NEWNET}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"cgroup", unix.CLONE_NEWCGROUP}} {
				f, err := openNS("/proc/"+strconv.Itoa(initPid)+"/ns/"+kind.name, kind.flag)
				if err != nil {
					return fmt.Errorf("the init's %s namespace: %w", kind.name, err)
				}
				fds = append(fds, f)
			}
			mnt, err := openNS(s1OCIMountNS, unix.CLONE_NEWNS)
			if err != nil {
				return fmt.Errorf("the sandbox's mount namespace: %w", err)
			}
			fds = append(fds, mnt)
			// setns(CLONE_NEWNS) needs a thread that shares no fs information.
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return err
			}
			for i, f := range fds {
				if err := unix.Setns(int(f.Fd()), 0); err != nil {
					return fmt.Errorf("join namespace %d: %w", i, err)
				}
			}
			return cmd.Start()
		}()
	}()
	return <-done
}
