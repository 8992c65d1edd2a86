package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeHandler records what it is asked; exec is the test's own.
type fakeHandler struct {
	exec func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error)

	mu      sync.Mutex
	signals []string
	stops   []StopRequest
	stdin   map[string]string
	sizes   []Winsize // window sizes that came with stdin
}

func (h *fakeHandler) Exec(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
	return h.exec(ctx, req, stdio)
}

func (h *fakeHandler) Signal(ctx context.Context, app string, sig syscall.Signal) error {
	if app == "missing" {
		return fmt.Errorf("no app %q in the pod", app)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.signals = append(h.signals, app+" "+unix.SignalName(sig))
	return nil
}

func (h *fakeHandler) Stop(ctx context.Context, req StopRequest) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stops = append(h.stops, req)
	return nil
}

func (h *fakeHandler) Stdin(ctx context.Context, app string, stdio Stdio) error {
	b, err := io.ReadAll(stdio.Stdin)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case ws := <-stdio.Resize:
		h.sizes = append(h.sizes, ws)
	default:
	}
	if h.stdin == nil {
		h.stdin = map[string]string{}
	}
	h.stdin[app] += string(b)
	return nil
}

// runCmdHandler runs sh -c ARGS[0] through RunCmd.
func runCmdHandler(opts CmdOptions) *fakeHandler {
	return &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		cmd := exec.Command("/bin/sh", append([]string{"-c"}, req.Args...)...)
		cmd.Env = append(os.Environ(), req.Env...)
		return RunCmd(ctx, cmd, req, stdio, opts)
	}}
}

func socketpair(t *testing.T) (host, guest *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		c, err := fileConn(fd)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

type testAgent struct {
	broker *Broker
	sock   string
	guest  *net.UnixConn
	served chan error
}

// startAgent connects a Broker and Serve(h) through a socketpair, as run and
// the guest are through QEMU's virtio-serial port.
func startAgent(t *testing.T, h Handler) *testAgent {
	t.Helper()
	host, guest := socketpair(t)
	a := &testAgent{sock: filepath.Join(t.TempDir(), "agent.sock"), guest: guest, served: make(chan error, 1)}
	var err error
	if a.broker, err = NewBroker(host, a.sock); err != nil {
		t.Fatal(err)
	}
	go func() { a.served <- Serve(guest, h) }()
	t.Cleanup(func() {
		a.broker.Close()
		a.guest.Close()
		select {
		case <-a.served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after the port closed")
		}
	})
	select {
	case <-a.broker.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no hello from the guest agent")
	}
	return a
}

func (a *testAgent) client() *Client { return NewClient(a.sock) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestExec(t *testing.T) {
	a := startAgent(t, &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		in, err := io.ReadAll(stdio.Stdin)
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(stdio.Stdout, "%s %q %q stdin=%q", req.App, req.Args, req.Env, in)
		fmt.Fprint(stdio.Stderr, "to stderr")
		return 3, nil
	}})
	for name, c := range map[string]*Client{"socket": a.client(), "broker": a.broker.Client()} {
		var out, errOut bytes.Buffer
		code, err := c.Exec(ctxT(t), ExecRequest{App: "web", Args: []string{"sh", "-c", "x"}, Env: []string{"A=1"}},
			Stdio{Stdin: strings.NewReader("input"), Stdout: &out, Stderr: &errOut})
		if err != nil || code != 3 {
			t.Fatalf("%s: code %d, %v", name, code, err)
		}
		if want := `web ["sh" "-c" "x"] ["A=1"] stdin="input"`; out.String() != want || errOut.String() != "to stderr" {
			t.Errorf("%s: stdout %q (want %q), stderr %q", name, out.String(), want, errOut.String())
		}
	}
}

