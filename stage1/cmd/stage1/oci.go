package main

// OCI mode (interface v2, stage1/README.md "OCI mode"): oci-create sets up a
// bundle's container with systemd as its init and returns, leaving the init
// waiting for start; no process of stage1 stays on the host. The pieces are
// run's: the units, the stage1 rootfs overlay, the sandbox of package
// container, app-exec. What differs: the bundle's namespaces (created or
// joined by path), cgroup path, resources and sysctls make the sandbox; the
// app's rootfs is the bundle's, bind-mounted in place; and the caller's stdio
// (or the pty libcontainer made for --console-socket) reaches the app through a keeper
// process inside the pod (oci-stdio), which pod-init starts before it execs
// systemd and which serves app-exec's hand-over once.

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/internal/overlay"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
	"github.com/skiff-project/skiff/stage1/container"
	"github.com/skiff-project/skiff/stage1/podfs"
	"github.com/skiff-project/skiff/stage1/stdio"
	"github.com/skiff-project/skiff/stage1/units"
)

// ociOpts are oci-create's flags.
type ociOpts struct {
	consoleSocket string
	systemdCgroup bool
	preserveFDs   int
	id            string
}

func parseOCICreate(args []string) (ociOpts, runOpts, error) {
	var o ociOpts
	var ro runOpts
	fs := flag.NewFlagSet("oci-create", flag.ContinueOnError)
	fs.StringVar(&o.consoleSocket, "console-socket", "", "unix socket that receives the pty master")
	fs.BoolVar(&o.systemdCgroup, "systemd-cgroup", false, "cgroupsPath is slice:prefix:name")
	fs.BoolVar(&ro.Debug, "debug", false, "say what happens")
	fs.IntVar(&o.preserveFDs, "preserve-fds", 0, "pass fds 3 to 3+N-1 to the app")
	if err := fs.Parse(args); err != nil {
		return o, ro, err
	}
	if fs.NArg() != 1 || o.preserveFDs < 0 || o.preserveFDs > stdio.MaxExtra {
		return o, ro, fmt.Errorf("usage: oci-create [--console-socket=PATH] [--systemd-cgroup] [--debug] [--preserve-fds=N] ID")
	}
	o.id = fs.Arg(0)
	ro.UUID, ro.Start = o.id, time.Now()
	var err error
	ro.PodDir, err = os.Getwd()
	return o, ro, err
}

// ociCreateMain: oci-create [flags] ID, in the pod directory.
func ociCreateMain(args []string) error {
	o, ro, err := parseOCICreate(args)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	var m abi.PodManifest
	if err := abi.ReadJSON(abi.PodManifestFile, &m); err != nil {
		return fmt.Errorf("container %s: %w", o.id, err)
	}
	if err := ociCreate(o, ro, &m); err != nil {
		return fmt.Errorf("container %s: %w", o.id, err)
	}
	return nil
}

