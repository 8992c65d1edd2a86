package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/overlay"
	"github.com/skiff-project/skiff/networking"
	"github.com/skiff-project/skiff/stage1-kvm/agent"
	"github.com/skiff-project/skiff/stage1-kvm/guest"
	"github.com/skiff-project/skiff/stage1-kvm/vmnet"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/podfs"
	"github.com/skiff-project/skiff/stage1/podnet"
	"github.com/skiff-project/skiff/stage1/podrun"
	"github.com/skiff-project/skiff/stage1/stdio"
	"github.com/skiff-project/skiff/stage1/units"
)

// Paths in the pod directory private to this flavor. The mounts live in
// run's own mount namespace only.
const (
	s1Apps    = abi.Stage1Dir + "/apps"           // apps/NAME: each app's rootfs overlay
	s1Shares  = abi.Stage1Dir + "/shares"         // shares/N: a host file an app mounts, bound alone
	s1Console = abi.Stage1Dir + "/console.log"    // the VM's serial console (kernel, init, systemd)
	s1Stop    = abi.Stage1Dir + "/stop-requested" // written before the pod is asked to stop
)

// EnvAccel forces the accelerator: "kvm" or "tcg" (default: detect).
const EnvAccel = "SKIFF_KVM_ACCEL"

// The VM's size: a base for the guest kernel, systemd and the agent, plus
// each app's memory limit, or appMemory for an app without one (rkt's kvm
// flavor sized its VMs the same way).
const (
	baseMemory = 128 << 20
	appMemory  = 128 << 20
)

// kernelCmdline: the console on the serial port, quiet but for warnings
// (what a hung boot leaves, for the console's tail); tsc_early_khz and
// tsc=reliable avoid TSC calibration hangs under TCG (MACHINE-NOTES §4).
const kernelCmdline = "console=ttyS0 quiet loglevel=4 panic=-1 tsc_early_khz=2000000 tsc=reliable rdinit=/init"

// recordPoll is how often run takes what the guest reports (records.go).
const recordPoll = 100 * time.Millisecond

// bootTimeout is how long the guest gets to bring the pod agent up (a few
// seconds under TCG on a busy host; well under one with KVM).
const bootTimeout = 2 * time.Minute

// runOpts are run's options (package podrun).
type runOpts = podrun.Opts

// parseRun reads run's options and refuses what a VM cannot do.
func parseRun(args []string) (runOpts, error) {
	o, err := podrun.Parse("stage1-kvm", args)
	if err != nil {
		return o, err
	}
	if o.PrivateUsers.Size > 0 {
		return o, errors.New("--private-users: the kvm stage1 isolates the pod in a VM and does not map its users; run without --private-users")
	}
	nf, err := networking.ParseNetFlag(o.Net)
	if err != nil {
		return o, err
	}
	if nf.Mode == networking.ModeHost {
		return o, errors.New("--net=host: a VM cannot share the host's network namespace; use --net=default or a named CNI network")
	}
	return o, nil
}

// vmName names the pod's QEMU process (its -name), so stop and gc can tell
// it from a process that reused its pid.
func vmName(uuid string) string { return "skiff-" + uuid }

// kvmDir is the directory of QEMU, the kernel and the initramfs in the
// stage1 rootfs: /usr/lib/skiff/kvm, beside this binary.
func kvmDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	d := filepath.Join(filepath.Dir(exe), "kvm")
	if _, err := os.Stat(filepath.Join(d, "vmlinux")); err != nil {
		return "", fmt.Errorf("stage1 image has no kernel: %w", err)
	}
	return d, nil
}

