//go:build functional

package tests

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// skiff as a systemd service: readiness, socket activation, signals, logs and
// generated units, driven with the tools of Debian's systemd package (this
// machine's init is not systemd).

// notifyImage is the inspect image with the label that declares sd_notify
// support, as an oci: layout.
func (e *env) notifyImage() string {
	e.t.Helper()
	if _, err := exec.LookPath("umoci"); err != nil {
		e.t.Skip("umoci is needed to label a test image (make deps installs it)")
	}
	dir := filepath.Join(e.t.TempDir(), "notify")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	for _, c := range [][]string{
		{"tar", "-xf", filepath.Join(e.images, "inspect.oci.tar"), "-C", dir},
		{"umoci", "config", "--image", dir + ":latest", "--tag", "notify", "--config.label", "dev.skiff.notify=true"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			e.t.Fatalf("%q: %v: %s", c, err, out)
		}
	}
	return "oci:" + dir + ":notify"
}

// notifySocket is a test-side NOTIFY_SOCKET whose datagrams arrive on the
// returned channel.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

func next(t *testing.T, ch <-chan string, timeout time.Duration, what string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(timeout):
		t.Fatalf("no %s within %s", what, timeout)
		return ""
	}
}

func TestNotifyReadyOnlyAfterTheAppIsReady(t *testing.T) {
	e := newEnv(t)
	img := e.notifyImage()
	sock, msgs := notifySocket(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	c := e.cmd(e.runArgs("--net=none", "--uuid-file-save="+uuidFile, img, "--",
		"notify", "STATUS=warming up", ",", "sleep", "1500ms", ",", "notify", "READY=1", ",", "sleep", "600")...)
	c.Env = append(c.Env, "NOTIFY_SOCKET="+sock)
	var out, errb syncBuffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	if m := next(t, msgs, 20*time.Second, "STATUS from the app"); m != "STATUS=warming up" {
		t.Fatalf("first notification %q, want the app's STATUS passed through", m)
	}
	statusAt := time.Now()
	uuid := strings.TrimSpace(readFile(t, uuidFile))
	if st := e.status(uuid); st.Ready {
		t.Fatalf("pod ready before its notify app sent READY=1: %+v", st)
	}
	m := next(t, msgs, 20*time.Second, "READY=1 from skiff")
	if m != "READY=1\nMAINPID="+strconv.Itoa(c.Process.Pid) {
		t.Fatalf("readiness %q, want READY=1 with skiff's pid %d", m, c.Process.Pid)
	}
	if d := time.Since(statusAt); d < time.Second {
		t.Fatalf("READY=1 %s after STATUS, before the app's own READY=1 (1.5s later)", d)
	}
	e.ok("status", "--wait-ready=10s", uuid)
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v; stderr %s", err, errb.String())
	}
	if m := next(t, msgs, 5*time.Second, "STOPPING=1"); m != "STOPPING=1" {
		t.Errorf("on SIGTERM skiff said %q, want STOPPING=1", m)
	}
	if strings.Contains(strings.ToLower(errb.String()), "machine") {
		t.Errorf("skiff mentions machined without it: %q", errb.String())
	}
}

