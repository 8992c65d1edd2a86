package stdio

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// PtyMaster takes one pty master and nothing else: not another kind of
// descriptor, not two, not none.
func TestPtyMasterTakesOnlyOnePtyMaster(t *testing.T) {
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
		fds  func() []int
		want string // "": a master is taken
	}{
		{"a pty master", func() []int { return []int{ptmx()} }, ""},
		{"not a pty", func() []int { return []int{int(null.Fd())} }, "not a pty master"},
		{"two", func() []int { return []int{ptmx(), ptmx()} }, "2 descriptors"},
		{"none", func() []int { return nil }, "0 descriptors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pair[0])
			defer unix.Close(pair[1])
			fds := tc.fds()
			var rights []byte
			if len(fds) > 0 {
				rights = unix.UnixRights(fds...)
			}
			if err := unix.Sendmsg(pair[1], []byte("/dev/ptmx"), rights, nil, 0); err != nil {
				t.Fatal(err)
			}
			for _, fd := range fds {
				if fd != int(null.Fd()) {
					unix.Close(fd)
				}
			}
			oob := make([]byte, ConsoleOOB)
			_, oobn, _, _, err := unix.Recvmsg(pair[0], make([]byte, 64), oob, unix.MSG_CMSG_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			fd, err := PtyMaster(oob[:oobn])
			if tc.want == "" {
				if err != nil {
					t.Fatalf("PtyMaster: %v", err)
				}
				unix.Close(fd)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				if err == nil {
					unix.Close(fd)
				}
				t.Errorf("PtyMaster: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