// chooseAccel picks KVM when the host can boot a stock kernel with it, else
// TCG (with a one-line warning). EnvAccel forces either.
func chooseAccel() string {
	switch a := os.Getenv(EnvAccel); a {
	case "kvm", "tcg":
		return a
	case "", "auto":
	default:
		fmt.Fprintf(os.Stderr, "stage1-kvm: warning: %s=%q is neither kvm nor tcg; detecting\n", EnvAccel, a)
	}
	why := ""
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		why = "/dev/kvm is not usable (" + err.Error() + ")"
	} else {
		f.Close()
		// A PVM host (kvm_pvm) runs only PVM-built guest kernels: a stock
		// Debian kernel hangs there (MACHINE-NOTES §4).
		if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
			why = "/dev/kvm is a PVM host (kvm_pvm), which cannot boot a stock kernel"
		}
	}
	if why == "" {
		return "kvm"
	}
	fmt.Fprintf(os.Stderr, "stage1-kvm: warning: %s; using TCG emulation (slow; %s=kvm forces KVM)\n", why, EnvAccel)
	return "tcg"
}

// runMain boots the pod's VM, relays the apps' output, waits for the VM to
// end and exits with the pod's code. It holds the pod lock until it exits.
func runMain(args []string) error {
	o, err := parseRun(args)
	if err != nil {
		return err
	}
	if fd, err := strconv.Atoi(os.Getenv(abi.EnvLockFD)); err == nil {
		unix.CloseOnExec(fd) // the lock stays with us, never with QEMU
	}
	var m abi.PodManifest
	if err := abi.ReadJSON(abi.PodManifestFile, &m); err != nil {
		return fmt.Errorf("pod %s: %w", o.UUID, err)
	}
	v := &vm{o: o, m: &m, specs: map[string]*specs.Spec{}}
	v.cfg = guest.Config{PodDir: o.PodDir, Hostname: o.Hostname, Debug: o.Debug, StopTimeout: o.StopTimeout}
	// The network first, in the host's mount namespace, where its
	// namespace's bind mount must live (gc finds it there).
	if err := v.setupNet(); err != nil {
		return fmt.Errorf("pod %s: %w", o.UUID, err)
	}
	// The overlays are mounted in a mount namespace of this thread's own,
	// which QEMU (forked from this thread) shares: when both are gone, so
	// are the mounts. QEMU's parent-death signal follows this thread too.
	runtime.LockOSThread()
	code, err := v.run()
	errNet := v.net.Teardown()
	errCg := v.cgroup.destroy()
	if err != nil {
		return fmt.Errorf("pod %s: %w", o.UUID, err)
	}
	if err := errors.Join(errNet, errCg); err != nil {
		fmt.Fprintf(os.Stderr, "skiff: pod %s: %v; 'skiff gc' will retry\n", m.UUID, err)
	} else {
		_ = os.WriteFile(abi.CleanFile, nil, 0o644) // gc has nothing left to undo
	}
	return codeError(code)
}

// vm is a pod's VM being put together and run.
type vm struct {
	o      runOpts
	m      *abi.PodManifest
	specs  map[string]*specs.Spec
	cfg    guest.Config
	args   []string   // QEMU's
	extra  []*os.File // QEMU's descriptors 3, 4, ...
	tees   []*stdio.Tee
	net    *podnet.Net
	links  []vmnet.Link
	broker *agent.Broker
	cgroup *podCgroup
	rec    *recorder
	term   *agent.Terminal // skiff's terminal, in raw mode (--interactive on a terminal)
}

// fd passes f to QEMU and returns its number there.
func (v *vm) fd(f *os.File) int {
	v.extra = append(v.extra, f)
	return 2 + len(v.extra)
}

// setupNet sets the pod's network up and wires its CNI interfaces to taps
// for QEMU.
func (v *vm) setupNet() error {
	var err error
	if v.net, err = podnet.Setup(context.Background(), v.m.UUID, v.o.Network); err != nil {
		return err
	}
	v.cfg.Mounts = v.net.Files
	if v.net.Result == nil {
		return nil
	}
	var names []string
	for _, n := range v.net.Result.Networks {
		names = append(names, n.IfName)
	}
	if v.links, err = vmnet.Attach(v.net.Result.NetNS, names); err != nil {
		v.net.Teardown()
		return err
	}
	v.cfg.Net = vmnet.Ifaces(v.links)
	return nil
}