func TestExecStdinEOF(t *testing.T) {
	a := startAgent(t, &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		in, err := io.ReadAll(stdio.Stdin)
		fmt.Fprintf(stdio.Stdout, "read %q, %v", in, err)
		return 0, nil
	}})
	// The host's stdin ends while the call goes on: the handler sees EOF.
	pr, pw := io.Pipe()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"x"}}, Stdio{Stdin: pr, Stdout: &out})
		done <- err
	}()
	pw.Write([]byte("abc"))
	pw.Close()
	if err := <-done; err != nil || out.String() != `read "abc", <nil>` {
		t.Fatalf("stdout %q, %v", out.String(), err)
	}
	// No stdin at all is an empty one.
	var out2 bytes.Buffer
	if _, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"x"}}, Stdio{Stdout: &out2}); err != nil || out2.String() != `read "", <nil>` {
		t.Fatalf("nil stdin: stdout %q, %v", out2.String(), err)
	}
}

func TestExecConcurrentLargeStreams(t *testing.T) {
	a := startAgent(t, &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		n, err := io.Copy(stdio.Stdout, stdio.Stdin)
		fmt.Fprintf(stdio.Stderr, "%s:%d", req.Args[0], n)
		return len(req.Args[0]), err
	}})
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			in := make([]byte, 300<<10+i*4099) // beyond the stdin window and the yamux window
			rand.Read(in)
			c := a.client()
			if i%2 == 1 {
				c = a.broker.Client()
			}
			var out, errOut bytes.Buffer
			name := strings.Repeat("x", i+1)
			code, err := c.Exec(ctxT(t), ExecRequest{App: "a", Args: []string{name}}, Stdio{Stdin: bytes.NewReader(in), Stdout: &out, Stderr: &errOut})
			if err != nil || code != i+1 || !bytes.Equal(out.Bytes(), in) || errOut.String() != fmt.Sprintf("%s:%d", name, len(in)) {
				t.Errorf("stream %d: code %d, %v, %d of %d bytes back, stderr %q", i, code, err, out.Len(), len(in), errOut.String())
			}
		})
	}
	wg.Wait()
}

// A command that does not read its stdin must not hold up the stream's
// other frames: the host stops at the window, resizes still arrive.
func TestStdinWindowKeepsStreamResponsive(t *testing.T) {
	a := startAgent(t, &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		fmt.Fprint(stdio.Stdout, "ready\n")
		select {
		case ws := <-stdio.Resize:
			fmt.Fprintf(stdio.Stdout, "%dx%d\n", ws.Rows, ws.Cols)
			return 0, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}})
	resize := make(chan Winsize, 1)
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"x"}, TTY: true},
			Stdio{Stdin: bytes.NewReader(make([]byte, 4<<20)), Stdout: out, Resize: resize})
		done <- err
	}()
	waitFor(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
	time.Sleep(100 * time.Millisecond) // let stdin fill the window
	resize <- Winsize{Rows: 40, Cols: 100}
	if err := <-done; err != nil || out.String() != "ready\n40x100\n" {
		t.Fatalf("stdout %q, %v", out.String(), err)
	}
}

func TestExecRunCmdPipes(t *testing.T) {
	a := startAgent(t, runCmdHandler(CmdOptions{}))
	var out, errOut bytes.Buffer
	code, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{`cat; echo "$X" >&2; exit 5`}, Env: []string{"X=env"}},
		Stdio{Stdin: strings.NewReader("hello\n"), Stdout: &out, Stderr: &errOut})
	if err != nil || code != 5 || out.String() != "hello\n" || errOut.String() != "env\n" {
		t.Fatalf("code %d, %v, stdout %q, stderr %q", code, err, out.String(), errOut.String())
	}
	code, err = a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"kill -USR1 $$"}}, Stdio{})
	if err != nil || code != 128+int(unix.SIGUSR1) {
		t.Fatalf("killed by SIGUSR1: code %d, %v", code, err)
	}
}