func ociCreate(o ociOpts, ro runOpts, m *abi.PodManifest) error {
	if len(m.Apps) != 1 {
		return fmt.Errorf("an OCI pod has one app, pod.json lists %d", len(m.Apps))
	}
	app := m.Apps[0]
	// libcontainer's move of the pod's init into its cgroup (cgroupwarm.go);
	// the pod's systemd's own moves come after start, when no skiff process
	// is left on the host to do this.
	defer warmCgroupMoves(ro, warmMax)()
	r := &runningPod{o: ro, m: m, specs: map[string]*specs.Spec{}, gone: make(chan struct{}), exitWithApp: true}
	defer dropScratch() // the overlay, if mounted, keeps it
	if err := r.writeUnits(); err != nil {
		return err
	}
	spec := r.specs[app.Name]
	if err := checkOCISpec(spec, o); err != nil {
		return err
	}
	var err error
	if r.users, err = newOCIUsers(spec.Linux); err != nil { // oci_users.go
		return err
	}
	r.cgroup = ociCgroupPath(spec.Linux.CgroupsPath, o.id, o.systemdCgroup)
	// gc removes it by name when a crash left it without libcontainer state
	// (written whole or not at all: gc refuses an empty name).
	if err := atomicfile.Write(s1OCICgroup, []byte(r.cgroup), 0o644); err != nil {
		return err
	}
	rootfs := filepath.Join(ro.PodDir, s1Rootfs)
	if r.users != nil {
		rootfs, err = r.users.ociMountUsersRootfs(m)
	} else {
		err = overlay.Mount(m.Stage1.Rootfs.Layers, s1Upper, s1Work, rootfs)
	}
	if err != nil {
		return fmt.Errorf("mount stage1 rootfs: %w", err)
	}
	// The sandbox keeps its own copy of the mount; the host's goes now.
	defer unix.Unmount(rootfs, unix.MNT_DETACH)
	sb, err := r.ociSandbox(rootfs, app, spec, o)
	if err != nil {
		return err
	}
	appInit, nss, err := ociAppInitNS(spec.Linux.Namespaces) // oci_hostpid.go
	if err != nil {
		return err
	}
	nss, pidNS, err := ociNamespaces(nss)
	if err != nil {
		return err
	}
	if pidNS != nil {
		defer pidNS.Close()
	}
	sb.Namespaces = nss
	if err := ociRootPropagation(rootfs, &sb, spec.Linux.RootfsPropagation); err != nil {
		return err
	}
	if err := writeOCISharedMounts(rootfs, sb.Mounts); err != nil {
		return err
	}
	if err := ociAppPIDNS(rootfs, spec.Linux.Namespaces); err != nil {
		return err
	}
	if appInit {
		if err := ociAppInit(rootfs, &sb, app.Name, o.preserveFDs); err != nil {
			return err
		}
	}
	if o.consoleSocket != "" && spec.Process.Terminal {
		// libcontainer makes the pty in the pod and sends its master now,
		// during create, as runc does (conmon waits for it before start);
		// the slave is the init's stdio, and pod-init makes it the app's
		// (see podInitOCI).
		c, err := net.Dial("unix", o.consoleSocket)
		if err != nil {
			return fmt.Errorf("console socket %s: %w", o.consoleSocket, err)
		}
		defer c.Close()
		if sb.ConsoleSocket, err = c.(*net.UnixConn).File(); err != nil {
			return err
		}
		defer sb.ConsoleSocket.Close()
		sb.Args[2] += ":tty"
	}
	var pid int
	create := func() (err error) {
		pid, err = container.Create(sb)
		return err
	}
	if pidNS != nil {
		err = inPIDNS(pidNS, create) // ociCreateMain has locked this thread
	} else {
		err = create()
	}
	if err != nil {
		return err
	}
	ro.Debugf("sandbox created, init pid %d, cgroup %s", pid, r.cgroup)
	if appInit {
		err = holdSandboxMountNS(pid)
	}
	// start opens start.fifo: a second name of libcontainer's exec FIFO.
	if err == nil {
		err = os.Link(container.ExecFIFO(abs(s1State), containerID(o.id)), abi.OCIStartFIFO)
	}
	if err == nil {
		err = atomicfile.Write(abi.PIDFile, []byte(strconv.Itoa(pid)+"\n"), 0o644)
	}
	if err == nil {
		err = os.WriteFile(abi.OCICreatedFile, nil, 0o644)
	}
	if err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return err
	}
	return nil
}

// checkOCISpec refuses what this flavor cannot honour rather than run it
// differently.
func checkOCISpec(spec *specs.Spec, o ociOpts) error {
	if spec.Linux == nil || spec.Process == nil {
		return errors.New("config.json needs linux and process sections")
	}
	if err := checkOCINamespaces(spec.Linux.Namespaces); err != nil {
		return err
	}
	if err := checkOCIUsers(spec.Linux); err != nil {
		return err
	}
	switch spec.Linux.RootfsPropagation {
	case "", "shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable":
	default:
		return fmt.Errorf("linux.rootfsPropagation: %q is none of shared, rshared, slave, rslave, private, rprivate, unbindable, runbindable", spec.Linux.RootfsPropagation)
	}
	for _, r := range spec.Process.Rlimits {
		if !appexec.KnownRlimit(r.Type) {
			return fmt.Errorf("process.rlimits: unknown type %q; use one of the RLIMIT_* names of getrlimit(2)", r.Type)
		}
	}
	if err := appexec.CheckAppArmor(spec.Process.ApparmorProfile); err != nil {
		return err
	}
	if spec.Process.Terminal && o.consoleSocket == "" {
		return errors.New("process.terminal is set: pass --console-socket")
	}
	return nil
}