// run prepares the pod's filesystems in a mount namespace of its own and
// runs the VM.
func (v *vm) run() (int, error) {
	o := v.o
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return 0, fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return 0, fmt.Errorf("make mounts private: %w", err)
	}
	dir, err := kvmDir()
	if err != nil {
		return 0, err
	}
	if err := v.prepare(); err != nil {
		return 0, err
	}
	log, err := stdio.OpenLog(abi.LogFile, stdio.DefaultLogMax)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	mem, cpus := v.size()
	accel := chooseAccel()
	v.args = []string{
		"-L", filepath.Join(dir, "share"), "-name", "guest=" + vmName(o.UUID),
		"-accel", accel, "-M", "microvm", "-m", strconv.FormatInt(mem>>20, 10), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", filepath.Join(dir, "vmlinux"), "-initrd", filepath.Join(dir, "initrd.cpio"),
		"-append", kernelCmdline,
		"-serial", "file:" + filepath.Join(o.PodDir, s1Console),
		"-device", "virtio-serial-device",
	}
	if accel == "kvm" {
		v.args = append(v.args, "-cpu", "host")
	}
	// Never the pod directory: the guest's configuration read-only, one
	// directory for what it reports (shares.go).
	v.share(guest.ConfigTag, abs(guest.GuestDir), dataShare, true)
	v.share(guest.OutTag, abs(guest.OutDir), dataShare, false)
	if v.o.Interactive { // after our own messages: raw mode has no newline translation
		if v.term, err = agent.MakeRaw(os.Stdin); err == nil {
			defer v.term.Restore()
		}
	}
	if err := v.apps(log); err != nil {
		return 0, err
	}
	if err := v.shareMounts(); err != nil {
		return 0, err
	}
	for i, l := range v.links {
		v.args = append(v.args, l.QEMUArgs(fmt.Sprintf("n%d", i), v.fd(l.Tap))...)
	}
	// The agent's port: QEMU has one end of a socketpair, the broker the
	// other.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	mine := os.NewFile(uintptr(pair[0]), "agent")
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return 0, err
	}
	v.args = append(v.args,
		"-chardev", fmt.Sprintf("socket,id=agent,fd=%d", v.fd(os.NewFile(uintptr(pair[1]), "agent-qemu"))),
		"-device", "virtserialport,chardev=agent,name="+agent.PortName)
	if v.broker, err = agent.NewBroker(conn, filepath.Join(o.PodDir, agent.SocketFile)); err != nil {
		conn.Close()
		return 0, err
	}
	defer v.broker.Close()
	if err := abi.WriteJSON(guest.ConfigFile, v.cfg); err != nil {
		return 0, err
	}
	if v.rec, err = newRecorder(v.m); err != nil {
		return 0, err
	}
	defer v.rec.close()
	o.Debugf("pod prepared: %d MiB, %d CPUs, accel %s", mem>>20, cpus, accel)
	return v.boot(dir)
}

// prepare reads the apps' specs, makes the pod's directories and volumes and
// writes the units.
func (v *vm) prepare() error {
	if err := makeStage1Dirs(); err != nil {
		return err
	}
	if err := podfs.MakeVolumes(v.m.Volumes, nil); err != nil {
		return err
	}
	var apps []units.App
	for _, a := range v.m.Apps {
		if err := abi.ValidateAppName(a.Name); err != nil {
			return err
		}
		var s specs.Spec
		if err := abi.ReadJSON(filepath.Join(abi.AppsDir, a.Name, abi.AppSpecFile), &s); err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		v.specs[a.Name] = &s
		apps = append(apps, units.AppFromSpec(a.Name, &s))
		if err := prepareAppDirs(a.Name); err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
	}
	if err := v.copyNetFiles(); err != nil {
		return err
	}
	// The guest's init installs them in its root (the initramfs).
	return units.Write(guest.GuestDir, units.Options{Apps: apps, StopTimeout: v.o.StopTimeout})
}

