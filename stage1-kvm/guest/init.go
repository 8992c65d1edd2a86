package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1-kvm/vmnet"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
	"github.com/skiff-project/skiff/stage1/podfs"
	"github.com/skiff-project/skiff/stage1/units"
)

// ModulesOrder lists, one path a line, the kernel modules the init loads, in
// order (scripts/build-stage1-kvm writes it); NetModulesOrder those it loads
// next when the pod has a network.
const (
	ModulesOrder    = "/modules.order"
	NetModulesOrder = "/modules.net"
)

// root is the guest's root filesystem: the initramfs, which holds the stage1
// rootfs (systemd and this binary load from memory, not over 9p).
const root = "/"

// AgentPath is the guest's binary as the pod agent (a link to it: its name
// picks the command).
const AgentPath = "/usr/lib/skiff/agent"

// 9p mount options: the configuration, the output and volumes uncached
// (host and guest both see them), the rootfs cached (only the guest writes
// it while the pod runs).
const (
	podOpts    = "trans=virtio,version=9p2000.L,msize=262144,cache=none"
	rootfsOpts = "trans=virtio,version=9p2000.L,msize=262144,cache=loose"
)

var debug bool

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "skiff-init: "+format+"\n", args...)
}

func debugf(format string, args ...any) {
	if debug {
		logf("+%dms "+format, append([]any{uptimeMS()}, args...)...)
	}
}

func uptimeMS() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return ts.Nano() / 1e6
}