func TestExecTTY(t *testing.T) {
	a := startAgent(t, runCmdHandler(CmdOptions{}))
	var out, errOut bytes.Buffer
	code, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"tty; stty size; echo to-stderr >&2"}, TTY: true, Window: Winsize{Rows: 33, Cols: 77}},
		Stdio{Stdout: &out, Stderr: &errOut})
	if err != nil || code != 0 {
		t.Fatalf("code %d, %v (output %q)", code, err, out.String())
	}
	if !regexp.MustCompile(`^/dev/pts/\d+\r\n33 77\r\nto-stderr\r\n$`).MatchString(out.String()) || errOut.Len() != 0 {
		t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

func TestExecTTYResize(t *testing.T) {
	a := startAgent(t, runCmdHandler(CmdOptions{}))
	out := &syncBuffer{}
	resize := make(chan Winsize, 1)
	done := make(chan error, 1)
	go func() {
		code, err := a.client().Exec(ctxT(t), ExecRequest{
			App: "a", TTY: true, Window: Winsize{Rows: 10, Cols: 20},
			Args: []string{`trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.05; done`},
		}, Stdio{Stdout: out, Resize: resize})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		done <- err
	}()
	waitFor(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
	resize <- Winsize{Rows: 50, Cols: 132}
	if err := <-done; err != nil || !strings.HasSuffix(out.String(), "50 132\r\n") {
		t.Fatalf("output %q, %v", out.String(), err)
	}
}

// TestExecSignals: the signals the host's caller got reach the command as
// themselves (SIGTERM is not a hangup), and what the command left behind is
// killed once it ends after a SIGTERM.
func TestExecSignals(t *testing.T) {
	a := startAgent(t, runCmdHandler(CmdOptions{}))
	out := &syncBuffer{}
	sigs := make(chan os.Signal, 2)
	done := make(chan error, 1)
	left := filepath.Join(t.TempDir(), "left")
	go func() {
		code, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{
			`trap 'echo got-USR1' USR1; trap 'echo got-TERM; exit 3' TERM; trap 'echo got-HUP; exit 4' HUP
			sleep 600 & echo $! >` + left + `; echo ready; while :; do sleep 0.05; done`}},
			Stdio{Stdout: out, Signals: sigs})
		if err == nil && code != 3 {
			err = fmt.Errorf("exit code %d, want 3 (the TERM trap's)", code)
		}
		done <- err
	}()
	waitFor(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
	sigs <- unix.SIGUSR1
	waitFor(t, "the USR1 trap", func() bool { return strings.Contains(out.String(), "got-USR1") })
	sigs <- unix.SIGTERM
	if err := <-done; err != nil || !strings.Contains(out.String(), "got-TERM") || strings.Contains(out.String(), "got-HUP") {
		t.Fatalf("output %q, %v", out.String(), err)
	}
	b, _ := os.ReadFile(left)
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		t.Fatalf("pid of the background sleep: %q", b)
	}
	waitFor(t, "the background sleep's end", func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(st), ") Z ")
	})
}

