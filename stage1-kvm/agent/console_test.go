package agent

import (
	"context"
	"testing"

	"golang.org/x/sys/unix"
)

// Console.receive takes the pty master the command's end sends (what else
// it refuses is stdio.PtyMaster's test), and ends with an error when the
// command's end closes without sending one.
func TestConsoleReceive(t *testing.T) {
	for _, send := range []bool{true, false} {
		c, err := NewConsole()
		if err != nil {
			t.Fatal(err)
		}
		if send {
			fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Skipf("no /dev/ptmx: %v", err)
			}
			err = unix.Sendmsg(int(c.Peer.Fd()), []byte("/dev/ptmx"), unix.UnixRights(fd), nil, 0)
			unix.Close(fd)
			if err != nil {
				t.Fatal(err)
			}
		}
		c.Peer.Close()
		m, err := c.receive(context.Background())
		if send && err != nil {
			t.Errorf("a master sent: %v", err)
		}
		if !send && err == nil {
			t.Error("the command's end closed without a master: no error")
		}
		if m != nil {
			m.Close()
		}
		c.Close()
	}
}
