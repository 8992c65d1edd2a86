package appexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/units"
)

// An app's root. app-exec gives the app a mount namespace of its own and
// pivot_roots into the app's rootfs there (what runc and systemd-nspawn do):
// the stage1's tree is then not in the app's mount namespace at all, so no
// working directory, symbolic link or chroot(2) trick reaches the stage1's
// binaries or the apps' config.json. Every path taken from the image (the
// working directory, /etc/passwd, /etc/group) is then opened with
// openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), so that neither a symbolic
// link nor a /proc magic link (/proc/1/root is the pod's systemd's root)
// leads out of it.

// joinAppsMountNS moves this thread into the apps' mount namespace at p
// (AppsMountNSFile) when there is one: nothing there, nothing to do.
func joinAppsMountNS(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("the apps' mount namespace: %w", err)
	}
	defer unix.Close(fd)
	// setns(CLONE_NEWNS) needs a thread that shares its root and cwd with
	// no other: Go's threads share theirs.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare the thread's fs information: %w", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join the apps' mount namespace %s: %w", p, err)
	}
	return nil
}

// enterRoot makes root this thread's root, in a mount namespace of its own
// (the caller has locked its OS thread, and execs from it). The stage1's
// mount tree is detached from that namespace. inRoot, when set, runs once
// root is the root, before the root is made unbindable (a bind from it
// would fail then).
func enterRoot(root string, inRoot func() error) error {
	if err := joinAppsMountNS(AppsMountNSFile); err != nil {
		return err
	}
	// CLONE_NEWNS implies CLONE_FS: this thread gets its own root and cwd.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	// The pod's systemd shares its mounts (rshared /): nothing done here may
	// propagate back into the pod's namespace. In OCI mode, the volumes the
	// bundle mounts shared (rshared, shared) stay so: the app's mounts in
	// them reach the host, as with runc.
	shared, err := sharedMounts(SharedMountsFile)
	if err != nil {
		return err
	}
	unbindable, err := rootUnbindable(RootPropagationFile)
	if err != nil {
		return err
	}
	if len(shared) == 0 {
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make the mount tree a slave: %w", err)
		}
	} else if err := slaveAllBut(shared); err != nil {
		return err
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind its rootfs on itself: %w", err)
	}
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the old root: %w", err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	// pivot_root(".", "."): the old root ends up stacked on the new one, and
	// unmounting "." detaches it (no directory for it needed in the image).
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into its rootfs: %w", err)
	}
	// "." is then the new root's directory: change to the old root's, so
	// that what follows applies to the old root's tree only (as runc does),
	// not to the new root's shared mounts.
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("change to the old root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the old root a slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the stage1's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if inRoot != nil {
		if err := inRoot(); err != nil {
			return err
		}
	}
	// An unbindable root (OCI mode's rootfsPropagation) is the app's: made
	// so once it is the root, as runc does after pivot_root (the sandbox's
	// root cannot be, or nothing could be bound from it at create).
	if unbindable != 0 {
		if err := unix.Mount("", "/", "", unbindable, ""); err != nil {
			return fmt.Errorf("make the root unbindable: %w", err)
		}
	}
	return nil
}

// joinAppMountNS moves this thread into the mount namespace of app's
// oldest process that is in a mount namespace other than this thread's (its
// main process, or what is left of it), so that enter sees the mounts the
// app made itself. It says false, and changes nothing, when there is no such
// namespace to join: no process of the app's but this one, or only
// processes still in the pod's own namespace (app-exec before it entered the
// app's root, or the supervisor of an app in a pid namespace of its own);
// the caller then builds the app's root afresh. The caller is already in the
// app's cgroup (joinAppCgroup), has done what needs the pod's /proc, and from
// here on trusts nothing in the app's tree (it opens paths with openInRoot,
// as for a fresh root).
func joinAppMountNS(app string) (bool, error) {
	procs := filepath.Join(appCgroup(app), "cgroup.procs")
	// The namespace joined is the one vetted (see vettedNS).
	ns, err := vettedNS(procs, "mnt")
	if err != nil || ns == nil {
		return false, err
	}
	defer ns.Close()
	// setns(CLONE_NEWNS) needs a thread that shares no fs information.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return false, fmt.Errorf("unshare the thread's fs information: %w", err)
	}
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
		return false, fmt.Errorf("join the app's mount namespace: %w", err)
	}
	// setns made the namespace's root this thread's root and cwd
	return true, unix.Chdir("/")
}

// oldestOther is the process listed in procs (a cgroup.procs file) that
// started first among those want accepts, this one aside; 0 when there is
// none.
func oldestOther(procs string, want func(pid int) bool) (int, error) {
	b, err := os.ReadFile(procs)
	if err != nil {
		return 0, fmt.Errorf("the app's processes: %w", err)
	}
	best, bestStart := 0, uint64(0)
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid == os.Getpid() || !want(pid) {
			continue
		}
		start, ok := startTime(pid)
		if ok && (best == 0 || start < bestStart || start == bestStart && pid < best) {
			best, bestStart = pid, start
		}
	}
	return best, nil
}

