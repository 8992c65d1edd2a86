//go:build hostvm

package hostvm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// request and response: runner/main.go's wire format.
type request struct {
	ID      int    `json:"id"`
	Script  string `json:"script"`
	Timeout int    `json:"timeout"`
}

type response struct {
	ID     int    `json:"id"`
	Hello  string `json:"hello,omitempty"`
	Stdout []byte `json:"stdout"`
	Stderr []byte `json:"stderr"`
	Code   int    `json:"code"`
	Err    string `json:"err,omitempty"`
}

// vm is the booted guest.
type vm struct {
	qemu    *exec.Cmd
	exited  chan struct{}
	conn    net.Conn
	r       *bufio.Reader
	mu      sync.Mutex
	qmu     sync.Mutex // qemu and exited
	next    int
	console string
	kernel  string
	tmp     string
}

// result is one guest command's outcome.
type result struct {
	Stdout, Stderr string
	Code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// repoRoot is the checkout (tests/hostvm/..).
func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// boot starts the VM and waits for its runner's greeting. Everything it
// creates is removed by t's cleanup; the console log is copied out (and its
// path printed) when t failed.
func boot(t *testing.T) *vm {
	if os.Geteuid() != 0 {
		t.Skip("the host VM test needs root (QEMU, the guest's files)")
	}
	root := repoRoot(t)
	vmdir := envOr("SKIFF_HOSTVM_DIR", filepath.Join(root, "build", "hostvm"))
	bin := envOr("SKIFF_BIN", filepath.Join(root, "bin", "skiff"))
	images := envOr("SKIFF_TEST_IMAGES", filepath.Join(root, "build", "images"))
	for _, f := range []string{filepath.Join(vmdir, "rootfs.img"), filepath.Join(vmdir, "vmlinuz"), filepath.Join(vmdir, "initrd.img"), bin, images} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%v: run `make test-host` (it builds the VM with scripts/build-hostvm, skiff and the test images)", err)
		}
	}
	tmp, err := os.MkdirTemp("", "skiff-hostvm-")
	if err != nil {
		t.Fatal(err)
	}
	v := &vm{tmp: tmp, console: filepath.Join(tmp, "console.log")}
	t.Cleanup(func() { v.teardown(t) })

	// The guest's tools share: the runner, and the functional tests for the
	// conformance scenario.
	tools := filepath.Join(tmp, "tools")
	os.Mkdir(tools, 0o755)
	build := func(out string, args ...string) {
		c := exec.Command("go", args...)
		c.Dir = root
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", out, err, b)
		}
	}
	build("hostvm-runner", "build", "-trimpath", "-o", filepath.Join(tools, "hostvm-runner"), "./tests/hostvm/runner")
	build("functional.test", "test", "-c", "-tags", "functional", "-o", filepath.Join(tools, "functional.test"), "./tests/")

	// inspect labelled dev.skiff.notify=true (it sends READY=1 itself), as tests/systemd_test.go makes it.
	nd := filepath.Join(tmp, "notify")
	for _, c := range [][]string{
		{"mkdir", nd},
		{"tar", "-xf", filepath.Join(images, "inspect.oci.tar"), "-C", nd},
		{"umoci", "config", "--image", nd + ":latest", "--tag", "latest", "--config.label", "dev.skiff.notify=true"},
		{"tar", "-C", nd, "-cf", filepath.Join(tools, "notify.oci.tar"), "."},
		{"rm", "-rf", nd},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%q: %v: %s", c, err, out)
		}
	}

	sock := filepath.Join(tmp, "cmd.sock")
	accel := envOr("SKIFF_HOSTVM_ACCEL", "tcg")
	args := []string{
		"-accel", accel, "-M", "microvm", "-m", envOr("SKIFF_HOSTVM_MEM", "1536"), "-smp", envOr("SKIFF_HOSTVM_CPUS", "1"),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", filepath.Join(vmdir, "vmlinuz"), "-initrd", filepath.Join(vmdir, "initrd.img"),
		"-append", "console=ttyS0 root=/dev/vda rw panic=-1 tsc_early_khz=2000000 tsc=reliable systemd.show_status=1",
		"-serial", "file:" + v.console,
		// A writable layer over the cached image, in a file QEMU unlinks at once.
		"-snapshot",
		"-drive", "file=" + filepath.Join(vmdir, "rootfs.img") + ",if=none,id=root,format=raw",
		"-device", "virtio-blk-device,drive=root",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=cmd,path=" + sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=cmd,name=skiff.cmd",
		// No network: pods use the guest's own CNI.
		"-nic", "none",
	}
	if accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	for _, s := range []struct{ tag, path string }{
		{"skiff-bin", filepath.Dir(bin)}, {"skiff-images", images}, {"skiff-tools", tools},
	} {
		args = append(args, "-fsdev", "local,id="+s.tag+",path="+s.path+",security_model=none,readonly=on",
			"-device", "virtio-9p-device,fsdev="+s.tag+",mount_tag="+s.tag)
	}
	// Interrupted (^C, a CI timeout's SIGTERM): leave nothing behind either.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; ok {
			v.kill()
			os.RemoveAll(tmp)
			os.Exit(2)
		}
	}()
	t.Cleanup(func() { signal.Stop(sigs); close(sigs) })

	// TCG on a loaded machine now and then hangs early in the guest kernel
	// (seen: at SMP bring-up, at TSC calibration): a boot whose console
	// stalls is killed and tried once more.
	start := time.Now()
	for attempt := 1; attempt <= 2; attempt++ {
		if err = v.start(args, sock); err == nil {
			break
		}
		t.Logf("boot attempt %d: %v; console kept in %s", attempt, err, v.keepConsole(t))
	}
	if err != nil {
		t.Fatalf("the guest did not come up: %v", err)
	}
	t.Logf("guest up in %.1fs, kernel %s", time.Since(start).Seconds(), v.kernel)
	return v
}