// size is the VM's memory (bytes) and CPUs: see baseMemory; the CPUs the
// apps' quotas add up to, or all the host's when an app has no quota.
func (v *vm) size() (mem int64, cpus int) {
	mem = baseMemory
	quota, unlimited := 0.0, false
	for _, a := range v.m.Apps {
		r := v.specs[a.Name].Linux
		var res *specs.LinuxResources
		if r != nil {
			res = r.Resources
		}
		if res != nil && res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0 {
			mem += (*res.Memory.Limit + 1<<20 - 1) &^ (1<<20 - 1)
		} else {
			mem += appMemory
		}
		if res != nil && res.CPU != nil && res.CPU.Quota != nil && res.CPU.Period != nil && *res.CPU.Period > 0 {
			quota += float64(*res.CPU.Quota) / float64(*res.CPU.Period)
		} else {
			unlimited = true
		}
	}
	cpus = runtime.NumCPU()
	if !unlimited {
		cpus = min(max(int(math.Ceil(quota)), 1), cpus)
	}
	return mem, cpus
}

// apps mounts each app's rootfs, shares it and its volumes with the guest,
// and gives it its output ports, teed into the pod's log.
func (v *vm) apps(log *stdio.Log) error {
	combined := sameFile(os.Stdout, os.Stderr) || v.term != nil
	for i, a := range v.m.Apps {
		root := filepath.Join(v.o.PodDir, s1Apps, a.Name)
		d := abi.AppDir(".", a.Name)
		upper, work := filepath.Join(d, "upper"), filepath.Join(d, "work")
		for _, p := range []string{root, upper, work} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		}
		if err := overlay.Mount(a.Rootfs.Layers, upper, work, root); err != nil {
			return fmt.Errorf("app %s: mount rootfs: %w", a.Name, err)
		}
		tag := fmt.Sprintf("app%d", i)
		v.share(tag, root, passthrough, false)
		outPort, errPort := guest.Ports(a.Name, combined)
		app := guest.App{Name: a.Name, RootfsTag: tag, StdoutPort: outPort, StderrPort: errPort,
			Stdin: v.o.Interactive}
		if v.term != nil {
			app.TTY, app.Window = true, v.term.Size()
		}
		v.cfg.Apps = append(v.cfg.Apps, app)
		streams := []struct {
			stream, port string
			out          *os.File
		}{{"stdout", outPort, os.Stdout}, {"stderr", errPort, os.Stderr}}
		if combined {
			streams = streams[:1]
		}
		for _, s := range streams {
			t, err := log.Tee(a.Name, s.stream, s.out)
			if err != nil {
				return err
			}
			v.tees = append(v.tees, t)
			id := fmt.Sprintf("c%d", len(v.tees))
			v.args = append(v.args,
				"-chardev", fmt.Sprintf("file,id=%s,path=/dev/fd/%d", id, v.fd(t.W())),
				"-device", fmt.Sprintf("virtserialport,chardev=%s,name=%s", id, s.port))
		}
	}
	return nil
}

