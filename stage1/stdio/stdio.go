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

// Handler answers one app's request: pid is the requesting process (as this
// process sees it), which is about to become the app. It returns the app's
// files, or an error that app-exec reports and fails with.
type Handler func(app string, pid int) (Files, error)

// Server answers app-exec's requests on a unix socket.
type Server struct {
	ln      *net.UnixListener
	handle  Handler
	started func(app string)
	wg      sync.WaitGroup
}

// Listen serves on path. handle decides what an app gets; started is called
// once an app has received its files (it is about to exec).
func Listen(path string, handle Handler, started func(app string)) (*Server, error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	s := &Server{ln: ln, handle: handle, started: started}
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
		s.serveConn(c)
	}
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	app := strings.TrimSpace(line)
	pid := 0
	if raw, err := c.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				pid = int(cred.Pid)
			}
		})
	}
	f, err := s.handle(app, pid)
	if err != nil {
		_, _ = c.Write([]byte("error: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"))
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

// ErrRefused is returned when stage1 refuses the app (its reason follows).
var ErrRefused = errors.New("stage1 refused to start the app")

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
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return fds, fmt.Errorf("receive stdio: %w", err)
	}
	if reply := string(buf[:n]); reply != "ok\n" {
		return fds, fmt.Errorf("%w: %s", ErrRefused, strings.TrimSpace(strings.TrimPrefix(reply, "error: ")))
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
