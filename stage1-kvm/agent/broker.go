package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// helloTimeout bounds the wait for the hello frame on a guest-opened stream.
const helloTimeout = 10 * time.Second

// Broker is the host end of the agent's port. It runs a yamux client
// session over the port and gives every connection to its unix socket (and
// every call of its own Client) a yamux stream of its own, copying bytes
// both ways without reading them.
type Broker struct {
	sess  *yamux.Session
	ln    *net.UnixListener
	path  string
	ready chan struct{}

	mu      sync.Mutex
	closed  bool
	hellos  int                  // hellos seen: more than one means the agent restarted
	splices map[*splice]struct{} // live connections

	wg sync.WaitGroup
}

// splice is one local connection and its stream.
type splice struct {
	conn  net.Conn
	st    *yamux.Stream
	hello int // hellos seen when it was opened
}

// NewBroker starts a broker over port (the host end of the agent's
// virtio-serial port, e.g. one end of a socketpair whose other end QEMU's
// -chardev socket,fd=N has) listening on a unix socket at socket (replacing
// a stale socket file there). Close stops it.
func NewBroker(port io.ReadWriteCloser, socket string) (*Broker, error) {
	ln, err := listenUnix(socket)
	if err != nil {
		return nil, err
	}
	sess, err := yamux.Client(port, yamuxConfig())
	if err != nil {
		ln.Close()
		os.Remove(socket)
		return nil, err
	}
	b := &Broker{sess: sess, ln: ln, path: socket, ready: make(chan struct{}), splices: map[*splice]struct{}{}}
	b.wg.Go(b.acceptLocal)
	b.wg.Go(b.acceptGuest)
	return b, nil
}

// Ready is closed once the guest agent has said hello (it is serving).
// Requests made before wait for it.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Done is closed when the session over the port has ended: the VM is gone
// (or Close was called). Later connections get an error saying so.
func (b *Broker) Done() <-chan struct{} { return b.sess.CloseChan() }

// Client returns a client whose calls open streams on this broker directly,
// for the run process itself.
func (b *Broker) Client() *Client {
	return &Client{dial: func(context.Context) (net.Conn, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("socketpair: %w", err)
		}
		local, err := fileConn(fds[0])
		if err != nil {
			unix.Close(fds[1])
			return nil, err
		}
		remote, err := fileConn(fds[1])
		if err != nil {
			local.Close()
			return nil, err
		}
		b.serve(remote)
		return local, nil
	}}
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "agent")
	defer f.Close()
	return net.FileConn(f)
}

// Close stops listening, removes the socket, ends the session (which closes
// the port) and every connection, and waits for the broker's goroutines.
// Streams in progress end with ErrDisconnected on their clients.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	for s := range b.splices {
		s.conn.Close()
	}
	b.mu.Unlock()
	err := b.ln.Close()
	if rerr := os.Remove(b.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	b.sess.Close()
	b.wg.Wait()
	return err
}

func (b *Broker) acceptLocal() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return // closed
		}
		b.serve(c)
	}
}

// serve opens a stream for c and splices the two, or tells c why it cannot.
func (b *Broker) serve(c net.Conn) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		refuse(c, errors.New("the pod's agent broker is shutting down"))
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		st, err := b.sess.OpenStream()
		if err != nil {
			refuse(c, fmt.Errorf("the pod's VM is gone (agent session: %v)", err))
			return
		}
		s := &splice{conn: c, st: st}
		if !b.add(s) {
			st.Close()
			refuse(c, errors.New("the pod's agent broker is shutting down"))
			return
		}
		defer b.remove(s)
		s.run()
	}()
}

// refuse answers a connection with an error frame and closes it.
func refuse(c net.Conn, err error) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(appendFrame(nil, frameError, encodeError(abi.ExitSkiffFailure, err.Error())))
	c.Close()
}

func (b *Broker) add(s *splice) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	s.hello = b.hellos
	b.splices[s] = struct{}{}
	return true
}

func (b *Broker) remove(s *splice) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.splices, s)
}

// run copies both ways until the guest's side has ended and the client has
// closed. The guest's end of a stream (its answer sent, or the stream
// reset) closes the client's write side; the client's end (EOF or error)
// closes the stream's write side, which the guest takes as a hangup if it
// has not answered yet.
func (s *splice) run() {
	up := make(chan struct{})
	go func() {
		defer close(up)
		_, _ = io.Copy(s.st, s.conn)
		s.st.Close()
	}()
	if _, err := io.Copy(s.conn, s.st); err != nil {
		// The client is gone; keep reading so the guest never waits on
		// a full window, until it ends the stream on the hangup.
		_, _ = io.Copy(io.Discard, s.st)
	}
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	<-up
	s.conn.Close()
	s.st.Close()
}

// reset ends a splice whose stream the guest no longer knows.
func (s *splice) reset() {
	_ = s.st.SetDeadline(time.Now())
	s.st.Close()
	s.conn.Close()
}

// acceptGuest takes the streams the guest opens: each is a hello. The first
// makes the broker ready; a later one means the agent restarted with a fresh
// session, so the streams opened before it are dead and are reset.
func (b *Broker) acceptGuest() {
	for {
		st, err := b.sess.AcceptStream()
		if err != nil {
			return
		}
		_ = st.SetReadDeadline(time.Now().Add(helloTimeout))
		t, p, err := readFrame(st)
		st.Close()
		var h hello
		if err != nil || t != frameHello || json.Unmarshal(p, &h) != nil {
			continue
		}
		b.mu.Lock()
		b.hellos++
		if b.hellos == 1 {
			close(b.ready)
		} else {
			for s := range b.splices {
				if s.hello < b.hellos {
					s.reset()
				}
			}
		}
		b.mu.Unlock()
	}
}