// startTime is when pid started (field 22 of /proc/PID/stat, in clock
// ticks since boot).
func startTime(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// the command (field 2) may hold spaces and parentheses: count after its last ')'
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

func inCgroupProcs(procs string, pid int) (bool, error) {
	b, err := os.ReadFile(procs)
	if err != nil {
		return false, fmt.Errorf("the app's processes: %w", err)
	}
	for _, f := range strings.Fields(string(b)) {
		if f == strconv.Itoa(pid) {
			return true, nil
		}
	}
	return false, nil
}

// inRootResolve scopes a lookup to the process's root, with no magic links.
const inRootResolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// openInRoot opens path (absolute or not, from the image) inside the
// process's root: ".." and symbolic links, absolute ones included, stay in
// it, and /proc magic links are refused.
func openInRoot(path string, flags int) (*os.File, error) {
	rootfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/", Err: err}
	}
	defer unix.Close(rootfd)
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: inRootResolve}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(rootfd, path, how)
		if err == unix.EAGAIN && try < 16 { // a concurrent rename; the kernel asks to retry
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// chdirInRoot makes dir (from the spec) the working directory, resolved
// inside the root, and checks that the result is inside it (as runc does
// since CVE-2024-21626).
func chdirInRoot(dir string) error {
	f, err := openInRoot(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fchdir(int(f.Fd())); err != nil {
		return err
	}
	wd, err := unix.Getwd()
	if err != nil || !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("%s is not inside the app's rootfs", dir)
	}
	return nil
}

// readInRoot returns a reader of path inside the root, nil when it cannot be
// opened (as user.GetExecUserPath treats a missing /etc/passwd).
func readInRoot(path string) (io.ReadCloser, bool) {
	f, err := openInRoot(path, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK)
	if err != nil {
		return nil, false
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, false
	}
	return f, true
}

// closeExtraFDs marks every descriptor from keep on close-on-exec, so that
// nothing app-exec or whoever started it had open reaches the app (runc:
// CloseExecFrom; CVE-2024-21626 was a leaked descriptor).
func closeExtraFDs(keep int) error {
	err := unix.CloseRange(uint(keep), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("close-on-exec descriptors from %d: %w", keep, err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list descriptors: %w", err)
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err == nil && fd >= keep {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// cgroupRoot is the pod's cgroup2 tree as the pod's systemd sees it.
const cgroupRoot = "/sys/fs/cgroup"

// appCgroup is app's cgroup in the pod's cgroup2 tree: its unit's, or with
// app-as-init (hostpid.go) the container's own, the tree's root.
func appCgroup(app string) string {
	if appInit() {
		return cgroupRoot
	}
	return filepath.Join(cgroupRoot, "system.slice", units.ServiceName(app))
}

// appStartWait is how long enter waits for a starting app's unit.
const appStartWait = 30 * time.Second

// joinAppCgroup moves this process into app's service cgroup in the pod's
// cgroup2 tree (enter; the app's v1 cgroups are joined from the host).
// A pod that was just started may not have started the app's unit yet: wait
// for its cgroup while the app has not ended.
func joinAppCgroup(app string) error {
	dir := appCgroup(app)
	exited := filepath.Join(AppsDir, app, abi.AppExitFile)
	for deadline := time.Now().Add(appStartWait); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		if _, err := os.Lstat(exited); err == nil {
			return fmt.Errorf("app %s has exited; there is nothing to enter (see 'skiff status')", app)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("app %s has not started within %s (no cgroup %s); check the pod with 'skiff status'", app, appStartWait, dir)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0); err != nil {
		return fmt.Errorf("join the app's cgroup: %w", err)
	}
	return nil
}

// setOOMScoreAdj gives this process the app's OOM score adjustment.
func setOOMScoreAdj(adj int) error {
	want := strconv.Itoa(adj)
	if b, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil && strings.TrimSpace(string(b)) == want {
		return nil
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(want), 0); err != nil {
		return fmt.Errorf("OOM score adjustment %s: %w", want, err)
	}
	return nil
}

// SharedMountsFile, in the stage1's rootfs (out of the apps' reach), lists
// the mount points (in the pod's namespace, one a line) of the app's mounts
// that the bundle asked to be shared (OCI mode: oci-create writes it; in the
// default mode there is none).
const SharedMountsFile = "/etc/skiff/oci-shared-mounts"

// RootPropagationFile, in the stage1's rootfs, holds "unbindable" or
// "runbindable" when an OCI bundle's rootfsPropagation asks for it (oci-create
// writes it; the sandbox keeps the default propagation then).
const RootPropagationFile = "/etc/skiff/oci-root-propagation"

// rootUnbindable reads RootPropagationFile at p: the mount flags that make
// the app's root what it asks, or 0 (no file: nothing asked).
func rootUnbindable(p string) (uintptr, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("root propagation: %w", err)
	}
	switch strings.TrimSpace(string(b)) {
	case "unbindable":
		return unix.MS_UNBINDABLE, nil
	case "runbindable":
		return unix.MS_UNBINDABLE | unix.MS_REC, nil
	}
	return 0, fmt.Errorf("root propagation: %s holds %q, want unbindable or runbindable", p, b)
}

// sharedMounts reads SharedMountsFile at p; no file is no shared mount.
func sharedMounts(p string) ([]string, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shared mounts: %w", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); filepath.IsAbs(l) && filepath.Clean(l) != "/" {
			out = append(out, filepath.Clean(l))
		}
	}
	return out, nil
}

// slaveAllBut makes every mount of this thread's mount namespace a slave
// (as MS_SLAVE|MS_REC on / would), except those at or below the shared
// mount points, which stay peers of the pod's. A mount that is not reachable
// by its path (covered by another) is left: nothing here mounts on it, and
// enterRoot makes the whole old root a slave before it detaches it.
func slaveAllBut(shared []string) error {
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	kept := func(p string) bool {
		for _, s := range shared {
			if p == s || strings.HasPrefix(p, s+"/") {
				return true
			}
		}
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if kept(mp) {
			continue
		}
		err := unix.Mount("", mp, "", unix.MS_SLAVE, "")
		if err != nil && mp == "/" {
			return fmt.Errorf("make the mount tree a slave: %w", err)
		}
	}
	return nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out = append(out, byte(n))
				i += 3
				continue
			}
		}
		out = append(out, s[i])
	}
	return string(out)
}
