package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/stdio"
)

// openPty opens a new pseudo-terminal pair through /dev/ptmx, sized ws when
// ws is not zero. The master stays non-blocking (the runtime poller reads
// it), so it is only ever used through its SyscallConn, never Fd. The
// slave is opened with TIOCGPTPEER (no /dev/pts lookup: it works in a chroot
// whose /dev has no pts) or, on kernels before 4.13, by its /dev/pts path. A
// devpts must be mounted at /dev/pts beside the /dev/ptmx used.
func openPty(ws Winsize) (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open a pty: %w", err)
	}
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	var sfd int
	err = ptyControl(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock the pty: %w", err)
		}
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
		if errno == 0 {
			sfd = int(r)
			return nil
		}
		n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
		if err != nil {
			return fmt.Errorf("pty number: %w", err)
		}
		sfd, err = unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/pts/%d: %w", n, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slave = os.NewFile(uintptr(sfd), "pty")
	if ws != (Winsize{}) {
		if err = setWinsize(master, ws); err != nil {
			slave.Close()
			return nil, nil, err
		}
	}
	return master, slave, nil
}

// ptyControl runs f on f's descriptor without making it blocking.
func ptyControl(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// SetWinsize sets the size of the pseudo-terminal whose master is master.
func SetWinsize(master *os.File, ws Winsize) error { return setWinsize(master, ws) }

func setWinsize(master *os.File, ws Winsize) error {
	return ptyControl(master, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
	})
}

// sendEOF passes the end of stdin on to a terminal: its EOF character
// (normally ^D), which ends a read at the start of a line, when the terminal
// is in canonical mode; nothing in raw mode, where no byte means "end".
func sendEOF(master *os.File) {
	var eof byte
	_ = ptyControl(master, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err == nil && t.Lflag&unix.ICANON != 0 {
			eof = t.Cc[unix.VEOF]
		}
		return err
	})
	if eof != 0 {
		_, _ = master.Write([]byte{eof})
	}
}

// OpenPty opens a new pseudo-terminal pair sized ws (see openPty): the guest
// gives an interactive app whose host stdin is a terminal the slave as its
// stdio and relays the master.
func OpenPty(ws Winsize) (master, slave *os.File, err error) { return openPty(ws) }

// A Console is a socket over which a command sends the master of the pty it
// made itself (CmdOptions.Console): Peer is the command's end.
type Console struct {
	sock *os.File
	Peer *os.File
}

// consoleWait bounds the wait for a console command's pty master: longer
// than app-exec's own wait for a starting app (appexec's appStartWait, 30 s),
// so that it fails first and says why. The command's end and the host's
// hangup end the wait before that.
const consoleWait = 2 * time.Minute

// NewConsole makes a console socket pair.
func NewConsole() (*Console, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &Console{sock: os.NewFile(uintptr(fds[0]), "console"), Peer: os.NewFile(uintptr(fds[1]), "console-peer")}, nil
}

// Close closes both ends (closing one twice is harmless).
func (c *Console) Close() {
	c.sock.Close()
	c.Peer.Close()
}

// receive waits (until ctx ends, or consoleWait) for the pty master: the one
// descriptor of the first message, which must be a pty master (a
// descriptor of /dev/ptmx's device, ptmx or devpts's ptmx), not anything the
// command chose to send. An end of the socket without one is an error.
func (c *Console) receive(ctx context.Context) (*os.File, error) {
	conn, err := net.FileConn(c.sock)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, errors.New("console: not a unix socket")
	}
	deadline := time.Now().Add(consoleWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = uc.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = uc.SetReadDeadline(time.Now()) })
	defer stop()
	buf, oob := make([]byte, 64), make([]byte, stdio.ConsoleOOB)
	_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob) // MSG_CMSG_CLOEXEC on Linux
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	fd, err := stdio.PtyMaster(oob[:oobn])
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "pty-master"), nil
}
