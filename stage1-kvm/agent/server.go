package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// PortName is the name of the virtio-serial port that carries the agent
// (QEMU: -device virtserialport,name=skiff.agent,chardev=...).
const PortName = "skiff.agent"

// requestTimeout bounds the wait for a new stream's request frame.
const requestTimeout = 30 * time.Second

// ErrHangup is what a stream's stdin reader returns, and what RunCmd returns,
// when the host went away before the request's end.
var ErrHangup = errors.New("the host hung up")

// Handler performs requests in the guest; the guest init implements it.
// Serve calls its methods concurrently, one call per stream. ctx is
// cancelled when the host hangs up (or the session ends) before the call has
// returned.
type Handler interface {
	// Exec runs req's command inside req.App and returns its exit code
	// (128+N when signal N killed it). An error is reported to the host with
	// code (125 when code is 0): return 127 or 126 with the error when the
	// command is not in the image or cannot be executed. RunCmd does the
	// running part.
	Exec(ctx context.Context, req ExecRequest, stdio Stdio) (code int, err error)
	// Signal sends sig to app's main process, or to every app when app is
	// empty.
	Signal(ctx context.Context, app string, sig syscall.Signal) error
	// Stop starts stopping the pod and returns once the apps have been
	// told (the VM powering off may end the stream before any answer).
	Stop(ctx context.Context, req StopRequest) error
	// Stdin copies stdio.Stdin to app's stdin until it ends (io.EOF: close
	// the app's stdin), and returns; stdio.Resize delivers the host's window
	// size changes for an app on a terminal.
	Stdin(ctx context.Context, app string, stdio Stdio) error
}

// Stdio is a command's standard streams and terminal size changes. In the
// guest, Serve gives one to Handler.Exec: Stdin reads what the host sends
// (io.EOF at the host's stdin EOF, ErrHangup when it went, an error once
// Exec has returned), Stdout and Stderr send to the host, Resize delivers the
// host's window size changes (TTY only; the latest one wins, never closed),
// Signals the signals the host's caller got, for the command (exec only;
// never closed; RunCmd passes them on). On the host, Client.Exec takes one:
// any nil field is unused (a nil Stdin is an empty one).
type Stdio struct {
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Resize  <-chan Winsize
	Signals <-chan os.Signal
}

// yamuxConfig is the session configuration of both ends. No keepalive: the
// host learns the VM's end from QEMU, and a busy TCG guest missing a ping
// deadline must not end a healthy session. No stream open timeout: a stream
// opened before the agent is up waits for it (the client's context bounds
// the wait). yamux's own log is dropped (errors surface as stream errors).
func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.StreamOpenTimeout = 0
	c.StreamCloseTimeout = time.Minute
	c.ConnectionWriteTimeout = 30 * time.Second
	c.LogOutput = io.Discard
	return c
}

