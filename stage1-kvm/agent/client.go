package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
)

// SocketFile is where, relative to the pod directory, run's Broker listens.
const SocketFile = "stage1/agent.sock"

// ErrNoAgent is returned (wrapped, with the socket's path) when nothing
// listens on the broker's socket: the pod is not running or its run process
// has ended.
var ErrNoAgent = errors.New("no agent broker listening")

// ErrDisconnected is returned when a stream ended before the guest's answer:
// the VM stopped, the port closed or the guest agent restarted.
var ErrDisconnected = errors.New("connection to the guest agent lost before its answer (the pod's VM stopped or its agent restarted)")

// Client sends requests to the guest agent, one connection (one yamux
// stream) per call. It is safe for concurrent use.
type Client struct {
	dial func(ctx context.Context) (net.Conn, error)
}

// NewClient returns a client of the broker listening at socket (run's
// Broker; normally the pod directory's SocketFile). It connects on each call.
func NewClient(socket string) *Client {
	return &Client{dial: func(ctx context.Context) (net.Conn, error) {
		c, err := dialUnix(ctx, socket)
		if err != nil {
			if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
				return nil, fmt.Errorf("%w at %s: is the pod running?", ErrNoAgent, socket)
			}
			return nil, fmt.Errorf("connect to the agent broker at %s: %w", socket, err)
		}
		return c, nil
	}}
}

// Exec runs req's command in the guest, relaying stdio, and returns its exit
// code. stdio.Stdin is copied until it ends (then the command's stdin is
// closed); stdio.Resize, with req.TTY, sends window size changes. With a
// TTY, everything the command writes comes on stdio.Stdout: put the local
// terminal in raw mode first (MakeRaw). When err is not nil, code is the code
// to exit with: the guest's (RemoteError: 126 or 127 when the command could
// not be executed or found) or 125.
//
// stdio.Signals sends each signal to the command (RunCmd: SIGINT, SIGQUIT and
// SIGHUP to its process group, others to it), as a terminal or a kill(1) of
// a local command would.
//
// Cancelling ctx hangs up: the guest sends the command SIGHUP. Exec returns
// without waiting for a stdio.Stdin.Read in progress, which may go on
// blocking (on a terminal, until the next key) and is then dropped.
func (c *Client) Exec(ctx context.Context, req ExecRequest, stdio Stdio) (code int, err error) {
	if stdio.Stdin == nil {
		stdio.Stdin = eofReader{}
	}
	if !req.TTY {
		stdio.Resize = nil
	}
	return c.call(ctx, &request{Op: opExec, Exec: &req}, stdio)
}

// Signal sends sig to app's main process in the guest, or to every app's
// when app is empty.
func (c *Client) Signal(ctx context.Context, app string, sig syscall.Signal) error {
	_, err := c.call(ctx, &request{Op: opSignal, Signal: &signalRequest{App: app, Signal: signalName(sig)}}, Stdio{})
	return err
}

// Stop asks the guest to stop the pod and returns once the guest has told the
// apps; the pod has stopped when the VM has exited (QEMU ends).
func (c *Client) Stop(ctx context.Context, req StopRequest) error {
	_, err := c.call(ctx, &request{Op: opStop, Stop: &req}, Stdio{})
	return err
}

// Stdin copies stdio.Stdin to app's stdin in the guest until it ends, which
// closes the app's stdin, and returns once the guest has passed it all on;
// stdio.Resize sends window size changes of an app on a terminal (the other
// fields are unused). As with Exec, a Read in progress when Stdin returns
// early is dropped.
func (c *Client) Stdin(ctx context.Context, app string, stdio Stdio) error {
	_, err := c.call(ctx, &request{Op: opStdin, Stdin: &stdinRequest{App: app}}, Stdio{Stdin: stdio.Stdin, Resize: stdio.Resize})
	return err
}

// call sends req, then stdio.Stdin and resizes, and reads the guest's frames
// until its answer.
func (c *Client) call(ctx context.Context, req *request, stdio Stdio) (int, error) {
	req.Version = Version
	conn, err := c.dial(ctx)
	if err != nil {
		return abi.ExitSkiffFailure, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() {
		_ = conn.SetDeadline(time.Now())
		_ = conn.Close()
	})
	defer stop()
	w := &frameWriter{w: conn}
	b, err := json.Marshal(req)
	if err != nil {
		return abi.ExitSkiffFailure, err
	}
	// A failed write is not the answer: a broker that cannot serve the call
	// has written why before closing, and the read below gets it.
	_ = w.frame(frameRequest, b)
	credit := newCredit(stdinWindow)
	defer credit.close()
	done := make(chan struct{})
	defer close(done)
	if stdio.Stdin != nil {
		go pumpStdin(w, stdio.Stdin, credit)
	}
	if stdio.Resize != nil || stdio.Signals != nil {
		go func() {
			for {
				select {
				case ws := <-stdio.Resize:
					if w.frame(frameResize, ws.encode()) != nil {
						return
					}
				case sig := <-stdio.Signals:
					s, ok := sig.(syscall.Signal)
					if ok && w.frame(frameSignal, encodeCode(int(s))) != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	for {
		t, p, err := readFrame(conn)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				err = ErrDisconnected
			}
			return c.failed(ctx, err)
		}
		switch t {
		case frameStdout, frameStderr:
			out := stdio.Stdout
			if t == frameStderr {
				out = stdio.Stderr
			}
			if out != nil {
				if _, err := out.Write(p); err != nil {
					return abi.ExitSkiffFailure, fmt.Errorf("write the command's output: %w", err)
				}
			}
		case frameAck:
			if n := decodeCode(p); n > 0 {
				credit.release(n)
			}
		case frameExit:
			return decodeCode(p), nil
		case frameError:
			rerr, err := decodeError(p)
			if err != nil {
				return abi.ExitSkiffFailure, err
			}
			return rerr.Code, rerr
		default:
			return abi.ExitSkiffFailure, protocolErrorf("frame type %#02x not allowed from the guest", byte(t))
		}
	}
}

// failed reports a transport error, or ctx's error when ctx ended the call.
func (c *Client) failed(ctx context.Context, err error) (int, error) {
	if ctx.Err() != nil {
		return abi.ExitSkiffFailure, ctx.Err()
	}
	return abi.ExitSkiffFailure, err
}

// pumpStdin sends r as stdin frames within the credit the guest gives, then
// stdin-eof (also after a read error: there is no more input either way).
func pumpStdin(w *frameWriter, r io.Reader, credit *credit) {
	buf := make([]byte, chunkSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if !credit.take(n) || w.frame(frameStdin, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			_ = w.frame(frameStdinEOF, nil)
			return
		}
	}
}

// credit counts the stdin bytes the host may still send before an ack.
type credit struct {
	mu     sync.Mutex
	cond   sync.Cond
	n      int
	closed bool
}

func newCredit(n int) *credit {
	c := &credit{n: n}
	c.cond.L = &c.mu
	return c
}

// take waits until n bytes may be sent and counts them sent; false once the
// call has ended.
func (c *credit) take(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n < n && !c.closed {
		c.cond.Wait()
	}
	c.n -= n
	return !c.closed
}

func (c *credit) release(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += n
	c.cond.Broadcast()
}

func (c *credit) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.cond.Broadcast()
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