func TestSignalStopStdin(t *testing.T) {
	h := &fakeHandler{}
	a := startAgent(t, h)
	c, ctx := a.client(), ctxT(t)
	if err := c.Signal(ctx, "web", unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := a.broker.Client().Signal(ctx, "", unix.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var rerr *RemoteError
	if err := c.Signal(ctx, "missing", unix.SIGHUP); !errors.As(err, &rerr) || rerr.Code != 125 || !strings.Contains(err.Error(), `no app "missing"`) {
		t.Fatalf("signal to a missing app: %v", err)
	}
	if err := c.Stop(ctx, StopRequest{Grace: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("line\n", 100000) // beyond the window
	if err := a.broker.Client().Stdin(ctx, "web", Stdio{Stdin: strings.NewReader(big)}); err != nil {
		t.Fatal(err)
	}
	// A terminal's size changes travel with an app's stdin: one sent before
	// the stdin ends is there when the handler has read it all.
	resize := make(chan Winsize, 1)
	resize <- Winsize{Rows: 50, Cols: 132}
	pr, pw := io.Pipe()
	go func() { time.Sleep(200 * time.Millisecond); pw.Close() }()
	if err := c.Stdin(ctx, "tty", Stdio{Stdin: pr, Resize: resize}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if fmt.Sprint(h.signals) != "[web SIGUSR1  SIGHUP]" || len(h.stops) != 1 || h.stops[0].Grace != 3*time.Second || h.stdin["web"] != big {
		t.Fatalf("signals %q, stops %+v, %d bytes of stdin", h.signals, h.stops, len(h.stdin["web"]))
	}
	if len(h.sizes) != 1 || h.sizes[0] != (Winsize{Rows: 50, Cols: 132}) {
		t.Errorf("window sizes with stdin: %+v", h.sizes)
	}
}

// rawCall sends one raw request frame on the broker's socket and returns the
// answer frame.
func rawCall(t *testing.T, sock string, req []byte) (frameType, []byte) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(appendFrame(nil, frameRequest, req)); err != nil {
		t.Fatal(err)
	}
	typ, p, err := readFrame(c)
	if err != nil {
		t.Fatal(err)
	}
	return typ, p
}

func TestUnknownOpAndVersion(t *testing.T) {
	a := startAgent(t, &fakeHandler{})
	for req, want := range map[string]string{
		`{"version":1,"op":"frobnicate"}`:                   `unknown operation "frobnicate" (this guest's agent speaks protocol version 1: exec, signal, stop, stdin)`,
		`{"version":9,"op":"exec","exec":{"args":["sh"]}}`:  "the host speaks agent protocol version 9, this guest 1",
		`{"version":1,"op":"signal","signal":{"signal":7}}`: "agent protocol error: request",
	} {
		typ, p := rawCall(t, a.sock, []byte(req))
		e, err := decodeError(p)
		if typ != frameError || err != nil || e.Code != 125 || !strings.Contains(e.Message, want) {
			t.Errorf("%s: frame %#02x %q, want an error with %q", req, typ, p, want)
		}
	}
}

// A host that breaks the protocol gets an error frame and its stream ends;
// the agent goes on serving.
func TestProtocolErrors(t *testing.T) {
	a := startAgent(t, &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		<-ctx.Done() // never reads stdin
		return 0, nil
	}})
	execReq := appendFrame(nil, frameRequest, []byte(`{"version":1,"op":"exec","exec":{"app":"a","args":["x"]}}`))
	stdin := appendFrame(nil, frameStdin, make([]byte, chunkSize))
	for name, c := range map[string]struct {
		send []byte
		want string
	}{
		"not a request first": {appendFrame(nil, frameExit, encodeCode(0)), "not a request"},
		"oversized frame":     {binary.BigEndian.AppendUint32([]byte{byte(frameStdout)}, maxPayload+1), "at most"},
		"guest-only frame":    {append(execReq, appendFrame(nil, frameStdout, []byte("x"))...), "not allowed from the host"},
		"stdin beyond window": {append(execReq, bytes.Repeat(stdin, stdinWindow/chunkSize+1)...), "beyond the 262144-byte window"},
	} {
		conn, err := net.Dial("unix", a.sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		go conn.Write(c.send)
		typ, p, err := readFrame(conn)
		for err == nil && typ == frameAck {
			typ, p, err = readFrame(conn)
		}
		if typ != frameError || err != nil || !strings.Contains(string(p), c.want) {
			t.Errorf("%s: frame %#02x %q, %v; want an error with %q", name, typ, p, err, c.want)
		}
		conn.Close()
	}
	if err := a.client().Stop(ctxT(t), StopRequest{}); err != nil {
		t.Fatalf("after the protocol errors: %v", err)
	}
}

func TestExecErrorCode(t *testing.T) {
	a := startAgent(t, &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		if req.Args[0] == "missing" {
			return 127, errors.New("missing: not found in PATH /bin")
		}
		return 0, errors.New("mount failed")
	}})
	code, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"missing"}}, Stdio{})
	var rerr *RemoteError
	if code != 127 || !errors.As(err, &rerr) || rerr.Message != "missing: not found in PATH /bin" {
		t.Fatalf("code %d, %v", code, err)
	}
	if code, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"x"}}, Stdio{}); code != 125 || err == nil {
		t.Fatalf("an error without a code: code %d, %v", code, err)
	}
}

// A client that goes away hangs the call up: the handler's context ends.
func TestHangup(t *testing.T) {
	hungUp := make(chan struct{})
	a := startAgent(t, &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		fmt.Fprint(stdio.Stdout, "started")
		<-ctx.Done()
		if _, err := stdio.Stdin.Read(make([]byte, 1)); !errors.Is(err, ErrHangup) {
			t.Errorf("stdin after a hangup: %v", err)
		}
		close(hungUp)
		return 0, nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := a.client().Exec(ctx, ExecRequest{App: "a", Args: []string{"x"}}, Stdio{Stdin: blockingReader{}, Stdout: out})
		done <- err
	}()
	waitFor(t, "the handler", func() bool { return out.String() == "started" })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec after cancel: %v", err)
	}
	select {
	case <-hungUp:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end")
	}
}

