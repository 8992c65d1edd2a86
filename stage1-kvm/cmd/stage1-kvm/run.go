package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/skiff-project/skiff/internal/atomicfile"
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
	s1Kill    = abi.Stage1Dir + "/kill-requested" // written before the VM is killed on request or after the stop timeout
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

// Under TCG the VM gets one CPU (tcgCPUs). With two (QEMU 7.2,
// multi-threaded TCG), 2 of 483 sequential boots hung for good, both the
// same way (QEMU's monitor, a few seconds apart): both vCPUs looping
// through the guest's int3 handler at the first instruction of
// sched_clock_tick, the site the guest kernel was live-patching (a static
// key flipped by a late initcall, text_poke_bp) while the other CPU ran it:
// cross-modifying code between two TCG vCPU threads. One vCPU never has a
// second CPU running the code being patched (nor SMP bring-up, IPIs or TSC
// sync to wait on), and boots a little faster. It is not the whole story:
// 1 of 468 one-vCPU boots hung differently (idle in HLT after the guest's
// init asked for poweroff, as if a timer wakeup never came); the boot bound
// and its retry cover what is left.
const tcgCPUs = 1

// recordPoll is how often run takes what the guest reports (records.go).
const recordPoll = 100 * time.Millisecond

// A boot's bound: how long the guest gets to bring the pod agent up (a few
// seconds under TCG on a busy host; well under one with KVM). A boot that
// does not get there (a guest that hangs: about once in 100-200 boots
// under TCG with two vCPUs, see tcgCPUs; whatever is left) is killed and the VM booted once more, with three times
// the bound (so a pod on a host too busy for the first bound still gets
// the 2 minutes a single boot used to); if that one fails too, the pod
// fails with the console's tail. EnvBootTimeout sets the first bound.
const (
	bootTimeoutTCG = 30 * time.Second
	bootTimeoutKVM = 10 * time.Second
	bootAttempts   = 2
	bootRetryScale = 3
)

// EnvBootTimeout sets the first boot's bound (a Go duration, e.g. "90s")
// for a host too slow or too busy for the default.
const EnvBootTimeout = "SKIFF_KVM_BOOT_TIMEOUT"

// envTestHangBoots is for skiff's own tests of the boot retry: the first N
// boots start QEMU with its CPUs stopped (-S), a guest that never comes up.
const envTestHangBoots = "SKIFF_KVM_TEST_HANG_BOOTS"

// s1ConsoleBoot is the console of failed boot N, kept beside the last one.
func s1ConsoleBoot(n int) string { return fmt.Sprintf("%s/console-boot%d.log", abi.Stage1Dir, n) }

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
func chooseAccel(quiet bool) string {
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
	if !quiet {
		fmt.Fprintf(os.Stderr, "stage1-kvm: warning: %s; using TCG emulation (slow; %s=kvm forces KVM)\n", why, EnvAccel)
	}
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
	return v.runPod()
}