// ociRootPropagation applies the bundle's rootfsPropagation: shared, slave
// or private is the sandbox's (its volumes stay peers of the host's, or
// not); unbindable is the app's root's alone, which app-exec makes so after
// pivot_root (RootPropagationFile, in the stage1's rootfs): an unbindable
// sandbox root would refuse the binds of the pod's own directories.
func ociRootPropagation(rootfs string, sb *container.Pod, prop string) error {
	if prop != "unbindable" && prop != "runbindable" {
		sb.RootPropagation = prop
		return nil
	}
	p := filepath.Join(rootfs, appexec.RootPropagationFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(prop+"\n"), 0o644)
}

// ociAppPIDNS makes the app PID 1 of a pid namespace of its own, nested in
// the container's, whose PID 1 is systemd, when the bundle asks for a new pid
// namespace (runc's view: /proc/1 is the app): it writes
// appexec.NestedPIDFile in the stage1's rootfs, out of the apps' reach. A pid
// namespace joined by path (a Kubernetes pod's shared one) keeps systemd's
// namespace as the app's.
func ociAppPIDNS(rootfs string, nss []specs.LinuxNamespace) error {
	if !container.CreatesNamespace(nss, specs.PIDNamespace) {
		return nil
	}
	p := filepath.Join(rootfs, appexec.NestedPIDFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, nil, 0o644)
}

// writeOCISharedMounts lists, for app-exec, the app's mounts the bundle asks
// to be shared (rshared, shared: a Kubernetes Bidirectional volume), so that
// the app's own mount namespace keeps them peers of the pod's (and, with
// rootfsPropagation rshared, of the host's). It is written in the stage1's
// rootfs, out of the apps' reach.
func writeOCISharedMounts(rootfs string, ms []specs.Mount) error {
	var b strings.Builder
	for _, m := range ms {
		for _, opt := range m.Options {
			if (opt == "shared" || opt == "rshared") && !strings.Contains(m.Destination, "\n") {
				b.WriteString(m.Destination + "\n")
				break
			}
		}
	}
	if b.Len() == 0 {
		return nil
	}
	p := filepath.Join(rootfs, appexec.SharedMountsFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(b.String()), 0o644)
}