// OpenPort opens the guest's end of the virtio-serial port called name,
// waiting up to timeout for it to appear (its name is in
// /sys/class/virtio-ports/vportNpM/name, its device /dev/vportNpM), for
// Serve. The port's reads wait while the host's end is not connected, where
// the device itself reports an end of file (as it does at boot, until QEMU's
// "host connected" message has come); Close ends them.
func OpenPort(name string, timeout time.Duration) (io.ReadWriteCloser, error) {
	deadline := time.Now().Add(timeout)
	for {
		dirs, _ := filepath.Glob("/sys/class/virtio-ports/*")
		for _, d := range dirs {
			if n, err := os.ReadFile(filepath.Join(d, "name")); err == nil && strings.TrimSpace(string(n)) == name {
				f, err := os.OpenFile("/dev/"+filepath.Base(d), os.O_RDWR, 0)
				if err != nil {
					return nil, err
				}
				return newVirtioPort(f), nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port named %s (is the VM started with -device virtserialport,name=%s?)", name, name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hostPollInterval is how often a port whose host end is not connected is
// read again.
const hostPollInterval = 20 * time.Millisecond

// virtioPort is a virtio-serial port whose end of file means "no host yet".
type virtioPort struct {
	io.ReadWriteCloser
	closed chan struct{}
	once   sync.Once
}

func newVirtioPort(f io.ReadWriteCloser) *virtioPort {
	return &virtioPort{ReadWriteCloser: f, closed: make(chan struct{})}
}

func (p *virtioPort) Read(b []byte) (int, error) {
	for {
		n, err := p.ReadWriteCloser.Read(b)
		if n > 0 || err != io.EOF {
			return n, err
		}
		select {
		case <-p.closed:
			return 0, os.ErrClosed
		case <-time.After(hostPollInterval):
		}
	}
}

func (p *virtioPort) Close() error {
	err := os.ErrClosed
	p.once.Do(func() {
		close(p.closed)
		err = p.ReadWriteCloser.Close()
	})
	return err
}

// Serve is the guest agent: it runs a yamux server session over port, says
// hello to the host, and serves each stream the host opens with h until the
// port fails or is closed (closing it is how to stop Serve). It returns, once
// every Handler call has returned, the error that ended the session.
func Serve(port io.ReadWriteCloser, h Handler) error {
	sess, err := yamux.Server(port, yamuxConfig())
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after the session's end has ended every stream
	defer sess.Close()
	wg.Go(func() { sayHello(sess) })
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return fmt.Errorf("agent session ended: %w", err)
		}
		wg.Go(func() { serveStream(st, h) })
	}
}

// sayHello tells the host that an agent (re)started on the port.
func sayHello(sess *yamux.Session) {
	st, err := sess.OpenStream()
	if err != nil {
		return
	}
	defer st.Close()
	b, _ := json.Marshal(hello{Version: Version})
	_, _ = st.Write(appendFrame(nil, frameHello, b))
}

// frameWriter writes whole frames, one at a time.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (fw *frameWriter) frame(t frameType, p []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	_, err := fw.w.Write(appendFrame(make([]byte, 0, headerLen+len(p)), t, p))
	return err
}

// dataWriter is an io.Writer sending its bytes as frames of one type.
type dataWriter struct {
	fw *frameWriter
	t  frameType
}

func (d dataWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), chunkSize)
		if err := d.fw.frame(d.t, p[:c]); err != nil {
			return n, err
		}
		n, p = n+c, p[c:]
	}
	return n, nil
}

// call is one stream being served.
type call struct {
	st     net.Conn
	w      *frameWriter
	stdin  *stdinQueue  // nil for signal and stop
	resize chan Winsize // nil but for exec
	// signals: the host's signals for an exec's command (nil for other
	// operations); one that finds it full is dropped, never waited for.
	signals chan os.Signal
	ctx     context.Context
	hangup  context.CancelFunc
	read    chan struct{} // closed when readLoop has returned
	done    atomic.Bool   // the handler has returned: an end of reading is no hangup
}