// blockingReader never returns, as a terminal nobody types on.
type blockingReader struct{}

func (blockingReader) Read([]byte) (int, error) { select {} }

func TestHangupRunCmd(t *testing.T) {
	a := startAgent(t, runCmdHandler(CmdOptions{}))
	mark := filepath.Join(t.TempDir(), "hup")
	for _, tty := range []bool{false, true} {
		os.Remove(mark)
		ctx, cancel := context.WithCancel(context.Background())
		out := &syncBuffer{}
		done := make(chan error, 1)
		go func() {
			_, err := a.client().Exec(ctx, ExecRequest{App: "a", TTY: tty, Env: []string{"MARK=" + mark},
				Args: []string{`exec 2>/dev/null; trap 'echo hup > "$MARK"; exit 0' HUP; echo ready; while :; do sleep 0.05; done`}},
				Stdio{Stdout: out})
			done <- err
		}()
		waitFor(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
		cancel()
		<-done
		waitFor(t, fmt.Sprintf("SIGHUP to the command (tty %v)", tty), func() bool {
			b, _ := os.ReadFile(mark)
			return string(b) == "hup\n"
		})
	}
}

// The VM ending (the port closing) fails the streams in flight, and later
// calls get an error that says so.
func TestPortClosed(t *testing.T) {
	hungUp := make(chan struct{})
	a := startAgent(t, &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		fmt.Fprint(stdio.Stdout, "started")
		<-ctx.Done()
		close(hungUp)
		return 0, nil
	}})
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		code, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"x"}}, Stdio{Stdout: out})
		if code != 125 {
			err = fmt.Errorf("code %d, %w", code, err)
		}
		done <- err
	}()
	waitFor(t, "the handler", func() bool { return out.String() == "started" })
	a.guest.Close()
	if err := <-done; !errors.Is(err, ErrDisconnected) {
		t.Fatalf("exec in flight: %v", err)
	}
	<-hungUp
	select {
	case err := <-a.served:
		a.served <- err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	<-a.broker.Done()
	_, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"x"}}, Stdio{})
	var rerr *RemoteError
	if !errors.As(err, &rerr) || !strings.Contains(err.Error(), "the pod's VM is gone") {
		t.Fatalf("exec after the port closed: %v", err)
	}
}

func TestClientAfterClose(t *testing.T) {
	a := startAgent(t, &fakeHandler{})
	a.broker.Close()
	code, err := a.client().Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"x"}}, Stdio{})
	if code != 125 || !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), a.sock) {
		t.Fatalf("code %d, %v", code, err)
	}
	if _, err := os.Stat(a.sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	if err := a.broker.Client().Stop(ctxT(t), StopRequest{}); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("broker client after close: %v", err)
	}
}

// crashPort is the guest's end of the port as one agent process sees it:
// crash makes that agent's session fail (as its process dying would) and
// leaves the port to the next one.
type crashPort struct {
	c       *net.UnixConn
	crashed chan struct{}
}

func (p *crashPort) Read(b []byte) (int, error) {
	n, err := p.c.Read(b)
	select {
	case <-p.crashed:
		return 0, io.EOF
	default:
	}
	return n, err
}

func (p *crashPort) Write(b []byte) (int, error) { return p.c.Write(b) }
func (p *crashPort) Close() error                { return nil }

func (p *crashPort) crash() {
	close(p.crashed)
	p.c.SetReadDeadline(time.Now())
}

