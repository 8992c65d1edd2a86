// Package container is the default stage1's one door to runc's libcontainer:
// it turns a Pod (what stage1 decided: rootfs, namespaces, mounts, cgroup) into
// an OCI runtime spec, starts the pod's init with libcontainer, and destroys
// what libcontainer created (cgroups, state) — also after a crash, from the
// state libcontainer keeps on disk. Nothing else in skiff imports libcontainer.
package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/capability"
	_ "github.com/opencontainers/cgroups/devices" // device rules in the pod's cgroup
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/stage1/podfs"

	_ "github.com/opencontainers/runc/libcontainer/nsenter" // joins namespaces for enter
)

// IsInit reports whether this process was started by libcontainer as a
// container's init; main must then call Init before anything else.
func IsInit() bool { return len(os.Args) > 1 && os.Args[1] == "init" }

// Init runs libcontainer's init half. It does not return.
func Init() { libcontainer.Init() }

// Pod is what stage1 decided for the pod's init process and its sandbox.
type Pod struct {
	ID          string        // libcontainer id, unique on the host
	StateRoot   string        // where libcontainer keeps its state (inside the pod dir)
	Rootfs      string        // the mounted stage1 rootfs
	Hostname    string        // UTS hostname
	HostNetwork bool          // share the host's network namespace
	NetNSPath   string        // join this network namespace (set up by stage1) instead of a new one
	CgroupsPath string        // e.g. /skiff/UUID
	Mounts      []specs.Mount // after the base mounts, in order
	Args        []string      // the init's argv
	Env         []string      // the init's environment
	Stdio       [3]*os.File   // the init's stdin, stdout, stderr
	// UserNS, when set, runs the pod in a user namespace of its own with this
	// mapping for uids and gids alike (--private-users). The pod's cgroup2
	// directory is then given to the pod's root, so that its systemd can
	// manage the subtree.
	UserNS *specs.LinuxIDMapping
	// OCI mode (interface v2). Namespaces, when set, replaces the default
	// list: each entry with a Path is joined, the others created (a cgroup
	// namespace is always created: the pod's systemd needs its subtree).
	// Resources and Sysctl apply to the whole sandbox. ExtraFiles become the
	// init's fd 3 on.
	Namespaces []specs.LinuxNamespace
	// UIDMappings and GIDMappings are the mappings of a user namespace
	// Namespaces creates (OCI mode: the bundle's), or of the one it joins
	// by path (UserNSMappings); as with UserNS, the pod's cgroup2 directory
	// is given to the host ids of the pod's root.
	UIDMappings, GIDMappings []specs.LinuxIDMapping
	Resources                *specs.LinuxResources
	Sysctl                   map[string]string
	ExtraFiles               []*os.File
	// ConsoleSocket, when set, receives the master of a pty libcontainer
	// makes in the pod during Create; the slave is the init's stdio.
	ConsoleSocket *os.File
	// Devices are made after the mounts, at their Path in the sandbox (an
	// app's: under its root), with cgroup rules that allow them.
	Devices []specs.LinuxDevice
	// RootPropagation is the sandbox's rootfsPropagation (OCI mode: the
	// bundle's, so that its rshared volumes stay peers of the host's);
	// empty is libcontainer's default, rslave.
	RootPropagation string
}

