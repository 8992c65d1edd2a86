package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The kvm-boot scenario: skiff's kvm pod (`run --stage1-path=KVM --net=none
// busybox -- /bin/echo hi`) against a bare boot of the same QEMU, kernel and
// firmware, taken from the same stage1 image, with the same machine
// arguments, to a static init (bench/cmd/kvminit) that prints "hi" and powers
// off. Each boot is timed to its "hi" line and to its exit, and the QEMU
// process's peak RSS (VmHWM) is sampled while it runs.

const (
	kvmLine  = "hi"                // what the app and kvminit print
	kvmImage = "usr/lib/skiff/kvm" // in the kvm stage1 image's rootfs
)

// kvmSample is one boot: to the "hi" line, to exit, and QEMU's VmHWM (MiB).
type kvmSample struct {
	output, exit time.Duration
	hwm          float64
}

// kvmBoot holds the scenario's inputs, built once under Env.Tmp.
type kvmBoot struct {
	stage1   string   // private copy of the kvm stage1 image (a rebuild of bin/ during the run cannot reach it)
	kvm      string   // usr/lib/skiff/kvm of its unpacked rootfs
	initrd   string   // newc cpio: kvminit as /init, /dev/console
	skiffDir string   // skiff --dir of the pods
	machine  []string // QEMU's machine arguments as skiff passed them (-accel, -M, -m, -smp, -cpu, -append)
	version  string   // the image's QEMU version
}

// kvmScenario runs kvm-boot round-robin, iters times after a probe and
// warmup warm-ups each (the probe is a full run of the same boot: in quick
// mode it is the only warm-up). Its rows: kvm-boot (to the "hi" line), kvm-boot-exit and
// kvm-boot-rss; the bare boot's rows carry skiff's overhead in %. Without the
// kvm stage1 image (or kvminit), every row says why and what to run.
func kvmScenario(ctx context.Context, e *Env, iters, warmup int) []*Result {
	rows := newKVMRows()
	k, err := e.setupKVM(ctx)
	if err != nil {
		status := "FAILED: " + err.Error()
		var na naError
		if errors.As(err, &na) {
			status = "n/a (" + na.Error() + ")"
		}
		rows.mark(0, status)
		rows.mark(1, status)
		return rows.all()
	}
	defer run(context.Background(), []string{e.Skiff, "--dir=" + k.skiffDir, "gc", "--grace-period=0s"})

	// skiff's probe, with --debug: it shows QEMU's command line, which the bare boot copies.
	out, _, err := run(ctx, k.skiffArgv(e, true))
	if err == nil {
		k.machine, err = qemuMachineArgs(out)
	}
	if err == nil && !hasLine(out, kvmLine) {
		err = fmt.Errorf("output lacks the line %q: %s", kvmLine, tail(out))
	}
	if err != nil {
		rows.mark(0, "FAILED: probe: "+err.Error())
		rows.mark(1, "FAILED: needs QEMU's command line from skiff's probe")
		logf("kvm-boot/skiff: FAILED: probe: %v", err)
		return rows.all()
	}
	k.version = k.qemuVersion(ctx)
	logf("kvm-boot: %s, %s", k.version, strings.Join(k.machine, " "))
	boots := []func() (kvmSample, string, error){
		func() (kvmSample, string, error) { return bootRun(ctx, k.skiffArgv(e, false), nil) },
		func() (kvmSample, string, error) { return bootRun(ctx, k.bareArgv(), k.bareEnv()) },
	}
	untimed := []int{warmup, 1 + warmup} // skiff's probe is above; the bare boot's is its first untimed run
	for i, n := range untimed {
		for w := 0; w < n && rows.live(i); w++ {
			if _, out, err := boots[i](); err != nil {
				rows.mark(i, "FAILED: untimed run: "+err.Error())
				logf("kvm-boot/%s: FAILED: %v: %s", kvmNames[i], err, tail(out))
			}
		}
	}
	for it := 0; it < iters && ctx.Err() == nil; it++ {
		for j := range boots {
			i := (it + j) % len(boots)
			if !rows.live(i) {
				continue
			}
			s, out, err := boots[i]()
			if err != nil {
				rows.mark(i, "FAILED: "+err.Error())
				logf("kvm-boot/%s: FAILED: %v: %s", kvmNames[i], err, tail(out))
				continue
			}
			logf("kvm-boot/%s: %q at %.2fs, exit at %.2fs, QEMU VmHWM %.0f MiB (load %s)",
				kvmNames[i], kvmLine, s.output.Seconds(), s.exit.Seconds(), s.hwm, loadavg())
			rows.add(i, s)
		}
	}
	rows.finish(k)
	return rows.all()
}