func TestGuestRestart(t *testing.T) {
	hungUp := make(chan struct{}, 1)
	h := &fakeHandler{exec: func(ctx context.Context, req ExecRequest, stdio Stdio) (int, error) {
		if req.Args[0] == "wait" {
			fmt.Fprint(stdio.Stdout, "started")
			<-ctx.Done()
			hungUp <- struct{}{}
		}
		return 7, nil
	}}
	host, guest := socketpair(t)
	defer guest.Close()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	b, err := NewBroker(host, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	first := &crashPort{c: guest, crashed: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- Serve(first, h) }()
	<-b.Ready()

	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := NewClient(sock).Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"wait"}}, Stdio{Stdout: out})
		done <- err
	}()
	waitFor(t, "the handler", func() bool { return out.String() == "started" })
	first.crash()
	<-served
	<-hungUp
	guest.SetReadDeadline(time.Time{})
	second := &crashPort{c: guest, crashed: make(chan struct{})}
	go func() { served <- Serve(second, h) }()
	defer func() { second.crash(); <-served }()

	if err := <-done; !errors.Is(err, ErrDisconnected) {
		t.Fatalf("exec across the restart: %v", err)
	}
	code, err := NewClient(sock).Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"again"}}, Stdio{})
	if err != nil || code != 7 {
		t.Fatalf("exec after the restart: %d, %v", code, err)
	}
}

// Long socket paths (a deep --dir) still work.
func TestLongSocketPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	host, guest := socketpair(t)
	sock := filepath.Join(dir, "agent.sock")
	os.WriteFile(sock, nil, 0o644)
	if _, err := NewBroker(host, sock); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file in the socket's place: %v", err)
	}
	os.Remove(sock)
	b, err := NewBroker(host, sock)
	if err != nil {
		t.Fatal(err)
	}
	go Serve(guest, &fakeHandler{})
	defer func() { b.Close(); guest.Close() }()
	if err := NewClient(sock).Stop(ctxT(t), StopRequest{}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	// A stale socket of a crashed run is replaced.
	l, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if l, err = listenUnix(sock); err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l.Close()
	os.Remove(sock)
}

// openFDs lists this process's descriptors and what they are.
func openFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds = append(fds, e.Name()+" "+l)
	}
	return fds
}

// After everything is closed, no goroutine and no descriptor of the agent is
// left.
func TestNoLeaks(t *testing.T) {
	before, fds := runtime.NumGoroutine(), openFDs(t)
	func() {
		host, guest := socketpair(t)
		sock := filepath.Join(t.TempDir(), "agent.sock")
		b, err := NewBroker(host, sock)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- Serve(guest, runCmdHandler(CmdOptions{})) }()
		for _, tty := range []bool{false, true} {
			if _, err := NewClient(sock).Exec(ctxT(t), ExecRequest{App: "a", Args: []string{"cat"}, TTY: tty}, Stdio{Stdin: strings.NewReader("x\n"), Stdout: io.Discard}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := b.Client().Exec(ctx, ExecRequest{App: "a", Args: []string{"sleep 100"}, TTY: tty}, Stdio{Stdin: strings.NewReader("")})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("hung-up exec: %v", err)
			}
		}
		b.Close()
		guest.Close()
		<-served
	}()
	var after int
	var afterFDs []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		after, afterFDs = runtime.NumGoroutine(), openFDs(t)
		if after <= before && len(afterFDs) <= len(fds) {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines before, %d after; descriptors before %q, after %q:\n%s", before, after, fds, afterFDs, buf[:runtime.Stack(buf, true)])
}

// notConnectedYet reads as a virtio-serial port does before the host's end
// is connected: end of file, a few times.
type notConnectedYet struct {
	*net.UnixConn
	mu  sync.Mutex
	eof int
}

func (p *notConnectedYet) Read(b []byte) (int, error) {
	p.mu.Lock()
	if p.eof > 0 {
		p.eof--
		p.mu.Unlock()
		return 0, io.EOF
	}
	p.mu.Unlock()
	return p.UnixConn.Read(b)
}

func TestVirtioPortWaitsForHost(t *testing.T) {
	host, guest := socketpair(t)
	port := newVirtioPort(&notConnectedYet{UnixConn: guest, eof: 5})
	served := make(chan error, 1)
	go func() { served <- Serve(port, &fakeHandler{}) }()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	b, err := NewBroker(host, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := NewClient(sock).Stop(ctxT(t), StopRequest{}); err != nil {
		t.Fatal(err)
	}
	// Closing the guest's end stops Serve, also while it waits for a host.
	port.Close()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the port was closed")
	}
	p := newVirtioPort(&notConnectedYet{UnixConn: guest, eof: 1 << 30})
	go func() { time.Sleep(50 * time.Millisecond); p.Close() }()
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read of a closed port that has no host: %v", err)
	}
}
