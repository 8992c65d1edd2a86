package stdio

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ConsoleOOB is the size of the control buffer to receive a console
// socket's message into: room for a few descriptors, so that PtyMaster sees
// (and closes) more than the one it wants.
var ConsoleOOB = unix.CmsgSpace(4 * 4)

// PtyMaster takes the descriptor a console socket's message carried (oob, its
// control data, received with MSG_CMSG_CLOEXEC). runc's console-socket
// protocol, which app-exec --console-fd speaks, sends exactly one: the
// master of the pty the process made. Anything else (none, more than one,
// one that is not a pty master) is refused, and every descriptor received
// is closed.
func PtyMaster(oob []byte) (int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1, fmt.Errorf("console: %w", err)
	}
	var fds []int
	for i := range msgs {
		if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("console: %d descriptors sent, want the pty master", len(fds))
	}
	if _, err := unix.IoctlGetInt(fds[0], unix.TIOCGPTN); err != nil {
		unix.Close(fds[0])
		return -1, fmt.Errorf("console: the descriptor sent is not a pty master: %w", err)
	}
	return fds[0], nil
}