func serveStream(st net.Conn, h Handler) {
	defer st.Close()
	w := &frameWriter{w: st}
	_ = st.SetReadDeadline(time.Now().Add(requestTimeout))
	t, p, err := readFrame(st)
	if err != nil {
		if errors.Is(err, ErrProtocol) {
			_ = w.frame(frameError, encodeError(abi.ExitSkiffFailure, err.Error()))
		}
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	if t != frameRequest {
		_ = w.frame(frameError, encodeError(abi.ExitSkiffFailure, protocolErrorf("first frame of type %#02x, not a request", byte(t)).Error()))
		return
	}
	req, err := decodeRequest(p)
	if err != nil {
		_ = w.frame(frameError, encodeError(abi.ExitSkiffFailure, err.Error()))
		return
	}
	c := &call{st: st, w: w, read: make(chan struct{})}
	c.ctx, c.hangup = context.WithCancel(context.Background())
	defer c.hangup()
	switch req.Op {
	case opExec:
		c.stdin, c.resize = newStdinQueue(w), make(chan Winsize, 1)
		c.signals = make(chan os.Signal, 16)
	case opStdin:
		c.stdin, c.resize = newStdinQueue(w), make(chan Winsize, 1)
	}
	go c.readLoop()
	code, err := c.dispatch(h, req)
	// Stop reading (the host's frames no longer matter) and release
	// whatever still waits on stdin.
	c.done.Store(true)
	_ = st.SetReadDeadline(time.Now())
	<-c.read
	if c.stdin != nil {
		c.stdin.close()
	}
	if c.ctx.Err() != nil {
		return // hung up: no one to answer
	}
	if err != nil {
		if code == 0 {
			code = abi.ExitSkiffFailure
		}
		_ = w.frame(frameError, encodeError(code, err.Error()))
		return
	}
	_ = w.frame(frameExit, encodeCode(code))
}

func (c *call) dispatch(h Handler, req *request) (int, error) {
	switch req.Op {
	case opExec:
		return h.Exec(c.ctx, *req.Exec, Stdio{
			Stdin:   c.stdin,
			Stdout:  dataWriter{c.w, frameStdout},
			Stderr:  dataWriter{c.w, frameStderr},
			Resize:  c.resize,
			Signals: c.signals,
		})
	case opSignal:
		return 0, h.Signal(c.ctx, req.Signal.App, unix.SignalNum(req.Signal.Signal))
	case opStop:
		return 0, h.Stop(c.ctx, *req.Stop)
	case opStdin:
		return 0, h.Stdin(c.ctx, req.Stdin.App, Stdio{Stdin: c.stdin, Resize: c.resize})
	}
	return 0, fmt.Errorf("unknown operation %q", req.Op) // decodeRequest let it through: a bug
}

// readLoop reads the host's frames after the request until the stream ends,
// the host breaks the protocol, or serveStream stops it with a deadline. An
// end before that is a hangup: the handler's context is cancelled, stdin
// fails with ErrHangup, and the stream is closed so that pending output
// writes fail instead of waiting for a host that is gone.
func (c *call) readLoop() {
	defer close(c.read)
	for {
		t, p, err := readFrame(c.st)
		if err == nil {
			err = c.deliver(t, p)
		}
		if err != nil {
			if c.done.Load() {
				return
			}
			if errors.Is(err, ErrProtocol) {
				_ = c.w.frame(frameError, encodeError(abi.ExitSkiffFailure, err.Error()))
			}
			c.hangup()
			if c.stdin != nil {
				c.stdin.end(ErrHangup)
			}
			_ = c.st.Close()
			return
		}
	}
}

func (c *call) deliver(t frameType, p []byte) error {
	switch {
	case t == frameStdin && c.stdin != nil:
		return c.stdin.push(p)
	case t == frameStdinEOF && c.stdin != nil:
		c.stdin.end(io.EOF)
		return nil
	case t == frameSignal && c.signals != nil:
		sig, err := decodeSignal(p)
		if err != nil {
			return err
		}
		select {
		case c.signals <- sig:
		default:
		}
		return nil
	case t == frameResize && c.resize != nil:
		ws := decodeWinsize(p)
		for { // keep the latest size only
			select {
			case c.resize <- ws:
				return nil
			default:
				select {
				case <-c.resize:
				default:
				}
			}
		}
	}
	return protocolErrorf("frame type %#02x not allowed from the host here", byte(t))
}

// stdinQueue is the stdin of an exec or stdin stream: what the host sent,
// read by the handler, acknowledged to the host as it is read.
type stdinQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte
	err    error // after buf: io.EOF, ErrHangup, io.ErrClosedPipe
	closed bool
	w      *frameWriter
}

func newStdinQueue(w *frameWriter) *stdinQueue {
	q := &stdinQueue{w: w}
	q.cond.L = &q.mu
	return q
}

// push queues data from the host; more than the window unacknowledged is a
// protocol error, as is data after stdin-eof.
func (q *stdinQueue) push(p []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return nil
	case q.err != nil:
		return protocolErrorf("stdin after stdin-eof")
	case len(q.buf)+len(p) > stdinWindow:
		return protocolErrorf("host sent %d bytes of stdin beyond the %d-byte window", len(q.buf)+len(p)-stdinWindow, stdinWindow)
	}
	q.buf = append(q.buf, p...)
	q.cond.Broadcast()
	return nil
}

// end makes Read return err once the queued bytes are read.
func (q *stdinQueue) end(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == nil {
		q.err = err
	}
	q.cond.Broadcast()
}

// close drops what is queued and fails every later Read.
func (q *stdinQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed, q.buf = true, nil
	q.err = io.ErrClosedPipe
	q.cond.Broadcast()
}

func (q *stdinQueue) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	q.mu.Lock()
	for len(q.buf) == 0 && q.err == nil {
		q.cond.Wait()
	}
	if len(q.buf) == 0 {
		defer q.mu.Unlock()
		return 0, q.err
	}
	n := copy(p, q.buf)
	q.buf = q.buf[n:]
	if len(q.buf) == 0 {
		q.buf = nil
	}
	q.mu.Unlock()
	_ = q.w.frame(frameAck, encodeCode(n))
	return n, nil
}