// Spec is the OCI runtime spec of the pod's sandbox: new mount, PID, UTS, IPC
// and cgroup namespaces (and network unless HostNetwork, and user when
// UserNS), cgroup2 mounted at /sys/fs/cgroup so the pod's systemd sees a
// delegated subtree (it writes into the host's v1 roots otherwise), and every
// capability the host allows (the pod's systemd needs them; apps get less).
func Spec(p Pod) (*specs.Spec, error) {
	caps, err := boundingSet()
	if err != nil {
		return nil, err
	}
	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
		{Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}, {Type: specs.CgroupNamespace}}
	if !p.HostNetwork {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.NetNSPath})
	}
	if p.Namespaces != nil {
		ns = append([]specs.LinuxNamespace(nil), p.Namespaces...)
		if !hasNamespace(ns, specs.CgroupNamespace) {
			ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		}
	}
	res := p.Resources
	if res == nil {
		res = &specs.LinuxResources{}
	}
	for _, d := range p.Devices {
		t := d.Type
		switch t {
		case "u":
			t = "c"
		case "p":
			continue // a FIFO: no device rule
		}
		major, minor := d.Major, d.Minor
		res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: t, Major: &major, Minor: &minor, Access: "rwm"})
	}
	uids, gids := p.UIDMappings, p.GIDMappings
	if p.UserNS != nil {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace})
		uids = []specs.LinuxIDMapping{*p.UserNS}
		gids = uids
	}
	if p.UserNS == nil && !CreatesNamespace(ns, specs.UserNamespace) {
		uids, gids = nil, nil // one joined by path has its own (rootOf uses them)
	}
	// sysfs can be mounted in a user namespace only for a network
	// namespace it owns: one made with it (OCI mode), not a CNI network's
	// or the host's (see podfs.Sysfs).
	bindSys := p.UserNS != nil || hasNamespace(ns, specs.UserNamespace) && !CreatesNamespace(ns, specs.NetworkNamespace)
	return &specs.Spec{
		Version: specs.Version,
		// The stage1's own files are read-only to the pod: what its
		// systemd runs as root (app-exec, app-exited) cannot be changed
		// from inside it. /run, /tmp and the mounts below are writable.
		Root:     &specs.Root{Path: p.Rootfs, Readonly: true},
		Hostname: p.Hostname,
		Process: &specs.Process{
			Args: p.Args, Env: p.Env, Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: append(BaseMounts(bindSys), p.Mounts...),
		Linux: &specs.Linux{
			Namespaces:        ns,
			RootfsPropagation: p.RootPropagation,
			UIDMappings:       uids,
			GIDMappings:       gids,
			CgroupsPath:       p.CgroupsPath,
			Resources:         res,
			Sysctl:            p.Sysctl,
			Devices:           p.Devices,
			MaskedPaths: []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}, nil
}

// CreatesNamespace says whether ns makes a new namespace of type t (listed
// without a path).
func CreatesNamespace(ns []specs.LinuxNamespace, t specs.LinuxNamespaceType) bool {
	for _, n := range ns {
		if n.Type == t && n.Path == "" {
			return true
		}
	}
	return false
}

func hasNamespace(ns []specs.LinuxNamespace, t specs.LinuxNamespaceType) bool {
	for _, n := range ns {
		if n.Type == t {
			return true
		}
	}
	return false
}

// BaseMounts are the API filesystems of the pod's init (userns: the pod has
// a user namespace of its own).
func BaseMounts(userns bool) []specs.Mount {
	nse := []string{"nosuid", "noexec", "nodev"}
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: nse},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: nse},
	}
	ms = append(ms, podfs.Sysfs("/sys", userns))
	if userns {
		// /sys is the host's, bound with its submounts: on a pure cgroup2
		// host /sys/fs/cgroup is then the host's cgroup2 mount, and the
		// kernel refuses the same superblock stacked on its own root
		// (EBUSY). A tmpfs in between, as crun does.
		ms = append(ms, specs.Mount{Destination: "/sys/fs/cgroup", Type: "tmpfs", Source: "tmpfs", Options: append([]string{"mode=755", "size=64k"}, nse...)})
	}
	return append(ms,
		specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup2", Source: "cgroup2", Options: nse},
		specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755"}},
		specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
	)
}

// App is what the sandbox needs to know to give an app its filesystem: its
// rootfs overlay, and the rest (package podfs).
type App struct {
	podfs.App
	Lowerdir    string // the overlay's lowerdir (see internal/overlay)
	Upper, Work string // the overlay's upper and work directories
	// Mounted says that stage1 has already mounted the app's rootfs at Root
	// (pods with a user namespace: an overlay of idmapped layers, which only
	// the host can make); otherwise the sandbox mounts the overlay from
	// Lowerdir, Upper and Work.
	Mounted bool
	// Bind, when set, is a directory bind-mounted at Root as the app's
	// rootfs, in place (OCI mode: the bundle's rootfs), instead of the
	// overlay.
	Bind string
}

