package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/overlay"
	"github.com/skiff-project/skiff/stage1-kvm/guest"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/stdio"
)

// Paths in the pod directory private to this flavor.
const (
	s1Rootfs  = abi.Stage1Dir + "/rootfs" // rootfs/NAME: each app's overlay (in run's mount namespace only)
	s1Upper   = abi.Stage1Dir + "/upper"
	s1Work    = abi.Stage1Dir + "/work"
	s1Console = abi.Stage1Dir + "/console.log"    // the VM's serial console (kernel, init errors)
	s1Stop    = abi.Stage1Dir + "/stop-requested" // written by stop before it signals
)

// EnvAccel forces the accelerator: "kvm" or "tcg" (default: detect).
const EnvAccel = "SKIFF_KVM_ACCEL"

// EnvMemory sets the VM's memory in MiB (default 256).
const EnvMemory = "SKIFF_KVM_MEMORY"

// kernelCmdline: the console on the serial port, quiet; tsc_early_khz and
// tsc=reliable avoid TSC calibration hangs under TCG (MACHINE-NOTES §4).
const kernelCmdline = "console=ttyS0 quiet loglevel=3 panic=-1 tsc_early_khz=2000000 tsc=reliable rdinit=/init"

type runOpts struct {
	net         string
	debug       bool
	interactive bool
	uuid        string
	podDir      string
	start       time.Time
}

func (o runOpts) debugf(format string, args ...any) {
	if o.debug {
		fmt.Fprintf(os.Stderr, "stage1-kvm: +%dms %s\n", time.Since(o.start).Milliseconds(), fmt.Sprintf(format, args...))
	}
}

