// Package stdio hands an app the very file descriptors that skiff was given:
// stage1's host side serves a unix socket inside the pod directory, and the
// app's launcher (app-exec, started by the pod's systemd) asks it for its
// stdin, stdout and stderr by app name and receives them with SCM_RIGHTS. The
// app then writes to the user's terminal, pipe, file or journal socket itself:
// output arrives unaltered and in order. Where stage1 keeps the pod's log, the
// stdout and stderr it hands over are pipes instead, which a Tee copies to
// skiff's own descriptors and into the log (see log.go). The same channel
// carries the socket-activated descriptors (fd 3 on, in the app) and the
// environment that goes with them (LISTEN_FDS, NOTIFY_SOCKET, ...), and tells
// stage1 when each app has started and by which pid.
//
// The protocol is private to one stage1 binary (both ends are the same build):
// app-exec sends "APP\n"; the server answers "ok\n" followed by one
// "KEY=VALUE\n" per environment variable, with the descriptors (stdin,
// stdout, stderr, then the extra ones) attached, and closes; or "error: WHY\n".
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
	Extra                 []*os.File // fd 3, 4, ... in the app
	Env                   []string   // KEY=VALUE added to the app's environment; no newlines
}

// MaxExtra is how many extra descriptors one app can receive (one SCM_RIGHTS
// message carries at most 253).
const MaxExtra = 250

// Handler answers one app's request: pid is the requesting process (as this
// process sees it), which is about to become the app. It returns the app's
// files, or an error that app-exec reports and fails with.
type Handler func(app string, pid int) (Files, error)

// Server answers app-exec's requests on a unix socket.
type Server struct {
	ln      *net.UnixListener
	handle  Handler
	started func(app string, pid int)
	wg      sync.WaitGroup
}

// Listen serves on path. handle decides what an app gets; started is called
// once an app has received its files (it is about to exec, keeping its pid).
func Listen(path string, handle Handler, started func(app string, pid int)) (*Server, error) {
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
	fds := []int{int(f.Stdin.Fd()), int(f.Stdout.Fd()), int(f.Stderr.Fd())}
	for _, x := range f.Extra {
		fds = append(fds, int(x.Fd()))
	}
	msg := "ok\n"
	for _, kv := range f.Env {
		msg += strings.ReplaceAll(kv, "\n", " ") + "\n"
	}
	if len(f.Extra) > MaxExtra {
		_, _ = c.Write([]byte(fmt.Sprintf("error: %d descriptors to pass, at most %d\n", len(f.Extra), MaxExtra)))
		return
	}
	if _, _, err := c.WriteMsgUnix([]byte(msg), unix.UnixRights(fds...), nil); err != nil {
		return
	}
	if s.started != nil {
		s.started(app, pid)
	}
}

// ErrRefused is returned when stage1 refuses the app (its reason follows).
var ErrRefused = errors.New("stage1 refused to start the app")

// Received is what app-exec got: raw descriptors (stdin, stdout, stderr, then
// the extra ones; all close-on-exec) and environment additions.
type Received struct {
	FDs []int
	Env []string
}

// Receive asks the server at path for app's descriptors. It uses plain system
// calls, not the net package: the Go runtime's poller would otherwise hold a
// descriptor (its epoll instance) among those the caller is about to replace
// with fd 3, 4, ...
func Receive(path, app string) (Received, error) {
	var r Received
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return r, fmt.Errorf("connect to %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return r, fmt.Errorf("connect to %s: %w", path, err)
	}
	if _, err := unix.Write(fd, []byte(app+"\n")); err != nil {
		return r, err
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace((3+MaxExtra)*4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return r, fmt.Errorf("receive stdio: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return r, fmt.Errorf("receive stdio: malformed control message")
	}
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err == nil {
			r.FDs = append(r.FDs, got...)
		}
	}
	reply := buf[:n]
	for n > 0 && len(reply) < len(buf) { // the rest of the reply, up to EOF
		n, err = unix.Read(fd, buf[len(reply):])
		if err != nil {
			return r, fmt.Errorf("receive stdio: %w", err)
		}
		reply = buf[:len(reply)+n]
	}
	text := string(reply)
	if !strings.HasPrefix(text, "ok\n") {
		closeAll(r.FDs)
		return r, fmt.Errorf("%w: %s", ErrRefused, strings.TrimSpace(strings.TrimPrefix(text, "error: ")))
	}
	if len(r.FDs) < 3 {
		closeAll(r.FDs)
		return r, fmt.Errorf("receive stdio: expected at least 3 descriptors, got %d", len(r.FDs))
	}
	for _, kv := range strings.Split(strings.TrimPrefix(text, "ok\n"), "\n") {
		if kv != "" {
			r.Env = append(r.Env, kv)
		}
	}
	return r, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Place moves received descriptors to 0, 1, 2, 3, ... (clearing close-on-exec)
// and closes the originals. It fails rather than replace a descriptor it was
// not given (one the Go runtime might be using).
func Place(fds []int) error {
	n := len(fds)
	ours := map[int]bool{}
	for _, fd := range fds {
		ours[fd] = true
	}
	for target := 3; target < n; target++ {
		if _, err := unix.FcntlInt(uintptr(target), unix.F_GETFD, 0); err == nil && !ours[target] {
			return fmt.Errorf("descriptor %d is in use; cannot pass %d descriptors", target, n-3)
		}
	}
	high := make([]int, n)
	for i, fd := range fds { // first out of the way of every target
		h, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, n)
		if err != nil {
			return fmt.Errorf("dup descriptor %d: %w", fd, err)
		}
		high[i] = h
	}
	for _, fd := range fds {
		if fd >= 3 {
			unix.Close(fd)
		}
	}
	for i, h := range high {
		if err := unix.Dup3(h, i, 0); err != nil {
			return fmt.Errorf("dup descriptor %d to %d: %w", h, i, err)
		}
		unix.Close(h)
	}
	return nil
}
