package agent

import (
	"context"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Console.receive takes one pty master from the command's end and nothing
// else: not another kind of descriptor, not two, not none.
func TestConsoleReceivesOnlyAPtyMaster(t *testing.T) {
	ptmx := func() int {
		fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Skipf("no /dev/ptmx: %v", err)
		}
		return fd
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, tc := range []struct {
		name string
		fds  func() []int // nil: the command's end closes without sending
		want string       // "" : a master is taken
	}{
		{"a pty master", func() []int { return []int{ptmx()} }, ""},
		{"not a pty", func() []int { return []int{int(null.Fd())} }, "not a pty master"},
		{"two", func() []int { return []int{ptmx(), ptmx()} }, "2 descriptors"},
		{"none sent", nil, "console"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewConsole()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.fds != nil {
				fds := tc.fds()
				if err := unix.Sendmsg(int(c.Peer.Fd()), []byte("/dev/ptmx"), unix.UnixRights(fds...), nil, 0); err != nil {
					t.Fatal(err)
				}
				for _, fd := range fds {
					if fd != int(null.Fd()) {
						unix.Close(fd)
					}
				}
			}
			c.Peer.Close()
			m, err := c.receive(context.Background())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("receive: %v", err)
				}
				m.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				if m != nil {
					m.Close()
				}
				t.Errorf("receive: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