// Init is the guest's first PID 1, in the initramfs. On success it becomes
// the pod's systemd; on failure it powers the VM off (the host then finds no
// exit records and reports 125 with the console's tail).
func Init() {
	err := initMain()
	logf("%v", err)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func initMain() error {
	if err := rootOverInitramfs(); err != nil {
		return err
	}
	for _, m := range []struct{ src, dst, typ, data string }{
		{"proc", "/proc", "proc", ""}, {"sysfs", "/sys", "sysfs", ""}, {"devtmpfs", "/dev", "devtmpfs", ""},
		{"devpts", "/dev/pts", "devpts", "mode=0620,ptmxmode=0666"}, // the agent's ptys; systemd keeps it
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.typ, unix.MS_NOSUID, m.data); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	t0 := uptimeMS()
	if err := loadModules(ModulesOrder); err != nil {
		return err
	}
	t1 := uptimeMS()
	if err := mount9p(ConfigTag, ConfigMount, podOpts, unix.MS_RDONLY|dataOnly); err != nil {
		return err
	}
	var cfg Config
	if err := abi.ReadJSON(filepath.Join(ConfigMount, ConfigName), &cfg); err != nil {
		return err
	}
	debug = cfg.Debug
	debugf("init started at +%dms, modules loaded at +%dms", t0, t1)
	debugf("configuration mounted")
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
		if err := os.WriteFile("/etc/hostname", []byte(cfg.Hostname+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := copyUnits(filepath.Join(ConfigMount, units.Dir), filepath.Join(root, units.Dir)); err != nil {
		return err
	}
	if len(cfg.Net) > 0 {
		if err := loadModules(NetModulesOrder); err != nil {
			return err
		}
	}
	if err := vmnet.Configure(cfg.Net); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := setSysctls(cfg.Sysctl); err != nil {
		return err
	}
	if err := cfg.mountPod(); err != nil {
		return err
	}
	for _, a := range cfg.Apps { // the apps' mount points, before the root is read-only
		if err := os.MkdirAll(filepath.Join(root, appexec.AppRoot(a.Name)), 0o755); err != nil {
			return err
		}
	}
	if err := readOnlyRoot(); err != nil {
		return err
	}
	// The apps' roots and their mounts (a few dozen per app) go in a mount
	// namespace of their own, which app-exec starts from
	// (appexec.AppsMountNSFile): the pod's systemd, which makes and loads a
	// unit for every mount it sees, would spend ~10 ms on each under TCG.
	if err := inMountNS(filepath.Join(root, appexec.AppsMountNSFile), cfg.mountApps); err != nil {
		return err
	}
	debugf("apps' filesystems ready")
	if err := startAgent(); err != nil {
		return err
	}
	debugf("agent started; exec systemd")
	args := []string{"/usr/lib/systemd/systemd", "--unit=" + units.Target, "--show-status=0"}
	if debug {
		args = append(args, "--log-target=console", "--log-level=info")
	} else {
		args = append(args, "--log-target=null")
	}
	// The root is an initramfs, but not one that hands over to another root.
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_IN_INITRD=0"}
	err := syscall.Exec(args[0], args, env)
	return fmt.Errorf("exec systemd: %w", err)
}

// mountView puts the pod directory's layout together at PodMount from what
// the host shares (it never shares the pod directory itself): apps/ from the
// output share, stage1/net from the configuration, the empty volumes from
// their own shares. The apps' mount sources then resolve as on the host.
func (c *Config) mountView() error {
	if err := mount9p(OutTag, OutMount, podOpts, dataOnly); err != nil {
		return err
	}
	view := filepath.Join(root, PodMount)
	if err := os.MkdirAll(view, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", view, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mount %s: %w", PodMount, err)
	}
	for _, b := range []struct{ src, dst string }{
		{filepath.Join(OutMount, abi.AppsDir), abi.AppsDir},
		{filepath.Join(ConfigMount, NetDir), "stage1/net"},
	} {
		dst := filepath.Join(view, b.dst)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(filepath.Join(root, b.src), dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b.src, dst, err)
		}
	}
	for _, s := range c.PodShares {
		if err := mount9p(s.Tag, filepath.Join(view, s.Path), podOpts, roFlag(s.ReadOnly)); err != nil {
			return err
		}
	}
	return nil
}

// dataOnly are the flags of the shares that hold only data (configuration,
// records): nothing on them is run or opened as a device.
const dataOnly = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

func roFlag(ro bool) uintptr {
	if ro {
		return unix.MS_RDONLY
	}
	return 0
}

// mountPod mounts the shares and the directories app-exec uses.
func (c *Config) mountPod() error {
	if err := c.mountView(); err != nil {
		return err
	}
	for _, s := range c.Shares {
		if err := mount9p(s.Tag, filepath.Join(root, SharesMount, s.Tag), podOpts, roFlag(s.ReadOnly)); err != nil {
			return err
		}
	}
	if err := mount(root, specs.Mount{Destination: appexec.AppsDir, Type: "bind",
		Source: filepath.Join(root, PodMount, abi.AppsDir), Options: []string{"bind"}}); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, appexec.RunDir), 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", filepath.Join(root, appexec.RunDir), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mount %s: %w", appexec.RunDir, err)
	}
	return nil
}

// mountApps mounts each app's rootfs with its mounts.
func (c *Config) mountApps() error {
	apps := filepath.Join(root, appexec.AppsDir)
	for _, a := range c.Apps {
		if err := mount9p(a.RootfsTag, filepath.Join(root, appexec.AppRoot(a.Name)), rootfsOpts, 0); err != nil {
			return err
		}
		var spec specs.Spec
		if err := abi.ReadJSON(filepath.Join(apps, a.Name, abi.AppSpecFile), &spec); err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		fs := podfs.FromSpec(appexec.AppRoot(a.Name), c.PodDir, &spec)
		fs.Mounts = append(fs.Mounts, c.Mounts...)
		for i, m := range fs.Mounts {
			if m.Type != "bind" {
				continue
			}
			src, err := c.guestSource(m.Source)
			if err != nil {
				return fmt.Errorf("app %s: mount %s: %w", a.Name, m.Destination, err)
			}
			fs.Mounts[i].Source = src
		}
		appRoot := filepath.Join(root, appexec.AppRoot(a.Name))
		if spec.Linux != nil { // masked and read-only paths in the rootfs, as the default flavor's OCI mode has them
			var paths []specs.Mount
			fs.MaskedPaths, fs.ReadonlyPaths, paths = podfs.RootfsPaths(spec.Linux, appRoot, fs.Mounts)
			fs.Mounts = append(fs.Mounts, paths...)
		}
		ms, err := podfs.ResolveMounts(root, fs)
		if err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		for _, m := range ms {
			if err := mount(root, m); err != nil {
				return fmt.Errorf("app %s: %w", a.Name, err)
			}
		}
		if spec.Linux != nil {
			if err := makeDevices(appRoot, spec.Linux.Devices); err != nil {
				return fmt.Errorf("app %s: %w", a.Name, err)
			}
		}
		// An app on a terminal gets the agent's pty (guest.App.TTY): the
		// guest's devpts over the app's, so the app's /dev/pts/N is it (as
		// the default flavor's OCI mode does) and ttyname works.
		if a.TTY {
			if err := mount(root, specs.Mount{Destination: filepath.Join(appexec.AppRoot(a.Name), "dev/pts"), Type: "bind",
				Source: "/dev/pts", Options: []string{"bind"}}); err != nil {
				return fmt.Errorf("app %s: its terminal: %w", a.Name, err)
			}
		}
	}
	return nil
}