var kvmNames = [2]string{"skiff (kvm stage1)", "bare qemu (static init)"}

// kvmRows are the scenario's result groups (to the line, to exit, VmHWM),
// each with skiff's row then the bare boot's.
type kvmRows [3][2]*Result

func newKVMRows() *kvmRows {
	var r kvmRows
	for g, sc := range []struct{ name, unit string }{{"kvm-boot", "s"}, {"kvm-boot-exit", "s"}, {"kvm-boot-rss", "MiB"}} {
		for i, n := range kvmNames {
			r[g][i] = &Result{Scenario: sc.name, Runtime: n, Unit: sc.unit, Status: "ok"}
		}
	}
	return &r
}

func (r *kvmRows) all() []*Result {
	var out []*Result
	for _, g := range r {
		out = append(out, g[:]...)
	}
	return out
}

func (r *kvmRows) live(i int) bool { return r[0][i].ok() }

// mark sets runtime i's status in every group (a first failure stays).
func (r *kvmRows) mark(i int, status string) {
	for _, g := range r {
		if g[i].ok() {
			g[i].Status = status
		}
	}
}

func (r *kvmRows) add(i int, s kvmSample) {
	r[0][i].Samples = append(r[0][i].Samples, s.output.Seconds())
	r[1][i].Samples = append(r[1][i].Samples, s.exit.Seconds())
	r[2][i].Samples = append(r[2][i].Samples, s.hwm)
}

// finish computes the medians, ratios and overheads, and writes the notes.
func (r *kvmRows) finish(k *kvmBoot) {
	var shape []string // the machine arguments but the kernel's command line (the same for both)
	for i := 0; i+1 < len(k.machine); i += 2 {
		if k.machine[i] != "-append" {
			shape = append(shape, k.machine[i], k.machine[i+1])
		}
	}
	setup := fmt.Sprintf("%s %s, as skiff runs it; overhead = skiff over the bare boot (goal: at most +25%% under TCG, issue #18)",
		k.version, strings.Join(shape, " "))
	notes := [3]string{
		fmt.Sprintf("start → the app's %q line (bare: kvminit's)", kvmLine),
		"start → exit",
		"peak RSS of the QEMU process (VmHWM, sampled every 20 ms while it runs)",
	}
	for g, rs := range r {
		for _, x := range rs {
			summarize(x)
			x.Note = notes[g] + "; " + setup
		}
		addRatios(rs[:], nil)
		if b := rs[1]; b.Ratio > 0 {
			b.Overhead = (b.Ratio - 1) * 100
			logf("%s: skiff's overhead over the bare boot: %+.1f%% (goal: at most +25%% under TCG, issue #18)", b.Scenario, b.Overhead)
		}
	}
}

// naError says why the scenario cannot run here and what to do about it,
// short enough for the table; the log has the details.
type naError struct{ msg string }

func (e naError) Error() string { return e.msg }

func notHere(short, format string, a ...any) naError {
	logf("kvm-boot: "+format, a...)
	return naError{short}
}

