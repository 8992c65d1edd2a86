// Package stdio hands an app the very file descriptors that skiff was given:
// stage1's host side serves a unix socket inside the pod directory, and the
// app's launcher (app-exec, started by the pod's systemd) asks it for its
// stdin, stdout and stderr by app name and receives them with SCM_RIGHTS. The
// app then writes to the user's terminal, pipe, file or journal socket itself:
// output arrives unaltered and in order, with no copying process in between.
// The same channel tells stage1 when each app has started.
package stdio

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Files are the descriptors one app receives.
type Files struct {
	Stdin, Stdout, Stderr *os.File
}

// Server answers app-exec's requests on a unix socket.
type Server struct {
	ln      *net.UnixListener
	lookup  func(app string) (Files, bool)
	started func(app string)
	wg      sync.WaitGroup
}

// Listen serves on path. lookup says which files an app gets; started is called
// once an app has received them (it is about to exec).
func Listen(path string, lookup func(app string) (Files, bool), started func(app string)) (*Server, error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	s := &Server{ln: ln, lookup: lookup, started: started}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Close stops serving and waits for the accept loop to end.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.handle(c)
	}
}

func (s *Server) handle(c *net.UnixConn) {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	app := strings.TrimSpace(line)
	f, ok := s.lookup(app)
	if !ok {
		_, _ = c.Write([]byte("unknown app\n"))
		return
	}
	rights := unix.UnixRights(int(f.Stdin.Fd()), int(f.Stdout.Fd()), int(f.Stderr.Fd()))
	if _, _, err := c.WriteMsgUnix([]byte("ok\n"), rights, nil); err != nil {
		return
	}
	if s.started != nil {
		s.started(app)
	}
}

// ErrRefused is returned when stage1 does not know the app.
var ErrRefused = errors.New("stage1 refused to hand over stdio")

// Receive asks the server at path for app's descriptors and returns them as
// raw fds in the order stdin, stdout, stderr.
func Receive(path, app string) ([3]int, error) {
	var fds [3]int
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fds, fmt.Errorf("connect to %s: %w", path, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(app + "\n")); err != nil {
		return fds, err
	}
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return fds, fmt.Errorf("receive stdio: %w", err)
	}
	if string(buf[:n]) != "ok\n" {
		return fds, fmt.Errorf("app %q: %w", app, ErrRefused)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fds, fmt.Errorf("receive stdio: malformed control message")
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(got) != 3 {
		return fds, fmt.Errorf("receive stdio: expected 3 descriptors, got %d", len(got))
	}
	copy(fds[:], got)
	return fds, nil
}