// boot starts QEMU and waits for the VM to end.
func (v *vm) boot(dir string) (int, error) {
	o := v.o
	o.Debugf("qemu %s", strings.Join(v.args, " "))
	cmd, err := qemuCommand(dir, v.args)
	if err != nil {
		return 0, err
	}
	cmd.Dir = o.PodDir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stderr, os.Stderr
	cmd.ExtraFiles = v.extra
	// Debian's QEMU loads TCG as a module; the image carries its own.
	cmd.Env = append(os.Environ(), "QEMU_MODULE_DIR="+filepath.Join(dir, "modules"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start qemu: %w", err)
	}
	for _, f := range v.extra {
		f.Close() // QEMU has its own copies
	}
	o.Debugf("qemu started, pid %d", cmd.Process.Pid)
	if v.cgroup, err = newPodCgroup(v.m.UUID, cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
	}
	if err := os.WriteFile(abi.PIDFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if v.o.Interactive {
		go func() {
			stdin := agent.Stdio{Stdin: os.Stdin}
			if v.term != nil {
				stdin.Resize = v.term.Resize()
			}
			if err := v.broker.Client().Stdin(ctx, v.m.Apps[0].Name, stdin); err != nil && ctx.Err() == nil {
				o.Debugf("stdin: %v", err)
			}
		}()
	}
	var werr error
	var kill <-chan time.Time
	// A guest that never gets its agent up (a kernel or init that hangs)
	// must not hold skiff forever: after bootTimeout the VM is killed and
	// the pod fails with the console's tail.
	ready, bootTimer := v.broker.Ready(), time.After(bootTimeout)
	// What the guest reports (ready, the apps' exits) is taken as it comes.
	records := time.NewTicker(recordPoll)
	defer records.Stop()
wait:
	for {
		select {
		case werr = <-done:
			break wait
		case <-records.C:
			v.rec.poll()
		case <-ready:
			ready, bootTimer = nil, nil
			o.Debugf("the pod agent is up")
		case <-bootTimer:
			fmt.Fprintf(os.Stderr, "stage1-kvm: pod %s: the VM did not start the pod within %s; killing it\n", v.m.UUID, bootTimeout)
			_ = cmd.Process.Kill()
		case <-kill:
			o.Debugf("the VM did not power off in time: killing it")
			_ = cmd.Process.Kill()
		case s := <-sigs:
			if s != unix.SIGTERM && s != unix.SIGINT {
				go func() {
					if err := v.broker.Client().Signal(ctx, "", s.(unix.Signal)); err != nil {
						fmt.Fprintf(os.Stderr, "skiff: pod %s: forward %v: %v\n", v.m.UUID, s, err)
					}
				}()
				continue
			}
			_ = os.WriteFile(s1Stop, nil, 0o644)
			if kill != nil { // a second one: now
				_ = cmd.Process.Kill()
				continue
			}
			kill = time.After(stopWait(v.o.StopTimeout))
			go func() { _ = v.broker.Client().Stop(ctx, agent.StopRequest{}) }()
		}
	}
	o.Debugf("qemu exited: %v", werr)
	for _, t := range v.tees {
		t.Wait(5 * time.Second)
	}
	if err != nil {
		return 0, err
	}
	return v.finish(werr)
}

// finish collects the apps' exits (recorded by app-exited in the guest),
// writes the pod's and returns its code. Apps stopped on request with
// SIGTERM count as clean, as with the default flavor.
func (v *vm) finish(werr error) (int, error) {
	_, stopErr := os.Stat(s1Stop)
	stopped := stopErr == nil
	var exits []abi.AppExit
	var missing []string
	v.rec.poll() // what the guest wrote last
	for _, a := range v.m.Apps {
		p := filepath.Join(abi.AppDir(".", a.Name), abi.AppExitFile)
		x, ok := v.rec.exits[a.Name]
		if !ok {
			if err := v.rec.bad[a.Name]; err != nil && !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(os.Stderr, "stage1-kvm: app %s: the guest's exit record is refused: %s\n", a.Name, printable([]byte(err.Error())))
			}
			x = abi.AppExit{App: a.Name, Code: abi.ExitSkiffFailure, ExitedAt: time.Now().UTC()}
			if stopped {
				x.Code = 0
			} else {
				missing = append(missing, a.Name)
			}
			if err := abi.WriteJSON(p, x); err != nil {
				return 0, err
			}
		}
		if x.Signal == "SIGTERM" && stopped {
			x.Code = 0
		}
		exits = append(exits, x)
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "stage1-kvm: the VM ended (%v) without recording the exit of %s; its console:\n%s",
			werr, strings.Join(missing, ", "), consoleTail(s1Console, 20))
	} else if v.o.Debug {
		fmt.Fprintf(os.Stderr, "stage1-kvm: VM console:\n%s", consoleTail(s1Console, 60))
	}
	code := abi.PodCode(exits)
	if err := abi.WriteJSON(abi.PodExitFile, abi.PodExit{Code: code, ExitedAt: time.Now().UTC()}); err != nil {
		return 0, err
	}
	return code, nil
}

func abs(p string) string {
	a, _ := filepath.Abs(p)
	return a
}

// sameFile tells whether a and b are the same open file (skiff's stdout and
// stderr on one pipe, terminal or file): their output then shares one port,
// which keeps its interleaving.
func sameFile(a, b *os.File) bool {
	sa, errA := a.Stat()
	sb, errB := b.Stat()
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}