// start boots QEMU with args and waits for the runner's greeting on sock.
func (v *vm) start(args []string, sock string) error {
	os.Remove(sock)
	os.Remove(v.console)
	qemu := exec.Command("qemu-system-x86_64", args...)
	qemu.Env = append(os.Environ(), "TMPDIR="+v.tmp)
	qlog, err := os.Create(filepath.Join(v.tmp, "qemu.log"))
	if err != nil {
		return err
	}
	qemu.Stdout, qemu.Stderr = qlog, qlog
	qemu.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	exited := make(chan struct{})
	if err := qemu.Start(); err != nil {
		qlog.Close()
		return fmt.Errorf("qemu: %w", err)
	}
	go func() { qemu.Wait(); qlog.Close(); close(exited) }()
	v.qmu.Lock()
	v.qemu, v.exited = qemu, exited
	v.qmu.Unlock()

	greeted := make(chan struct{})
	stalled := make(chan struct{})
	go func() { // the stall watchdog
		var size int64 = -1
		last := time.Now()
		for {
			select {
			case <-greeted:
				return
			case <-exited:
				return
			case <-time.After(5 * time.Second):
			}
			if fi, err := os.Stat(v.console); err == nil && fi.Size() != size {
				size, last = fi.Size(), time.Now()
			} else if time.Since(last) > 150*time.Second {
				close(stalled)
				qemu.Process.Kill()
				return
			}
		}
	}()
	fail := func(err error) error {
		qemu.Process.Kill()
		<-exited
		select {
		case <-stalled:
			return fmt.Errorf("the guest's console stalled for 150s (%v)", err)
		default:
		}
		if v.conn != nil {
			v.conn.Close()
			v.conn = nil
		}
		return err
	}
	deadline := time.Now().Add(600 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			v.conn = c
			break
		}
		select {
		case <-exited:
			return fail(fmt.Errorf("qemu exited before the guest came up: %s", v.readTail("qemu.log")))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("qemu's command socket did not appear: %v", err))
		}
	}
	v.r = bufio.NewReaderSize(v.conn, 1<<20)
	v.conn.SetReadDeadline(deadline)
	var hello response
	if err := v.read(&hello); err != nil || hello.Hello == "" {
		return fail(fmt.Errorf("the guest's runner did not greet (%v)", err))
	}
	close(greeted)
	v.kernel = hello.Hello
	return nil
}