// AppMounts are the mounts that make an app's rootfs: the overlay of its
// layers (unless Mounted), then podfs's: its own /proc, /sys and a minimal
// /dev, its volumes, the kernel paths it must not see or change, and a
// read-only remount when asked. stage1Rootfs is the stage1 rootfs as the
// sandbox sees it before pivot_root. A mount target that does not resolve
// inside the app's rootfs (a symlink loop, the app's root itself) is an
// error.
func AppMounts(stage1Rootfs string, a App) ([]specs.Mount, error) {
	var ms []specs.Mount
	switch {
	case a.Bind != "":
		ms = append(ms, specs.Mount{Destination: a.Root, Type: "bind", Source: a.Bind, Options: []string{"rbind"}})
	case !a.Mounted:
		ms = append(ms, specs.Mount{Destination: a.Root, Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + a.Lowerdir, "upperdir=" + a.Upper, "workdir=" + a.Work}})
	}
	fs, err := podfs.ResolveMounts(stage1Rootfs, a.App)
	if err != nil {
		return nil, err
	}
	return append(ms, fs...), nil
}

// boundingSet lists the capabilities in this process's bounding set: asking for
// one the host withholds (CAP_SYS_RESOURCE on some VMs) makes the start fail.
func boundingSet() ([]string, error) {
	var caps []string
	for _, c := range capability.ListKnown() {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			continue // newer than this kernel
		}
		if err != nil {
			return nil, fmt.Errorf("read capability bounding set: %w", err)
		}
		if in == 1 {
			caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return caps, nil
}

// Running is a started pod init.
type Running struct {
	c *libcontainer.Container
	p *libcontainer.Process
}

// Start creates the container and execs its init; it returns once the init
// runs. The pod dies with this process (SIGKILL as parent-death signal), so a
// killed stage1 never leaves a pod behind.
func Start(pod Pod) (*Running, error) {
	c, p, err := create(pod, true)
	if err != nil {
		return nil, err
	}
	if pod.UserNS != nil {
		err = delegateCgroup(c, int(pod.UserNS.HostID), int(pod.UserNS.HostID))
	}
	if err == nil {
		err = c.Exec()
	}
	if err != nil {
		_ = c.Destroy()
		return nil, fmt.Errorf("start pod init: %w", err)
	}
	return &Running{c: c, p: p}, nil
}

// create makes the container and starts its init, which then waits before
// its exec for someone to open ExecFIFO. dieWithUs sets SIGKILL as the
// init's parent-death signal.
func create(pod Pod, dieWithUs bool) (*libcontainer.Container, *libcontainer.Process, error) {
	spec, err := Spec(pod)
	if err != nil {
		return nil, nil, err
	}
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: pod.ID, Spec: spec, NoNewKeyring: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("pod sandbox config: %w", err)
	}
	if dieWithUs {
		config.ParentDeathSignal = int(syscall.SIGKILL)
	}
	c, err := libcontainer.Create(pod.StateRoot, pod.ID, config)
	if err != nil {
		return nil, nil, fmt.Errorf("create pod sandbox: %w", err)
	}
	p := &libcontainer.Process{
		Args: pod.Args, Env: pod.Env, Cwd: "/", Init: true,
		Stdin: pod.Stdio[0], Stdout: pod.Stdio[1], Stderr: pod.Stdio[2],
		ExtraFiles: pod.ExtraFiles, ConsoleSocket: pod.ConsoleSocket,
	}
	// Start leaves the init waiting before its exec, with its cgroups made.
	if err := c.Start(p); err != nil {
		_ = c.Destroy()
		return nil, nil, fmt.Errorf("start pod init: %w", err)
	}
	return c, p, nil
}

