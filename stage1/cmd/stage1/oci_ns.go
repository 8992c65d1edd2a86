package main

// The bundle's namespaces (OCI mode, interface v2). Each entry of
// linux.namespaces is created, or joined by path as runc joins it:
// libcontainer's nsexec setns(2)s into net, ipc and uts namespaces given by
// path before it makes the others. Mount and cgroup namespaces cannot be
// joined: systemd needs its own. The pid namespace is the exception: systemd is
// the container's init and must be PID 1 of a namespace of its own, so a pid
// namespace given by path (a Kubernetes pod's containers join the sandbox's)
// gets a new pid namespace nested in it (inPIDNS, container/nestpid.go): the
// container's processes are in the namespace joined, as with runc, under a
// PID 1 of their own. A bundle with no pid namespace (the host's) runs its
// app as the container's init instead of systemd (oci_hostpid.go).

import (
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// nsCloneFlag is the CLONE_NEW* value of each namespace type
// (NS_GET_NSTYPE's answer).
var nsCloneFlag = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// checkOCINamespaces refuses namespaces this flavor cannot honour, and a
// path that is not a namespace of the type it is listed as.
func checkOCINamespaces(nss []specs.LinuxNamespace) error {
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, n := range nss {
		flag, ok := nsCloneFlag[n.Type]
		if !ok {
			return fmt.Errorf("linux.namespaces: unknown type %q; use pid, network, mount, ipc, uts, cgroup, user", n.Type)
		}
		if seen[n.Type] {
			return fmt.Errorf("linux.namespaces: %s is listed twice; list each type once", n.Type)
		}
		seen[n.Type] = true
		switch {
		case n.Type == specs.TimeNamespace:
			return errors.New("linux.namespaces asks for a time namespace, which the default stage1's OCI mode does not support yet; drop it")
		case n.Type == specs.CgroupNamespace && n.Path != "":
			return fmt.Errorf("linux.namespaces: cgroup path %s: systemd, the container's init, needs a cgroup namespace of its own rooted at the container's cgroup, so it cannot join another; drop the path", n.Path)
		case n.Type == specs.MountNamespace && n.Path != "":
			return fmt.Errorf("linux.namespaces: mount path %s: systemd, the container's init, needs a mount namespace of its own with the stage1's tree in it, so it cannot join another; drop the path", n.Path)
		}
		if n.Path != "" {
			if err := checkNSPath(n.Path, flag); err != nil {
				return fmt.Errorf("linux.namespaces: %s path %s: %w", n.Type, n.Path, err)
			}
		}
	}
	if !seen[specs.MountNamespace] {
		return errors.New("linux.namespaces has no mount namespace: systemd, the container's init, needs a new one with the stage1's tree in it; add {\"type\": \"mount\"} to linux.namespaces")
	}
	return nil
}

// checkNSPath opens p and asks the kernel what namespace it is.
func checkNSPath(p string, flag int) error {
	f, err := openNS(p, flag)
	if err == nil {
		f.Close()
	}
	return err
}

// openNS opens the namespace file p (without blocking on a FIFO or taking
// a terminal) and checks that it is a namespace of type flag.
func openNS(p string, flag int) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w; name a namespace file such as /proc/PID/ns/TYPE", err)
	}
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	switch {
	case err != nil:
		err = errors.New("not a namespace file; name one such as /proc/PID/ns/TYPE")
	case t != flag:
		err = errors.New("is a namespace of another type")
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// ociNamespaces returns the namespaces the sandbox is made with: the
// bundle's, with a pid namespace given by path replaced by a new one, and
// that path opened: the caller starts the init with its thread's children
// in it (inPIDNS), so that the new one is nested there.
func ociNamespaces(nss []specs.LinuxNamespace) ([]specs.LinuxNamespace, *os.File, error) {
	out := append([]specs.LinuxNamespace(nil), nss...)
	for i, n := range out {
		if n.Type != specs.PIDNamespace || n.Path == "" {
			continue
		}
		f, err := openNS(n.Path, unix.CLONE_NEWPID)
		if err != nil {
			return nil, nil, fmt.Errorf("linux.namespaces: pid path %s: %w", n.Path, err)
		}
		out[i].Path = ""
		return out, f, nil
	}
	return out, nil, nil
}

// inPIDNS runs f with this thread's children going to the pid namespace
// target (see container/nestpid.go), then puts them back in this process's
// own. The caller has locked its OS thread.
func inPIDNS(target *os.File, f func() error) error {
	own, err := os.Open("/proc/thread-self/ns/pid")
	if err != nil {
		return err
	}
	defer own.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWPID); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("linux.namespaces: pid path %s: not a pid namespace below skiff's own", target.Name())
		}
		return fmt.Errorf("linux.namespaces: pid path %s: %w", target.Name(), err)
	}
	errF := f()
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWPID); err != nil {
		// Nothing may be started from this thread any more.
		return errors.Join(errF, fmt.Errorf("back to skiff's own pid namespace: %w", err))
	}
	return errF
}