// runPod runs the pod's VM: run's, and OCI mode's supervisor's (oci.go).
func (v *vm) runPod() error {
	o, m := v.o, v.m
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
	var errCg error
	if !v.oci() {
		errCg = v.cgroup.destroy()
	}
	if err != nil {
		return fmt.Errorf("pod %s: %w", o.UUID, err)
	}
	if v.oci() { // the supervisor is in the cgroup too: delete's gc removes it
		v.ociTeardownNet()
		return codeError(code)
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
	accel  string          // "kvm" or "tcg"
	agent  int             // QEMU's descriptor of the agent's port (each boot has its own)
	// ociCgroup, in OCI mode only (oci.go), is the container's host
	// cgroup: the caller's stdio goes to QEMU unaltered (no log), the
	// bundle's rootfs is shared in place, there is no CNI, and signals go
	// to the app.
	ociCgroup string
	ociNetNS  string            // OCI mode: the network namespace the bundle joins, or ""
	relays    []<-chan struct{} // OCI mode: closed when each output is copied
}

// oci tells whether the VM runs an OCI bundle's container (oci.go).
func (v *vm) oci() bool { return v.ociCgroup != "" }

// fd passes f to QEMU and returns its number there.
func (v *vm) fd(f *os.File) int {
	v.extra = append(v.extra, f)
	return 2 + len(v.extra)
}

// setupNet sets the pod's network up and wires its CNI interfaces to taps
// for QEMU.
func (v *vm) setupNet() error {
	var err error
	if v.oci() { // no CNI of ours: what the caller put in the bundle's namespace
		v.net = &podnet.Net{}
		return v.ociSetupNet()
	}
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
	var log *stdio.Log
	if !v.oci() { // OCI mode: the caller keeps the logs
		if log, err = stdio.OpenLog(abi.LogFile, stdio.DefaultLogMax); err != nil {
			return 0, err
		}
		defer log.Close()
	}
	mem, cpus := v.size()
	// OCI mode: stderr is the container's; the warning only with --debug.
	accel := chooseAccel(v.oci() && !o.Debug)
	v.accel = accel
	if accel == "tcg" && cpus > tcgCPUs {
		o.Debugf("TCG: %d CPU rather than %d (tcgCPUs)", tcgCPUs, cpus)
		cpus = tcgCPUs
	}
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
	// The agent's port: each boot's QEMU has one end of a socketpair of
	// its own (newAgent), its broker the other.
	v.agent = v.fd(nil)
	v.args = append(v.args,
		"-chardev", fmt.Sprintf("socket,id=agent,fd=%d", v.agent),
		"-device", "virtserialport,chardev=agent,name="+agent.PortName)
	defer func() {
		if v.broker != nil {
			v.broker.Close()
		}
	}()
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
	// One port for both streams with --interactive on a terminal (the
	// app's terminal in the guest); when skiff's stdout and stderr are one
	// terminal, so that the screen shows them in the app's order (the log
	// then has both as stdout); and in OCI mode when the caller's stdout
	// and stderr are one file (its descriptors, unaltered). Else two, so
	// that the log keeps which stream each line came from, even when they
	// are one file ('>f 2>&1').
	combined := v.term != nil || (sameFile(os.Stdout, os.Stderr) && (v.oci() || term.IsTerminal(int(os.Stdout.Fd()))))
	for i, a := range v.m.Apps {
		root := filepath.Join(v.o.PodDir, s1Apps, a.Name)
		d := abi.AppDir(".", a.Name)
		upper, work := filepath.Join(d, "upper"), filepath.Join(d, "work")
		for _, p := range []string{root, upper, work} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		}
		if v.oci() { // the bundle's rootfs in place: the app's writes reach it, as with runc
			if err := unix.Mount(a.Rootfs.Layers[0], root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("app %s: bind rootfs: %w", a.Name, err)
			}
		} else if err := overlay.Mount(a.Rootfs.Layers, upper, work, root); err != nil {
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
			if v.oci() { // to the caller's descriptor as it comes, no log
				w, done, err := relay(s.out)
				if err != nil {
					return err
				}
				v.relays = append(v.relays, done)
				id := fmt.Sprintf("r%d", len(v.relays))
				v.args = append(v.args,
					"-chardev", fmt.Sprintf("file,id=%s,path=/dev/fd/%d", id, v.fd(w)),
					"-device", fmt.Sprintf("virtserialport,chardev=%s,name=%s", id, s.port))
				continue
			}
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

// newAgent makes a boot's agent port: a socketpair whose one end is a new
// broker's (replacing the last boot's) and whose other QEMU gets as
// descriptor v.agent; run closes that one once QEMU has it.
func (v *vm) newAgent() (*os.File, error) {
	if v.broker != nil {
		v.broker.Close()
		v.broker = nil
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	mine := os.NewFile(uintptr(pair[0]), "agent")
	theirs := os.NewFile(uintptr(pair[1]), "agent-qemu")
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, err
	}
	if v.broker, err = agent.NewBroker(conn, filepath.Join(v.o.PodDir, agent.SocketFile)); err != nil {
		conn.Close()
		theirs.Close()
		return nil, err
	}
	v.extra[v.agent-3] = theirs
	return theirs, nil
}

// closeExtra closes run's copies of QEMU's descriptors (the taps, the
// tees' write ends), kept while a boot may still be retried; the tees end
// when QEMU's copies are gone too.
func (v *vm) closeExtra() {
	for i, f := range v.extra {
		if f != nil {
			f.Close()
			v.extra[i] = nil
		}
	}
}

// bootTimeout is the first boot's bound (see bootTimeoutTCG).
func (v *vm) bootTimeout() time.Duration {
	d := bootTimeoutTCG
	if v.accel == "kvm" {
		d = bootTimeoutKVM
	}
	if s := os.Getenv(EnvBootTimeout); s != "" {
		if t, err := time.ParseDuration(s); err == nil && t > 0 {
			d = t
		} else {
			fmt.Fprintf(os.Stderr, "stage1-kvm: warning: %s=%q is not a positive duration (like 90s); using %s\n", EnvBootTimeout, s, d)
		}
	}
	return d
}

// startQEMU starts boot attempt n's QEMU in the pod's cgroup and records
// its pid; it returns the channel of its end.
func (v *vm) startQEMU(dir string, n int) (*exec.Cmd, <-chan error, error) {
	qemuEnd, err := v.newAgent()
	if err != nil {
		return nil, nil, err
	}
	args := v.args
	if h, _ := strconv.Atoi(os.Getenv(envTestHangBoots)); n <= h {
		args = append([]string{"-S"}, args...)
	}
	v.o.Debugf("qemu (boot %d) %s", n, strings.Join(args, " "))
	cmd, err := qemuCommand(dir, args)
	if err != nil {
		qemuEnd.Close()
		return nil, nil, err
	}
	cmd.Dir = v.o.PodDir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stderr, os.Stderr
	cmd.ExtraFiles = v.extra
	// Debian's QEMU loads TCG as a module; the image carries its own.
	cmd.Env = append(os.Environ(), "QEMU_MODULE_DIR="+filepath.Join(dir, "modules"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}
	err = cmd.Start()
	qemuEnd.Close() // QEMU has its own: its end is the broker's EOF
	v.extra[v.agent-3] = nil
	if err != nil {
		return nil, nil, fmt.Errorf("start qemu: %w", err)
	}
	v.o.Debugf("qemu started, pid %d", cmd.Process.Pid)
	if v.cgroup == nil {
		cg := "/skiff/" + v.m.UUID
		if v.oci() {
			cg = v.ociCgroup
		}
		v.cgroup, err = newPodCgroupAt(cg, cmd.Process.Pid)
	} else {
		err = v.cgroup.add(cmd.Process.Pid)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "stage1-kvm: pod %s: %v\n", v.m.UUID, err)
		_ = cmd.Process.Kill()
	}
	pidFile := abi.PIDFile
	if v.oci() { // pid is the supervisor's
		pidFile = s1QEMUPid
	}
	if err := atomicfile.Write(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, done, nil
}

// boot starts QEMU and waits for the VM to end, booting it once more when
// the first boot does not bring the agent up (see bootTimeoutTCG).
func (v *vm) boot(dir string) (int, error) {
	o := v.o
	defer v.closeExtra()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2)
	if v.oci() {
		signal.Notify(sigs, unix.SIGQUIT, unix.SIGWINCH)
	}
	// Once QEMU has exited, a signal (a `systemctl stop` landing as the pod
	// ends on its own) must not kill run halfway through the cleanup that
	// follows: sigs stays subscribed, and is drained.
	defer func() {
		go func() {
			for range sigs {
			}
		}()
	}()
	attempt, bound := 1, v.bootTimeout()
	cmd, done, err := v.startQEMU(dir, attempt)
	if err != nil {
		return 0, err
	}
	// A stop that came before QEMU's pid file was there (stop leaves its
	// markers first): act on it as on our own SIGTERM (twice for --force).
	if _, err := os.Stat(s1Stop); err == nil {
		sigs <- unix.SIGTERM
		if _, err := os.Stat(s1Kill); err == nil {
			sigs <- unix.SIGTERM
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var werr, bootErr error
	var kill <-chan time.Time
	// A guest that never gets its agent up (a kernel or init that hangs)
	// must not hold skiff forever: after the boot's bound the VM is
	// killed, and booted again or the pod fails with the console's tail.
	ready, bootTimer := v.broker.Ready(), time.After(bound)
	// What the guest reports (ready, the apps' exits) is taken as it comes.
	records := time.NewTicker(recordPoll)
	defer records.Stop()
wait:
	for {
		var failed string // why this boot failed, when it did
		select {
		case werr = <-done:
			break wait
		case <-records.C:
			v.rec.poll()
		case <-ready:
			ready, bootTimer = nil, nil
			o.Debugf("the pod agent is up (boot %d)", attempt)
			v.closeExtra()
			if v.o.Interactive {
				go v.stdin(ctx)
			}
		case <-bootTimer:
			bootTimer = nil
			if kill != nil { // stopping: the stop's own bound applies
				continue
			}
			_ = cmd.Process.Kill()
			werr = <-done
			failed = fmt.Sprintf("the pod agent did not come up within %s", bound)
		case <-kill:
			o.Debugf("the VM did not power off in time: killing it")
			_ = os.WriteFile(s1Kill, nil, 0o644)
			_ = cmd.Process.Kill()
		case s := <-sigs:
			if v.oci() {
				v.ociSignal(ctx, s.(unix.Signal), ready == nil, cmd)
				continue
			}
			if s != unix.SIGTERM && s != unix.SIGINT {
				b := v.broker
				go func() {
					if err := b.Client().Signal(ctx, "", s.(unix.Signal)); err != nil {
						fmt.Fprintf(os.Stderr, "skiff: pod %s: forward %v: %v\n", v.m.UUID, s, err)
					}
				}()
				continue
			}
			_ = os.WriteFile(s1Stop, nil, 0o644)
			if kill != nil { // a second one: now
				_ = os.WriteFile(s1Kill, nil, 0o644)
				_ = cmd.Process.Kill()
				continue
			}
			kill = time.After(stopWait(v.o.StopTimeout))
			b := v.broker
			go func() { _ = b.Client().Stop(ctx, agent.StopRequest{}) }()
		}
		if failed == "" {
			continue
		}
		if attempt == bootAttempts {
			fmt.Fprintf(os.Stderr, "stage1-kvm: pod %s: the console of its last boot (%s) ends:\n%s",
				v.m.UUID, filepath.Join(o.PodDir, s1Console), indent(consoleTail(s1Console, 10)))
			bootErr = fmt.Errorf("its VM failed to boot %d times (%s, console above); the host may be too slow or too busy: run the pod again, or give the guest longer with %s=90s",
				attempt, failed, EnvBootTimeout)
			break wait
		}
		_ = os.Rename(s1Console, s1ConsoleBoot(attempt))
		attempt, bound = attempt+1, bootRetryScale*bound
		fmt.Fprintf(os.Stderr, "stage1-kvm: warning: pod %s: %s; booting its VM again (console of the failed boot: %s)\n",
			v.m.UUID, failed, filepath.Join(o.PodDir, s1ConsoleBoot(attempt-1)))
		if cmd, done, err = v.startQEMU(dir, attempt); err != nil {
			return 0, err
		}
		ready, bootTimer = v.broker.Ready(), time.After(bound)
	}
	o.Debugf("qemu exited: %v", werr)
	v.closeExtra()
	for _, t := range v.tees {
		t.Wait(5 * time.Second)
	}
	for _, done := range v.relays {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	if bootErr != nil {
		v.recordFailure()
		return 0, bootErr
	}
	return v.finish(werr)
}

// recordFailure records a pod whose VM never came up as failed by skiff
// itself: each app's exit and the pod's with abi.ExitSkiffFailure.
func (v *vm) recordFailure() {
	now := time.Now().UTC()
	for _, a := range v.m.Apps {
		x := abi.AppExit{App: a.Name, Code: abi.ExitSkiffFailure, ExitedAt: now}
		_ = abi.WriteJSON(filepath.Join(abi.AppDir(".", a.Name), abi.AppExitFile), x)
	}
	_ = abi.WriteJSON(abi.PodExitFile, abi.PodExit{Code: abi.ExitSkiffFailure, ExitedAt: now})
}

// stdin relays skiff's stdin to the first app (--interactive), once the
// agent is up.
func (v *vm) stdin(ctx context.Context) {
	stdin := agent.Stdio{Stdin: os.Stdin}
	if v.term != nil {
		stdin.Resize = v.term.Resize()
	}
	if err := v.broker.Client().Stdin(ctx, v.m.Apps[0].Name, stdin); err != nil && ctx.Err() == nil {
		v.o.Debugf("stdin: %v", err)
	}
}

// indent indents each line of s by two spaces.
func indent(s string) string {
	if strings.TrimSpace(s) == "" {
		return "  (nothing)\n"
	}
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

// finish collects the apps' exits (recorded by app-exited in the guest),
// writes the pod's and returns its code. Apps stopped on request with
// SIGTERM count as clean, as with the default flavor.
func (v *vm) finish(werr error) (int, error) {
	_, stopErr := os.Stat(s1Stop)
	stopped := stopErr == nil
	_, killErr := os.Stat(s1Kill)
	killed := killErr == nil
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
			if killed { // killed on request: a SIGKILL's code, never success
				x.Code, x.Signal = 137, "SIGKILL"
			} else if stopped {
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
// stderr on one terminal, or an OCI caller's on one pipe or file): their
// output then shares one port, which keeps its interleaving.
func sameFile(a, b *os.File) bool {
	sa, errA := a.Stat()
	sb, errB := b.Stat()
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}