func TestNotifyReadyWhenPlainAppsStarted(t *testing.T) {
	e := newEnv(t)
	sock, msgs := notifySocket(t)
	c := e.cmd(e.runArgs("--net=none", e.image("busybox"), "--", "/bin/sh", "-c", "sleep 600")...)
	c.Env = append(c.Env, "NOTIFY_SOCKET="+sock)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	if m := next(t, msgs, 20*time.Second, "READY=1"); m != "READY=1\nMAINPID="+strconv.Itoa(c.Process.Pid) {
		t.Fatalf("readiness %q", m)
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	if err := c.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
}

func TestWaitReadyFailsWhenThePodNeverGetsReady(t *testing.T) {
	e := newEnv(t)
	img := e.notifyImage()
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	c, _, _ := e.startBackground(e.runArgs("--net=none", "--uuid-file-save="+uuidFile, img, "--", "sleep", "600")...)
	waitFor(t, 20*time.Second, "the pod to run", func() bool {
		b, err := os.ReadFile(uuidFile)
		return err == nil && len(b) >= 36 && e.status(strings.TrimSpace(string(b))).PID > 0
	})
	uuid := strings.TrimSpace(readFile(t, uuidFile))
	e.fails(125, []string{"not ready"}, "status", "--wait-ready=1s", uuid)
	_ = c.Process.Signal(syscall.SIGTERM)
	_ = c.Wait()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSocketActivation(t *testing.T) {
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Skip("systemd-socket-activate (Debian's systemd package) is not installed")
	}
	// --net=none is a private network namespace: the socket was bound on the
	// host, so it still serves host connections.
	for _, netMode := range []string{"host", "none"} {
		t.Run(netMode, func(t *testing.T) {
			e := newEnv(t)
			addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
			args := append([]string{"-l", addr, "--fdname=web", e.bin}, e.globals()...)
			args = append(args, e.runArgs("--net="+netMode, e.image("inspect"), "--", "listen-fds", ",", "serve-fd3", "2")...)
			c := exec.Command("systemd-socket-activate", args...)
			var out, errb syncBuffer
			c.Stdout, c.Stderr = &out, &errb
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
			for i := 1; i <= 2; i++ {
				var conn net.Conn
				var err error
				waitFor(t, 10*time.Second, "the socket", func() bool {
					conn, err = net.Dial("tcp", addr)
					return err == nil
				})
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				line, err := bufio.NewReader(conn).ReadString('\n')
				conn.Close()
				if want := "served=" + strconv.Itoa(i) + "\n"; line != want {
					t.Fatalf("connection %d: got %q (%v), want %q; stderr %s", i, line, err, want, errb.String())
				}
			}
			if err := c.Wait(); err != nil {
				t.Fatalf("skiff: %v; stderr %s", err, errb.String())
			}
			for _, want := range []string{"LISTEN_FDS=1\n", "LISTEN_FDNAMES=web\n", "listen_pid_match=true\n", "fd3=socket:", "served=2\n"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("app output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// startPod runs a pod in the background (pod flags, then the image and its
// app arguments) and waits until it is ready.
func (e *env) startPod(podFlags []string, image string, app ...string) (uuid string, c *exec.Cmd, wait func() result) {
	e.t.Helper()
	uuidFile := filepath.Join(e.t.TempDir(), "uuid")
	args := append(append([]string{"--net=none", "--uuid-file-save=" + uuidFile}, podFlags...), image)
	c, out, errb := e.startBackground(e.runArgs(append(args, app...)...)...)
	waitFor(e.t, 20*time.Second, "the pod to be ready", func() bool {
		b, err := os.ReadFile(uuidFile)
		uuid = strings.TrimSpace(string(b))
		return err == nil && len(uuid) >= 36 && e.status(uuid).Ready
	})
	return uuid, c, func() result {
		_ = c.Wait()
		return result{stdout: out.String(), stderr: errb.String(), code: c.ProcessState.ExitCode()}
	}
}

func TestStopTimeout(t *testing.T) {
	e := newEnv(t)
	// An app that ignores SIGTERM is killed after --stop-timeout: 128+9.
	_, c, wait := e.startPod([]string{"--stop-timeout=1s"}, e.image("busybox"), "--", "/bin/sh", "-c",
		"trap '' TERM; while :; do sleep 0.1; done")
	time.Sleep(300 * time.Millisecond) // the trap is set
	start := time.Now()
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := wait()
	if d := time.Since(start); r.code != 137 || d < time.Second || d > 9*time.Second { // under the 10 s default: --stop-timeout applied
		t.Fatalf("stubborn app: exit %d after %s, want 137 after the 1s stop timeout; stderr %q", r.code, d, r.stderr)
	}
	// One that exits on SIGTERM ends the pod with 0, well within the timeout.
	_, c, wait = e.startPod([]string{"--stop-timeout=30s"}, e.image("busybox"), "--", "/bin/sleep", "600")
	start = time.Now()
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Below the 30 s timeout: the app ended on SIGTERM, it was not killed at the timeout.
	if r := wait(); r.code != 0 || time.Since(start) > 25*time.Second {
		t.Fatalf("exit %d after %s; stderr %q", r.code, time.Since(start), r.stderr)
	}
}

func TestGeneratedUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze (Debian's systemd package) is not installed")
	}
	e := newEnv(t)
	dir := t.TempDir()
	e.ok(append([]string{"--insecure-options=image", "generate", "unit", "--unit-name=web", "--restart=on-failure",
		"--socket=127.0.0.1:8080", "--output-dir=" + dir, "--net=host", "--stop-timeout=5s",
		e.image("inspect")}, "--", "serve-fd3", "100 %", "$HOME")...)
	service := readFile(t, filepath.Join(dir, "web.service"))
	for _, want := range []string{"Type=notify\n", "KillMode=mixed\n", "Restart=on-failure\n", "Requires=web.socket\n",
		" gc --mark-only\n", " run --net=host --stop-timeout=5s ", `"100 %%" $$HOME` + "\n", "--insecure-options=image "} {
		if !strings.Contains(service, want) {
			t.Errorf("web.service lacks %q:\n%s", want, service)
		}
	}
	if s := readFile(t, filepath.Join(dir, "web.socket")); !strings.Contains(s, "ListenStream=127.0.0.1:8080\n") {
		t.Errorf("web.socket:\n%s", s)
	}
	out, err := exec.Command("systemd-analyze", "verify", filepath.Join(dir, "web.service"), filepath.Join(dir, "web.socket")).CombinedOutput()
	if err != nil || strings.Contains(string(out), "web.") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	r := e.ok("generate", "unit", e.image("busybox"))
	if !strings.HasPrefix(r.stdout, "# Generated") || !strings.Contains(r.stdout, "Restart=no\n") {
		t.Errorf("generate unit on stdout: %q", r.stdout)
	}
	e.fails(125, []string{"--output-dir"}, "generate", "unit", "--socket=8080", e.image("busybox"))
	e.fails(125, []string{"--restart=sometimes"}, "generate", "unit", "--restart=sometimes", e.image("busybox"))
}