// ociCgroupPath is the container's cgroup: cgroupsPath as given (cgroupfs),
// or with --systemd-cgroup slice:prefix:name as systemd would place it
// (SLICE-PATH/PREFIX-NAME.scope); /skiff-oci/ID when none is given.
func ociCgroupPath(cgroupsPath, id string, systemdCgroup bool) string {
	if !systemdCgroup {
		if cgroupsPath == "" {
			return "/skiff-oci/" + id
		}
		return path.Join("/", cgroupsPath)
	}
	parts := strings.SplitN(cgroupsPath, ":", 3)
	if len(parts) != 3 {
		return path.Join("/system.slice", "skiff-oci-"+id+".scope")
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	dir := "/"
	if slice != "-.slice" {
		// a-b.slice lives in a.slice/a-b.slice (systemd.slice(5)).
		base := strings.TrimSuffix(slice, ".slice")
		elems := strings.Split(base, "-")
		for i := range elems {
			dir = path.Join(dir, strings.Join(elems[:i+1], "-")+".slice")
		}
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		if prefix != "" {
			unit = prefix + "-" + name
		}
		unit += ".scope"
	}
	return path.Join(dir, unit)
}

// ociSandbox describes the container's init for package container.
func (r *runningPod) ociSandbox(rootfs string, a abi.App, spec *specs.Spec, o ociOpts) (container.Pod, error) {
	mounts := []specs.Mount{
		{Destination: appexec.AppsDir, Type: "bind", Source: abs(abi.AppsDir), Options: []string{"rbind"}},
		{Destination: appexec.RunDir, Type: "bind", Source: abs(s1Run), Options: []string{"rbind"}},
	}
	if len(a.Rootfs.Layers) != 1 {
		return container.Pod{}, errors.New("pod.json: the app's rootfs must be the bundle's one directory")
	}
	bundle, _ := os.ReadFile(abi.OCIBundleFile)
	app := container.App{App: podfs.FromSpec(appexec.AppRoot(a.Name), r.o.PodDir, &specs.Spec{Root: spec.Root, Linux: spec.Linux}),
		Bind: a.Rootfs.Layers[0]}
	app.Layers = []string{a.Rootfs.Layers[0]}
	// the host's /sys, bound, unless its own sysfs can be mounted (podfs.Sysfs)
	app.UserNS = r.users != nil && !container.CreatesNamespace(spec.Linux.Namespaces, specs.NetworkNamespace)
	app.Mounts = ociMounts(spec.Mounts, strings.TrimSpace(string(bundle)))
	for i, m := range app.Mounts {
		if m.Type == "cgroup2" {
			// cgroup2 is one superblock, mounted read-write for the
			// pod's systemd: a read-only second mount of it is EBUSY,
			// a read-only bind of the pod's is not.
			app.Mounts[i].Type, app.Mounts[i].Source = "bind", filepath.Join(rootfs, "sys/fs/cgroup")
			app.Mounts[i].Options = append(m.Options, "rbind")
		}
	}
	var pathMounts []specs.Mount
	app.MaskedPaths, app.ReadonlyPaths, pathMounts = podfs.RootfsPaths(spec.Linux, a.Rootfs.Layers[0], app.Mounts)
	app.Mounts = append(app.Mounts, pathMounts...)
	appMounts, err := container.AppMounts(rootfs, app)
	if err != nil {
		return container.Pod{}, err
	}
	appMounts = ociSysInOrder(appMounts, appexec.AppRoot(a.Name), spec.Mounts, len(app.Mounts))
	mounts = append(mounts, appMounts...)
	var res *specs.LinuxResources
	if spec.Linux.Resources != nil {
		c := *spec.Linux.Resources
		c.Devices = nil // the sandbox's device rules are stage1's (systemd needs its own)
		res = &c
	}
	hostname := ""
	for _, n := range spec.Linux.Namespaces {
		if n.Type == specs.UTSNamespace && n.Path == "" {
			hostname = spec.Hostname
		}
	}
	var devices []specs.LinuxDevice
	for _, d := range spec.Linux.Devices {
		if !filepath.IsAbs(d.Path) || strings.Contains(d.Path, "..") {
			return container.Pod{}, fmt.Errorf("linux.devices: path %q must be absolute, without '..'", d.Path)
		}
		d.Path = filepath.Join(appexec.AppRoot(a.Name), d.Path)
		if d.Type == "p" {
			d.Major, d.Minor = 0, 0 // a FIFO has no device number (libcontainer checks it)
		}
		devices = append(devices, d)
	}
	var extra []*os.File
	for i := 0; i < o.preserveFDs; i++ {
		extra = append(extra, os.NewFile(uintptr(3+i), "preserved"))
	}
	env := []string{"container=skiff", units.SearchPathEnv, units.NoMountTrackingEnv, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if n := os.Getenv(envOCIListenFDs); n != "" {
		env = append(env, envOCIListenFDs+"="+n) // for the keeper; pod-init drops it
	}
	logTarget := "null"
	if r.o.Debug {
		logTarget = "console"
	}
	return container.Pod{
		ID:          containerID(r.m.UUID),
		StateRoot:   abs(s1State),
		Rootfs:      rootfs,
		Hostname:    hostname,
		CgroupsPath: r.cgroup,
		Mounts:      mounts,
		Namespaces:  spec.Linux.Namespaces,
		UIDMappings: r.users.uidMappings(),
		GIDMappings: r.users.gidMappings(),
		Resources:   res,
		Sysctl:      spec.Linux.Sysctl,
		ExtraFiles:  extra,
		Devices:     devices,
		Args: []string{"/usr/lib/skiff/stage1", "pod-init", "--oci=" + strconv.Itoa(o.preserveFDs),
			"/usr/lib/systemd/systemd", "--unit=" + units.Target, "--log-target=" + logTarget, "--show-status=0"},
		Env:   env,
		Stdio: [3]*os.File{os.Stdin, os.Stdout, os.Stderr},
	}, nil
}

// withoutFSData drops a mount's filesystem data options (KEY=VALUE), which
// neither a bind mount nor the container's cgroup2 view takes.
func withoutFSData(opts []string) []string {
	var out []string
	for _, opt := range opts {
		if !strings.Contains(opt, "=") {
			out = append(out, opt)
		}
	}
	return out
}

// ociMounts are the bundle's mounts less those every app already gets from
// podfs (/proc, /sys, /dev and its devpts and shm), a cgroup mount made the
// container's cgroup2 tree; a relative bind source
// is relative to the bundle (runtime-spec config.md), and a bind mount's
// filesystem data options (KEY=VALUE) are dropped, as runc 1.1 ignores them.
func ociMounts(ms []specs.Mount, bundle string) []specs.Mount {
	skip := map[string]bool{"/proc": true, "/sys": true, "/dev": true, "/dev/pts": true, "/dev/shm": true}
	var out []specs.Mount
	for _, m := range ms {
		if skip[path.Clean(m.Destination)] {
			continue
		}
		if m.Type == "cgroup" || m.Type == "cgroup2" {
			// The container's cgroups as the app sees them, as runc
			// mounts them: the container's cgroup2 tree (the pod's
			// cgroup namespace is rooted at the container's cgroup;
			// systemd, the init, manages it), with the bundle's flags.
			m.Type, m.Source = "cgroup2", "cgroup2"
			m.Options = withoutFSData(m.Options)
			out = append(out, m)
			continue
		}
		bind := m.Type == "bind"
		for _, opt := range m.Options {
			bind = bind || opt == "bind" || opt == "rbind"
		}
		if bind && !filepath.IsAbs(m.Source) {
			m.Source = filepath.Join(bundle, m.Source)
		}
		if bind { // a bind mount takes no filesystem data (libcontainer refuses it)
			m.Options = withoutFSData(m.Options)
		}
		out = append(out, m)
	}
	return out
}

// ociSysInOrder moves the app's /sys, which podfs mounts right after /proc,
// to where the bundle's config lists it (runtime-spec: mounts in order; its
// default lists /sys after /dev and /dev/mqueue): after /dev's mounts and
// the bundle's mounts that precede /sys in the config. ms are
// container.AppMounts' (the rootfs, /proc, /sys, /dev, its six device binds,
// /dev/pts, /dev/shm, then the nBundle mounts of ociMounts in order, then
// masked and read-only paths); root is the app's root in the stage1 rootfs.
// It moves /sys only past mounts outside it (their targets were resolved in
// podfs's order, and none of them lies in /sys), and changes nothing when
// the config has no /sys or the mounts are not as described.
func ociSysInOrder(ms []specs.Mount, root string, config []specs.Mount, nBundle int) []specs.Mount {
	sysAt, shmAt := -1, -1
	for i, m := range ms {
		switch {
		case sysAt < 0 && m.Destination == root+"/sys" && m.Type == "sysfs":
			sysAt = i
		case shmAt < 0 && m.Destination == root+"/dev/shm" && m.Source == "shm":
			shmAt = i
		}
	}
	// k: the bundle's mounts (those ociMounts keeps) before /sys in the config
	k, found := 0, false
	for _, m := range config {
		if path.Clean(m.Destination) == "/sys" {
			found = true
			break
		}
		if len(ociMounts([]specs.Mount{m}, "/")) == 1 {
			k++
		}
	}
	if !found || sysAt < 0 || shmAt < sysAt || shmAt+nBundle >= len(ms) || k > nBundle {
		return ms
	}
	to := shmAt + k // /sys goes after ms[to]
	for _, m := range ms[sysAt+1 : to+1] {
		if m.Destination == root+"/sys" || strings.HasPrefix(m.Destination, root+"/sys/") {
			return ms
		}
	}
	out := append([]specs.Mount{}, ms[:sysAt]...)
	out = append(out, ms[sysAt+1:to+1]...)
	out = append(out, ms[sysAt])
	return append(out, ms[to+1:]...)
}

// parseOCIFDs reads N[:tty]: N preserved descriptors from fd 3 on; tty: the
// init's stdio is the pty libcontainer made for --console-socket.
func parseOCIFDs(s string) (n int, tty bool, err error) {
	num, rest, _ := strings.Cut(s, ":")
	n, err = strconv.Atoi(num)
	if err != nil || n < 0 || (rest != "" && rest != "tty") {
		return 0, false, fmt.Errorf("want N or N:tty, not %q", s)
	}
	return n, rest == "tty", nil
}

// podInitOCI is pod-init --oci=N[:tty] CMD...: the container's first
// process in OCI mode. It starts the stdio keeper with its own stdio and the
// N preserved descriptors (fd 3 on), waits until the keeper listens, points
// its own stdio at /dev/null and execs CMD (systemd). With tty its stdio is
// the pty libcontainer made: it puts /dev/null over /dev/console (systemd
// takes the console over and hangs it up) and the pod's /dev/pts over the
// app's, so that the app sees the pty as /dev/pts/N. No parent-death signal:
// the container outlives oci-create.
func podInitOCI(spec string, args []string) error {
	n, tty, err := parseOCIFDs(spec)
	if err != nil {
		return err
	}
	if tty {
		if err := ociConsole(); err != nil {
			return fmt.Errorf("pod-init: %w", err)
		}
	}
	ready, w, err := os.Pipe()
	if err != nil {
		return err
	}
	keeper := exec.Command("/usr/lib/skiff/stage1", "oci-stdio", strconv.Itoa(n))
	keeper.Stdin, keeper.Stdout, keeper.Stderr = os.Stdin, os.Stdout, os.Stderr
	for i := 0; i < n; i++ {
		keeper.ExtraFiles = append(keeper.ExtraFiles, os.NewFile(uintptr(3+i), "preserved"))
	}
	keeper.ExtraFiles = append(keeper.ExtraFiles, w)
	// A session of its own: when systemd gives up the pty as its controlling
	// terminal, the kernel sends SIGHUP to the pty's foreground group.
	keeper.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := keeper.Start(); err != nil {
		return fmt.Errorf("pod-init: start the stdio keeper: %w", err)
	}
	w.Close()
	_ = os.Unsetenv(envOCIListenFDs) // never systemd's
	buf := make([]byte, 1)
	if n, _ := ready.Read(buf); n != 1 {
		return errors.New("pod-init: the stdio keeper failed")
	}
	ready.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(int(null.Fd()), fd, 0); err != nil {
			return err
		}
	}
	for i := 0; i < n; i++ {
		unix.CloseOnExec(3 + i)
	}
	return syscall.Exec(args[0], args, os.Environ())
}

// ociConsole readies the pod for a pty made by libcontainer: /dev/null over
// /dev/console, and the pod's devpts (the pty's) over the app's.
func ociConsole() error {
	if err := unix.Mount("/dev/null", "/dev/console", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("/dev/null over /dev/console: %w", err)
	}
	apps, err := os.ReadDir(appexec.AppsDir)
	if err != nil || len(apps) != 1 {
		return fmt.Errorf("want one app in %s (%v)", appexec.AppsDir, err)
	}
	pts := filepath.Join(appexec.AppRoot(apps[0].Name()), "dev", "pts")
	if err := unix.Mount("/dev/pts", pts, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("the pod's devpts over the app's: %w", err)
	}
	return nil
}

// ociStdioMain is oci-stdio N: the keeper. It holds the caller's stdio (or
// the pty) and N preserved descriptors (fd 3 on), serves app-exec's
// hand-over of them once, and exits. fd 3+N is a pipe on which it says that
// it listens.
func ociStdioMain(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: oci-stdio N")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return errors.New("usage: oci-stdio N")
	}
	var extra []*os.File
	for i := 0; i < n; i++ {
		extra = append(extra, os.NewFile(uintptr(3+i), "preserved"))
	}
	ready := os.NewFile(uintptr(3+n), "ready")
	done := make(chan struct{})
	var once sync.Once
	srv, err := stdio.Listen(appexec.StdioSocket,
		func(app string, pid int) (stdio.Files, error) {
			f := stdio.Files{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Extra: extra}
			if l := os.Getenv(envOCIListenFDs); l != "" {
				f.Env = []string{"LISTEN_FDS=" + l} // app-exec adds LISTEN_PID
			}
			return f, nil
		},
		func(app string, pid int) { once.Do(func() { close(done) }) })
	if err != nil {
		return err
	}
	_, _ = ready.Write([]byte{1})
	ready.Close()
	<-done
	return srv.Close()
}

// envOCIListenFDs (abi.EnvOCIListenFDs) goes on from oci-create through
// pod-init to the keeper.
const envOCIListenFDs = abi.EnvOCIListenFDs

// s1OCICgroup names the container's cgroup (written before libcontainer makes
// it), for gc.
const s1OCICgroup = abi.OCICgroupFile

// removeOCICgroup kills what is left in an OCI container's cgroup and
// removes it in every hierarchy: libcontainer's state, which Destroy uses,
// is saved only once the init runs, so a create killed before leaves the
// cgroup to this.
func removeOCICgroup() error {
	b, err := os.ReadFile(s1OCICgroup)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	cg := path.Clean(strings.TrimSpace(string(b)))
	if !path.IsAbs(cg) || cg == "/" {
		return fmt.Errorf("%s holds %q, not a cgroup path", s1OCICgroup, cg)
	}
	return sweepCgroup(cg, sweepWait)
}