// ExecFIFO is the FIFO a created init (Create) waits on, in the container's
// state directory: opening it for reading lets the init exec.
func ExecFIFO(stateRoot, id string) string { return filepath.Join(stateRoot, id, "exec.fifo") }

// Create makes the container and starts its init, which waits before its
// exec until ExecFIFO is opened (runc's create; OCI mode). The init outlives
// this process: no parent-death signal. It returns the init's host pid.
func Create(pod Pod) (int, error) {
	c, p, err := create(pod, false)
	if err != nil {
		return 0, err
	}
	if uid, gid, ok := rootOf(pod); ok {
		if err := delegateCgroup(c, uid, gid); err != nil {
			_ = c.Destroy()
			return 0, err
		}
	}
	return p.Pid()
}

// rootOf is the host uid and gid of the root of a user namespace the pod
// creates with UIDMappings and GIDMappings (ok false: none, or its root is
// not mapped).
func rootOf(pod Pod) (uid, gid int, ok bool) {
	if pod.UserNS != nil {
		return int(pod.UserNS.HostID), int(pod.UserNS.HostID), true
	}
	root := func(ms []specs.LinuxIDMapping) int {
		for _, m := range ms {
			if m.ContainerID == 0 && m.Size > 0 {
				return int(m.HostID)
			}
		}
		return -1
	}
	uid, gid = root(pod.UIDMappings), root(pod.GIDMappings)
	return uid, gid, uid >= 0 && gid >= 0
}

// delegateCgroup gives the pod's cgroup2 directory to the pod's root (host
// uid and gid owner), as cgroup v2 delegation does (cgroups(7)): the
// directory and its cgroup.procs, cgroup.threads and cgroup.subtree_control.
// The pod's systemd, root only in its user namespace, then manages the
// subtree below; the v1 hierarchies stay the host's (limits are applied from
// the host, and the pod's systemd does not see them).
func delegateCgroup(c *libcontainer.Container, uid, gid int) error {
	st, err := c.State()
	if err != nil {
		return err
	}
	dir := st.CgroupPaths[""] // the cgroup2 tree, hybrid or unified
	if dir == "" {
		return nil
	}
	for _, p := range []string{dir, dir + "/cgroup.procs", dir + "/cgroup.threads", dir + "/cgroup.subtree_control"} {
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("delegate the pod's cgroup to its root: %w", err)
		}
	}
	return nil
}

// Pid is the init's host pid.
func (r *Running) Pid() int {
	pid, _ := r.p.Pid()
	return pid
}

// Signal sends sig to the init.
func (r *Running) Signal(sig os.Signal) error { return r.p.Signal(sig) }

// Wait waits for the init to end.
func (r *Running) Wait() (*os.ProcessState, error) { return r.p.Wait() }

// Destroy removes the cgroups and state of the ended pod.
func (r *Running) Destroy() error { return destroy(r.c) }

// Destroy removes what libcontainer left for id under stateRoot (after a crash
// of stage1): remaining processes are killed and the cgroups removed. A pod
// libcontainer never created is not an error.
func Destroy(stateRoot, id string) error {
	c, err := libcontainer.Load(stateRoot, id)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("load pod sandbox state: %w", err)
	}
	if st, err := c.Status(); err == nil && st != libcontainer.Stopped {
		_ = c.Signal(unix.SIGKILL)
	}
	return destroy(c)
}

// destroy is c.Destroy; when the pod's init still runs, its error says what
// holds it (holders), so that a gc that gives up tells why.
func destroy(c *libcontainer.Container) error {
	err := c.Destroy()
	if errors.Is(err, libcontainer.ErrRunning) {
		if st, serr := c.State(); serr == nil && st.InitProcessPid > 0 {
			var dirs []string
			for _, d := range st.CgroupPaths {
				dirs = append(dirs, d)
			}
			slices.Sort(dirs)
			err = fmt.Errorf("%w: %s", err, holders("/proc", st.InitProcessPid, dirs))
		}
	}
	return err
}

