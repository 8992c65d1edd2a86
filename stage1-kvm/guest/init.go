package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// ModulesOrder lists, one path a line, the kernel modules the init loads, in
// order (scripts/build-stage1-kvm writes it).
const ModulesOrder = "/modules.order"

// 9p mount options: the pod directory uncached (host and guest both write
// it), the rootfs cached (only the guest writes it while the pod runs).
const (
	podOpts    = "trans=virtio,version=9p2000.L,msize=262144,cache=none"
	rootfsOpts = "trans=virtio,version=9p2000.L,msize=262144,cache=loose"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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

// Init is the guest's PID 1. It never returns: it powers the VM off (on
// failure too; the host then finds no exit.json and reports 125).
func Init() {
	if err := initMain(); err != nil {
		logf("%v", err)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func initMain() error {
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := unix.Mount(m.src, m.dst, m.typ, unix.MS_NOSUID, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	t0 := uptimeMS()
	if err := loadModules(ModulesOrder); err != nil {
		return err
	}
	t1 := uptimeMS()
	if err := mount9p(PodTag, PodMount, podOpts); err != nil {
		return err
	}
	var cfg Config
	if err := abi.ReadJSON(filepath.Join(PodMount, ConfigFile), &cfg); err != nil {
		return err
	}
	debug = cfg.Debug
	debugf("init started at +%dms, modules loaded at +%dms, pod directory mounted", t0, t1)
	var m abi.PodManifest
	if err := abi.ReadJSON(filepath.Join(PodMount, abi.PodManifestFile), &m); err != nil {
		return err
	}
	if len(m.UUID) >= 8 {
		_ = unix.Sethostname([]byte("skiff-" + m.UUID[:8]))
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, len(cfg.Apps))
	for _, a := range cfg.Apps {
		wg.Add(1)
		go func(a App) {
			defer wg.Done()
			x := runApp(a, started)
			if err := abi.WriteJSON(filepath.Join(PodMount, abi.AppsDir, a.Name, abi.AppExitFile), x); err != nil {
				logf("app %s: record exit: %v", a.Name, err)
			}
			debugf("app %s exited with %d", a.Name, x.Code)
		}(a)
	}
	for range cfg.Apps {
		<-started
	}
	if err := os.WriteFile(filepath.Join(PodMount, abi.ReadyFile), nil, 0o644); err != nil {
		logf("write ready: %v", err)
	}
	wg.Wait()
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
func mount9p(tag, dst, opts string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	var err error
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err = unix.Mount(tag, dst, "9p", 0, opts); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("mount 9p %s at %s: %w", tag, dst, err)
	}
	return nil
}

// port opens the virtio-serial port called name (console when not found).
func port(name string) *os.File {
	if name != "" {
		dirs, _ := filepath.Glob("/sys/class/virtio-ports/*")
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			for _, d := range dirs {
				if n, err := os.ReadFile(filepath.Join(d, "name")); err == nil && strings.TrimSpace(string(n)) == name {
					if f, err := os.OpenFile("/dev/"+filepath.Base(d), os.O_WRONLY, 0); err == nil {
						return f
					}
				}
			}
			if time.Now().After(deadline) {
				break
			}
			dirs, _ = filepath.Glob("/sys/class/virtio-ports/*")
		}
		logf("no virtio port %s: using the console", name)
	}
	return os.Stderr
}

// runApp runs one app to its end and says how it ended.
func runApp(a App, started chan<- struct{}) abi.AppExit {
	once := sync.OnceFunc(func() { started <- struct{}{} })
	defer once()
	x := abi.AppExit{App: a.Name, Code: abi.ExitSkiffFailure}
	stdout, stderr := port(a.StdoutPort), port(a.StderrPort)
	fail := func(code int, err error) abi.AppExit {
		logf("app %s: %v", a.Name, err)
		if stderr != os.Stderr { // the user sees why, as with the default flavor's app-exec
			fmt.Fprintf(stderr, "skiff: app %s: %v\n", a.Name, err)
		}
		x.Code, x.ExitedAt = code, time.Now().UTC()
		return x
	}
	root := filepath.Join(AppsMount, a.Name)
	if err := mount9p(a.RootfsTag, root, rootfsOpts); err != nil {
		return fail(abi.ExitSkiffFailure, err)
	}
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "proc", "proc"}, {"sysfs", "sys", "sysfs"}, {"devtmpfs", "dev", "devtmpfs"},
	} {
		d := filepath.Join(root, m.dst)
		_ = os.MkdirAll(d, 0o755)
		if err := unix.Mount(m.src, d, m.typ, unix.MS_NOSUID, ""); err != nil {
			return fail(abi.ExitSkiffFailure, fmt.Errorf("mount %s: %w", d, err))
		}
	}
	var spec specs.Spec
	if err := abi.ReadJSON(filepath.Join(PodMount, abi.AppsDir, a.Name, abi.AppSpecFile), &spec); err != nil {
		return fail(abi.ExitSkiffFailure, err)
	}
	p := spec.Process
	if p == nil || len(p.Args) == 0 {
		return fail(abi.ExitSkiffFailure, errors.New("spec has no process"))
	}
	path, err := lookPath(root, p.Args[0], envPath(p.Env))
	if err != nil {
		return fail(abi.ExitNotFound, err)
	}
	devnull, _ := os.Open("/dev/null")
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	cmd := &exec.Cmd{
		Path: path, Args: p.Args, Env: p.Env, Dir: cwd,
		Stdin: devnull, Stdout: stdout, Stderr: stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot: root, Setsid: true,
			Credential: &syscall.Credential{Uid: p.User.UID, Gid: p.User.GID, Groups: p.User.AdditionalGids},
		},
	}
	if p.User.UID == 0 && p.User.GID == 0 && len(p.User.AdditionalGids) == 0 {
		cmd.SysProcAttr.Credential = nil
	}
	if err := cmd.Start(); err != nil {
		code := abi.ExitCannotExec
		if errors.Is(err, unix.ENOENT) {
			code = abi.ExitNotFound
		}
		return fail(code, err)
	}
	debugf("app %s started, pid %d", a.Name, cmd.Process.Pid)
	once()
	err = cmd.Wait()
	x.ExitedAt = time.Now().UTC()
	x.Code = 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			x.Code, x.Signal = 128+int(ws.Signal()), unix.SignalName(ws.Signal())
		} else {
			x.Code = ws.ExitStatus()
		}
	} else if err != nil {
		return fail(abi.ExitSkiffFailure, err)
	}
	return x
}

func envPath(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			return v
		}
	}
	return defaultPath
}

// lookPath finds name as exec would inside root, resolving symlinks within
// root (openat2 RESOLVE_IN_ROOT), and returns its path as seen from root.
func lookPath(root, name, pathEnv string) (string, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(rfd)
	isExec := func(p string) bool {
		fd, err := unix.Openat2(rfd, p, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
		if err != nil {
			return false
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		return unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
	}
	if strings.Contains(name, "/") {
		if isExec(name) {
			return name, nil
		}
		return "", fmt.Errorf("%s: no such file in the image", name)
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if p := filepath.Join(d, name); isExec(p) {
			if !filepath.IsAbs(p) {
				p = "/" + p
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %s", name, pathEnv)
}