// setupKVM copies the kvm stage1 image, unpacks it for the bare boot's QEMU,
// kernel and firmware, and packs kvminit into an initramfs.
func (e *Env) setupKVM(ctx context.Context) (*kvmBoot, error) {
	if _, err := os.Stat(e.KVMStage1); err != nil {
		return nil, notHere("no kvm stage1: run 'make stage1-kvm'",
			"%s not found: build it with 'make stage1-kvm' (it needs 'scripts/install-deps --kvm')", e.KVMStage1)
	}
	if _, err := os.Stat(e.KVMInit); err != nil {
		return nil, notHere("no kvminit: run scripts/bench", "%s not found: scripts/bench builds it from bench/cmd/kvminit", e.KVMInit)
	}
	dir := filepath.Join(e.Tmp, "kvm")
	if err := os.MkdirAll(filepath.Join(dir, "initrd/dev"), 0o755); err != nil {
		return nil, err
	}
	k := &kvmBoot{stage1: filepath.Join(dir, "stage1-kvm.oci.tar"), skiffDir: e.newSkiffDir("skiff-kvm"),
		initrd: filepath.Join(dir, "initrd.cpio")}
	if _, err := must(ctx, "cp", e.KVMStage1, k.stage1); err != nil {
		return nil, err
	}
	bundle := filepath.Join(dir, "stage1")
	if err := unpackArchive(ctx, k.stage1, "kvm", bundle, e.Tmp); err != nil {
		return nil, fmt.Errorf("unpack %s: %v", e.KVMStage1, err)
	}
	k.kvm = filepath.Join(bundle, "rootfs", kvmImage)
	for _, f := range []string{"ld.so", "qemu-system-x86_64", "vmlinux", "lib", "modules", "share"} {
		if _, err := os.Stat(filepath.Join(k.kvm, f)); err != nil {
			return nil, notHere("not a kvm stage1: run 'make stage1-kvm'",
				"%s has no %s/%s (not a kvm stage1 image?): rebuild it with 'make stage1-kvm'", e.KVMStage1, kvmImage, f)
		}
	}
	// The initramfs: /init and the console node the kernel opens for its stdio.
	ird := filepath.Join(dir, "initrd")
	if _, err := must(ctx, "cp", e.KVMInit, filepath.Join(ird, "init")); err != nil {
		return nil, err
	}
	if err := syscall.Mknod(filepath.Join(ird, "dev/console"), syscall.S_IFCHR|0o600, 5<<8|1); err != nil {
		return nil, fmt.Errorf("mknod /dev/console: %w", err)
	}
	f, err := os.Create(k.initrd)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cpio := exec.CommandContext(ctx, "cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0")
	var stderr strings.Builder
	cpio.Dir, cpio.Stdin, cpio.Stdout, cpio.Stderr = ird, strings.NewReader("dev\ndev/console\ninit\n"), f, &stderr
	if err := cpio.Run(); err != nil {
		return nil, fmt.Errorf("cpio: %v: %s", err, stderr.String())
	}
	return k, f.Close()
}

func (k *kvmBoot) skiffArgv(e *Env, debug bool) []string {
	a := []string{e.Skiff, "--dir=" + k.skiffDir}
	if debug {
		a = append(a, "--debug")
	}
	return append(a, "run", "--insecure-options=image", "--stage1-path="+k.stage1, "--net=none",
		"oci-archive:"+e.Busybox, "--", "/bin/echo", kvmLine)
}