// Exec runs argv inside the running pod id (its namespaces and cgroup) with
// this process's stdio, and returns its exit code. subCgroups, when not
// empty, puts the process in cgroups below the pod's (controller name ->
// path relative to the pod's cgroup; see libcontainer's SubCgroupPaths)
// before it runs.
func Exec(stateRoot, id string, argv []string, subCgroups map[string]string) (int, error) {
	return ExecWith(stateRoot, id, argv, ExecOpts{SubCgroups: subCgroups})
}

// ExecOpts are ExecWith's options.
type ExecOpts struct {
	SubCgroups map[string]string // as for Exec
	// ExtraFiles become the process's fd 3 on.
	ExtraFiles []*os.File
	// Detach returns once the process runs, without waiting for it; PidFile
	// then receives its host pid (it is this process's child until we exit,
	// then the subreaper's).
	Detach  bool
	PidFile string
	// Started, when set, is called once the process runs, before the wait:
	// signal sends it a signal.
	Started func(pid int, signal func(os.Signal) error)
}

// ExecWith is Exec with options; with Detach the code is 0.
func ExecWith(stateRoot, id string, argv []string, o ExecOpts) (int, error) {
	c, err := libcontainer.Load(stateRoot, id)
	if err != nil {
		return 0, fmt.Errorf("load pod sandbox: %w", err)
	}
	p := &libcontainer.Process{
		Args: argv, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Cwd: "/",
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		SubCgroupPaths: o.SubCgroups, ExtraFiles: o.ExtraFiles,
	}
	if err := c.Run(p); err != nil {
		return 0, fmt.Errorf("exec in pod: %w", err)
	}
	if o.PidFile != "" {
		pid, _ := p.Pid()
		// The caller's path: never through a link planted there or at a
		// temporary name next to it.
		if err := atomicfile.WriteFile(o.PidFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
			_ = p.Signal(unix.SIGKILL)
			return 0, fmt.Errorf("write pid file: %w", err)
		}
	}
	if o.Detach {
		return 0, nil
	}
	if o.Started != nil {
		pid, _ := p.Pid()
		o.Started(pid, p.Signal)
	}
	st, err := p.Wait()
	if st == nil {
		return 0, err
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return st.ExitCode(), nil
}

// InitCgroups is the init's host pid of the created or running container
// id and its cgroup directories (one per hierarchy, sorted), where a process
// joins it (app-as-init's exec, which libcontainer's cannot do: it would
// join the mount namespace of the init, which is the app's own).
func InitCgroups(stateRoot, id string) (int, []string, error) {
	c, err := libcontainer.Load(stateRoot, id)
	if err != nil {
		return 0, nil, fmt.Errorf("load pod sandbox: %w", err)
	}
	if st, err := c.Status(); err != nil || (st != libcontainer.Running && st != libcontainer.Created) {
		return 0, nil, fmt.Errorf("pod sandbox is not running (%v)", err)
	}
	st, err := c.State()
	if err != nil {
		return 0, nil, err
	}
	var dirs []string
	for _, d := range st.CgroupPaths {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	return st.InitProcessPid, dirs, nil
}

// UserNSMappings are the uid and gid mappings of the user namespace at path
// (a /proc/PID/ns/user or a bind mount of one), as libcontainer reads them
// when it is to join it.
func UserNSMappings(path string) (uids, gids []specs.LinuxIDMapping, err error) {
	spec := &specs.Spec{
		Version: specs.Version, Root: &specs.Root{Path: "/"},
		Process: &specs.Process{Args: []string{"/bin/true"}, Cwd: "/"},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: path}}},
	}
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: "userns-mappings", Spec: spec})
	if err != nil {
		return nil, nil, err
	}
	conv := func(ms []configs.IDMap) []specs.LinuxIDMapping {
		out := make([]specs.LinuxIDMapping, len(ms))
		for i, m := range ms {
			out[i] = specs.LinuxIDMapping{ContainerID: uint32(m.ContainerID), HostID: uint32(m.HostID), Size: uint32(m.Size)}
		}
		return out
	}
	return conv(config.UIDMappings), conv(config.GIDMappings), nil
}