func parseRun(args []string) (runOpts, error) {
	rf, uuid, err := abi.ParseRunFlags(args)
	if err != nil {
		return runOpts{}, err
	}
	if len(rf.Ports) > 0 {
		return runOpts{}, errors.New("the kvm stage1 does not forward ports yet (--port)")
	}
	if rf.Net != "none" {
		return runOpts{}, fmt.Errorf("the kvm stage1 supports only --net=none so far (got %q)", rf.Net)
	}
	// --hostname, --stop-timeout, --listen-fds-app and the DNS flags are
	// accepted for the contract's sake and not acted on yet.
	o := runOpts{net: rf.Net, debug: rf.Debug, interactive: rf.Interactive, uuid: uuid, start: time.Now()}
	o.podDir, err = os.Getwd()
	return o, err
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
	// The overlays are mounted in a mount namespace of this thread's own,
	// which QEMU (forked from this thread) shares: when both are gone, so
	// are the mounts. QEMU's parent-death signal follows this thread too.
	runtime.LockOSThread()
	if fd, err := strconv.Atoi(os.Getenv(abi.EnvLockFD)); err == nil {
		unix.CloseOnExec(fd) // the lock stays with us, never with QEMU
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	var m abi.PodManifest
	if err := abi.ReadJSON(abi.PodManifestFile, &m); err != nil {
		return fmt.Errorf("pod %s: %w", o.uuid, err)
	}
	code, err := runPod(o, &m)
	if err != nil {
		return fmt.Errorf("pod %s: %w", o.uuid, err)
	}
	return codeError(code)
}

func runPod(o runOpts, m *abi.PodManifest) (int, error) {
	dir, err := kvmDir()
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(abi.Stage1Dir, 0o755); err != nil {
		return 0, err
	}
	accel := chooseAccel()
	cfg := guest.Config{Debug: o.debug}
	qargs := qemuArgs(dir, accel, o)
	log, err := stdio.OpenLog(abi.LogFile, stdio.DefaultLogMax)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	var tees []*stdio.Tee
	var extra []*os.File
	for i, a := range m.Apps {
		if err := abi.ValidateAppName(a.Name); err != nil {
			return 0, err
		}
		root := filepath.Join(o.podDir, s1Rootfs, a.Name)
		upper, work := filepath.Join(o.podDir, s1Upper, a.Name), filepath.Join(o.podDir, s1Work, a.Name)
		for _, d := range []string{root, upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return 0, err
			}
		}
		if err := mountOverlay(a.Rootfs.Layers, upper, work, root); err != nil {
			return 0, fmt.Errorf("app %s: mount rootfs: %w", a.Name, err)
		}
		tag := fmt.Sprintf("app%d", i)
		outPort, errPort := guest.Ports(a.Name)
		cfg.Apps = append(cfg.Apps, guest.App{Name: a.Name, RootfsTag: tag, StdoutPort: outPort, StderrPort: errPort})
		qargs = append(qargs,
			"-fsdev", fmt.Sprintf("local,id=%s,path=%s,security_model=passthrough,multidevs=remap", tag, root),
			"-device", fmt.Sprintf("virtio-9p-device,fsdev=%s,mount_tag=%s", tag, tag))
		for _, s := range []struct {
			stream, port string
			out          *os.File
		}{{"stdout", outPort, os.Stdout}, {"stderr", errPort, os.Stderr}} {
			t, err := log.Tee(a.Name, s.stream, s.out)
			if err != nil {
				return 0, err
			}
			tees = append(tees, t)
			fd := 3 + len(extra)
			extra = append(extra, t.W())
			id := fmt.Sprintf("c%d", fd)
			qargs = append(qargs,
				"-chardev", fmt.Sprintf("file,id=%s,path=/dev/fd/%d", id, fd),
				"-device", fmt.Sprintf("virtserialport,chardev=%s,name=%s", id, s.port))
		}
	}
	if err := abi.WriteJSON(guest.ConfigFile, cfg); err != nil {
		return 0, err
	}
	o.debugf("rootfs mounted, accel %s", accel)
	o.debugf("qemu %s", strings.Join(qargs, " "))
	cmd := exec.Command(filepath.Join(dir, "ld.so"), qargs...)
	cmd.Dir = o.podDir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stderr, os.Stderr
	cmd.ExtraFiles = extra
	// Debian's QEMU loads TCG as a module; the image carries its own.
	cmd.Env = append(os.Environ(), "QEMU_MODULE_DIR="+filepath.Join(dir, "modules"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start qemu: %w", err)
	}
	for _, t := range tees {
		t.CloseWriter() // QEMU has its own copies
	}
	o.debugf("qemu started, pid %d", cmd.Process.Pid)
	if err := os.WriteFile(abi.PIDFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
wait:
	for {
		select {
		case werr = <-done:
			break wait
		case s := <-sigs:
			if s == unix.SIGTERM || s == unix.SIGINT {
				o.debugf("%v: stopping the VM", s)
				_ = os.WriteFile(s1Stop, nil, 0o644)
				_ = cmd.Process.Signal(unix.SIGTERM)
			}
			// SIGHUP, SIGUSR1, SIGUSR2: not forwarded into the VM yet.
		}
	}
	o.debugf("qemu exited: %v", werr)
	for _, t := range tees {
		t.Wait(5 * time.Second)
	}
	return finish(o, m, werr)
}

// finish collects the apps' exits (written by the guest), writes the pod's
// and returns its code.
func finish(o runOpts, m *abi.PodManifest, werr error) (int, error) {
	_, stopErr := os.Stat(s1Stop)
	stopped := stopErr == nil
	var exits []abi.AppExit
	var missing []string
	for _, a := range m.Apps {
		p := filepath.Join(abi.AppDir(".", a.Name), abi.AppExitFile)
		var x abi.AppExit
		if err := abi.ReadJSON(p, &x); err != nil {
			x = abi.AppExit{App: a.Name, Code: abi.ExitSkiffFailure, ExitedAt: time.Now().UTC()}
			if stopped {
				x.Code = 0 // stopped on request counts as clean
			} else {
				missing = append(missing, a.Name)
			}
			if err := abi.WriteJSON(p, x); err != nil {
				return 0, err
			}
		}
		exits = append(exits, x)
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "stage1-kvm: the VM ended (%v) without recording the exit of %s; its console:\n%s",
			werr, strings.Join(missing, ", "), consoleTail(20))
	} else if o.debug {
		fmt.Fprintf(os.Stderr, "stage1-kvm: VM console:\n%s", consoleTail(40))
	}
	code := abi.PodCode(exits)
	if err := abi.WriteJSON(abi.PodExitFile, abi.PodExit{Code: code, ExitedAt: time.Now().UTC()}); err != nil {
		return 0, err
	}
	// Nothing stays on the host: the overlays die with our mount namespace.
	if err := os.WriteFile(abi.CleanFile, nil, 0o644); err != nil {
		return 0, err
	}
	return code, nil
}

func consoleTail(n int) string {
	b, _ := os.ReadFile(s1Console)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}

func qemuArgs(dir, accel string, o runOpts) []string {
	mem := "256"
	if v := os.Getenv(EnvMemory); v != "" {
		mem = v
	}
	args := []string{
		"--library-path", filepath.Join(dir, "lib"),
		filepath.Join(dir, "qemu-system-x86_64"),
		"-name", "guest=" + vmName(o.uuid),
		"-L", filepath.Join(dir, "share"),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-M", "microvm", "-accel", accel, "-m", mem, "-smp", "1",
		"-kernel", filepath.Join(dir, "vmlinux"),
		"-initrd", filepath.Join(dir, "initrd.cpio"),
		"-append", kernelCmdline,
		"-serial", "file:" + filepath.Join(o.podDir, s1Console),
		"-fsdev", fmt.Sprintf("local,id=%s,path=%s,security_model=passthrough,multidevs=remap", guest.PodTag, o.podDir),
		"-device", fmt.Sprintf("virtio-9p-device,fsdev=%s,mount_tag=%s", guest.PodTag, guest.PodTag),
		"-device", "virtio-serial-device",
	}
	if accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	return args
}

func mountOverlay(lowers []string, upper, work, target string) error {
	data, err := overlay.Options(lowers, upper, work)
	if err != nil {
		return err
	}
	return unix.Mount("overlay", target, "overlay", 0, data)
}