// inMountNS runs fn on a thread of its own in a new mount namespace, a
// private copy of this one (nothing mounted there propagates back), and
// bind-mounts that namespace on the file at (created) so that it outlives
// the thread, which ends with fn.
func inMountNS(at string, fn func() error) error {
	if err := os.WriteFile(at, nil, 0o600); err != nil {
		return err
	}
	type result struct {
		tid int
		err error
	}
	ready, done := make(chan result), make(chan struct{})
	defer close(done)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		err := unix.Unshare(unix.CLONE_NEWNS)
		if err != nil {
			err = fmt.Errorf("new mount namespace: %w", err)
		} else if err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			err = fmt.Errorf("make the new mount namespace private: %w", err)
		} else {
			err = fn()
		}
		ready <- result{unix.Gettid(), err}
		<-done
	}()
	r := <-ready
	if r.err != nil {
		return r.err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/mnt", r.tid), at, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("keep the apps' mount namespace at %s: %w", at, err)
	}
	return nil
}

// copyUnits copies the pod's units, which run wrote, into the guest's root.
func copyUnits(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return fmt.Errorf("the pod's units: %w", err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readOnlyRoot makes the guest's root (the stage1's files: systemd, the
// units, app-exec and app-exited, which systemd runs as root) read-only, as
// the default flavor's pod has it; /tmp gets a tmpfs (systemd mounts /run),
// and the apps' rootfs and the shares are mounts of their own.
func readOnlyRoot() error {
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("make the guest's root read-only: %w", err)
	}
	return nil
}

// startAgent starts the pod agent and waits until it serves the apps'
// stdio (it closes its end of a pipe then).
func startAgent() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(AgentPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start the pod agent: %w", err)
	}
	b := make([]byte, 1)
	if n, _ := r.Read(b); n != 1 {
		return errors.New("the pod agent failed to start")
	}
	return nil
}

func loadModules(list string) error {
	b, err := os.ReadFile(list)
	if err != nil {
		return err
	}
	for _, p := range strings.Fields(string(b)) {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", p, err)
		}
	}
	return nil
}

// mount9p mounts a 9p share, waiting a little for its virtio device to probe.
func mount9p(tag, dst, opts string, flags uintptr) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	var err error
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err = unix.Mount(tag, dst, "9p", flags, opts); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("mount 9p %s at %s: %w", tag, dst, err)
	}
	return nil
}

// rootOverInitramfs makes the guest's root a bind mount of the initramfs
// instead of the initramfs itself. The initramfs (rootfs) is the root of the
// mount tree, from which pivot_root(2) cannot move; app-exec pivot_roots each
// app into its rootfs, which needs a root mount with a parent. The contents
// stay the same: this is switch_root onto the same tree.
func rootOverInitramfs() error {
	const dir = "/.root"
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind the initramfs: %w", err)
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	return os.Remove(dir)
}