// bareArgv runs the image's QEMU as stage1-kvm does (its own loader and
// libraries, firmware from share/) with skiff's machine arguments, kvminit's
// initramfs and the serial console on stdout.
func (k *kvmBoot) bareArgv() []string {
	a := []string{filepath.Join(k.kvm, "ld.so"), "--library-path", filepath.Join(k.kvm, "lib"),
		filepath.Join(k.kvm, "qemu-system-x86_64"), "-L", filepath.Join(k.kvm, "share")}
	a = append(a, k.machine...)
	return append(a, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", filepath.Join(k.kvm, "vmlinux"), "-initrd", k.initrd, "-serial", "stdio")
}

func (k *kvmBoot) bareEnv() []string {
	return append(os.Environ(), "QEMU_MODULE_DIR="+filepath.Join(k.kvm, "modules"))
}

func (k *kvmBoot) qemuVersion(ctx context.Context) string {
	cmd := exec.CommandContext(ctx, filepath.Join(k.kvm, "ld.so"), "--library-path", filepath.Join(k.kvm, "lib"),
		filepath.Join(k.kvm, "qemu-system-x86_64"), "--version")
	out, err := cmd.Output()
	if err != nil {
		return "QEMU (version unknown)"
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.Replace(v, "QEMU emulator version", "QEMU", 1)
}

// qemuMachineArgs finds the "qemu ..." line of stage1-kvm's --debug output and
// returns the arguments that shape the machine: -accel, -M, -m, -smp, -cpu
// and -append (whose value runs to the next argument starting with "-";
// kernel parameters never do).
func qemuMachineArgs(debug string) ([]string, error) {
	var line string
	for _, l := range strings.Split(debug, "\n") {
		if _, rest, ok := strings.Cut(l, "ms qemu "); ok && strings.HasPrefix(l, "stage1-kvm: +") {
			line = rest
			break
		}
	}
	if line == "" {
		return nil, fmt.Errorf("no 'stage1-kvm: +Nms qemu ...' line in skiff's --debug output: %s", tail(debug))
	}
	f := strings.Fields(line)
	var out []string
	for i := 0; i < len(f)-1; i++ {
		switch f[i] {
		case "-accel", "-M", "-m", "-smp", "-cpu":
			out = append(out, f[i], f[i+1])
		case "-append":
			j := i + 1
			for j < len(f) && !strings.HasPrefix(f[j], "-") {
				j++
			}
			out = append(out, "-append", strings.Join(f[i+1:j], " "))
		}
	}
	for _, want := range []string{"-accel", "-M", "-m", "-smp", "-append"} {
		found := false
		for _, a := range out {
			found = found || a == want
		}
		if !found {
			return nil, fmt.Errorf("skiff's QEMU command line has no %s: %s", want, line)
		}
	}
	return out, nil
}

// bootRun runs argv (env nil: the harness's), timing its first output line
// equal to kvmLine and its exit, and samples VmHWM of the QEMU process at or
// below it every 20 ms. It fails on a non-zero exit, a missing line, a
// kernel panic, no QEMU process seen, or runTimeout.
func bootRun(ctx context.Context, argv, env []string) (kvmSample, string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		return kvmSample{}, "", err
	}
	defer pr.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var s kvmSample
	start := time.Now()
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return s, "", err
	}
	var out strings.Builder
	read := make(chan struct{})
	go func() {
		defer close(read)
		r := bufio.NewReader(pr)
		for {
			l, err := r.ReadString('\n')
			if s.output == 0 && strings.TrimRight(l, "\r\n") == kvmLine {
				s.output = time.Since(start)
			}
			out.WriteString(l)
			if err != nil {
				return
			}
		}
	}()
	stop, sampled := make(chan struct{}), make(chan float64)
	go func() { sampled <- sampleHWM(cmd.Process.Pid, stop) }()
	err = cmd.Wait()
	s.exit = time.Since(start)
	close(stop)
	s.hwm = <-sampled
	select {
	case <-read:
	case <-time.After(5 * time.Second): // something below it still holds the pipe
		pr.Close()
		<-read
	}
	o := out.String()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return s, o, fmt.Errorf("timed out after %s", runTimeout)
	case err != nil:
		return s, o, fmt.Errorf("%s: %v", filepath.Base(argv[0]), err)
	case s.output == 0:
		return s, o, fmt.Errorf("no line %q in the output", kvmLine)
	case strings.Contains(o, "Kernel panic"):
		return s, o, fmt.Errorf("the guest kernel panicked")
	case s.hwm == 0:
		return s, o, fmt.Errorf("no QEMU process seen below pid %d", cmd.Process.Pid)
	}
	return s, o, nil
}

// sampleHWM finds the QEMU process at or below root (its command line names
// qemu-system-x86_64) and returns the last VmHWM read from it, in MiB, once
// stop is closed. VmHWM is the process's own high-water mark, so the last
// reading is its peak up to at most 20 ms before it ended.
func sampleHWM(root int, stop <-chan struct{}) float64 {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	qemu, hwm := 0, 0.0
	for {
		if qemu == 0 {
			for _, p := range descendants(root) {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.Contains(string(b), "qemu-system-x86_64") {
					qemu = p
					break
				}
			}
		}
		if qemu != 0 {
			if v := vmHWM(qemu); v > hwm {
				hwm = v
			}
		}
		select {
		case <-stop:
			return hwm
		case <-t.C:
		}
	}
}

// vmHWM reads a process's peak RSS from /proc/PID/status, in MiB (0 once it has exited).
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func hasLine(out, line string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimRight(l, "\r") == line {
			return true
		}
	}
	return false
}