// kill stops QEMU (if running) and waits for it.
func (v *vm) kill() bool {
	v.qmu.Lock()
	qemu, exited := v.qemu, v.exited
	v.qmu.Unlock()
	if qemu == nil || qemu.Process == nil {
		return true
	}
	qemu.Process.Kill()
	select {
	case <-exited:
		return true
	case <-time.After(30 * time.Second):
		return false
	}
}

// read decodes one line from the runner, bounded in size.
func (v *vm) read(into *response) error {
	var line []byte
	for {
		chunk, isPrefix, err := v.r.ReadLine()
		if err != nil {
			return err
		}
		line = append(line, chunk...)
		if len(line) > 32<<20 {
			return errors.New("a reply over 32 MiB from the guest")
		}
		if !isPrefix {
			break
		}
	}
	return json.Unmarshal(line, into)
}

// exec runs script in the guest with bash and returns its outcome.
func (v *vm) exec(timeout time.Duration, script string) (result, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.next++
	req := request{ID: v.next, Script: script, Timeout: int(timeout.Seconds())}
	b, _ := json.Marshal(req)
	v.conn.SetDeadline(time.Now().Add(timeout + 60*time.Second))
	if _, err := v.conn.Write(append(b, '\n')); err != nil {
		return result{}, fmt.Errorf("to the guest: %w", err)
	}
	var resp response
	for {
		if err := v.read(&resp); err != nil {
			return result{}, fmt.Errorf("from the guest: %w", err)
		}
		if resp.ID == req.ID {
			break
		}
	}
	r := result{Stdout: string(resp.Stdout), Stderr: string(resp.Stderr), Code: resp.Code}
	if resp.Err != "" {
		return r, fmt.Errorf("guest runner: %s", resp.Err)
	}
	return r, nil
}

// run is exec that fails t when the channel breaks or the script times out.
func (v *vm) run(t *testing.T, timeout time.Duration, script string) result {
	t.Helper()
	r, err := v.exec(timeout, script)
	if err != nil {
		t.Fatalf("%v (script %q)\n%s", err, script, r)
	}
	return r
}

// must runs script and fails the test unless it exits 0.
func (v *vm) must(t *testing.T, script string) string {
	t.Helper()
	r := v.run(t, 300*time.Second, script)
	if r.Code != 0 {
		t.Fatalf("guest: %s\n%s", script, r)
	}
	return r.Stdout
}

func (v *vm) readTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(v.tmp, name))
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// keepConsole copies the console log out of the temp dir and returns its path.
func (v *vm) keepConsole(t *testing.T) string {
	dir := envOr("SKIFF_HOSTVM_ARTIFACTS", os.TempDir())
	dst := filepath.Join(dir, fmt.Sprintf("skiff-hostvm-console-%s.log", time.Now().UTC().Format("20060102T150405")))
	src, err := os.Open(v.console)
	if err != nil {
		return "(no console log: " + err.Error() + ")"
	}
	defer src.Close()
	out, err := os.Create(dst)
	if err != nil {
		return "(console log not kept: " + err.Error() + ")"
	}
	io.Copy(out, io.LimitReader(src, 64<<20))
	out.Close()
	return dst
}

func (v *vm) teardown(t *testing.T) {
	if t.Failed() && v.qemu != nil {
		// The guest's journal tells more than its console.
		if v.conn != nil {
			if r, err := v.exec(60*time.Second, "journalctl -b --no-pager | tail -n 400"); err == nil {
				if f, err := os.OpenFile(v.console, os.O_WRONLY|os.O_APPEND, 0); err == nil {
					f.WriteString("\n==== journalctl -b (last 400 lines, by tests/hostvm) ====\n" + r.Stdout)
					f.Close()
				}
			}
		}
		t.Logf("the guest's console log is kept in %s", v.keepConsole(t))
	}
	if v.conn != nil {
		v.conn.Close()
	}
	if !v.kill() {
		t.Errorf("qemu (pid %d) did not exit after SIGKILL", v.qemu.Process.Pid)
	}
	os.RemoveAll(v.tmp)
}

// contains fails t unless s contains each of want.
func contains(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s: no %q in:\n%s", what, w, s)
		}
	}
}
