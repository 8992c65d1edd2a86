package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSunPath is the longest path a sockaddr_un holds (108 bytes with the NUL).
const maxSunPath = 107

// shortPath calls f with path, or, when path is too long for a unix socket
// address (a pod directory under a deep --dir can be), with the same file
// named through /proc/self/fd and an open descriptor of its directory.
func shortPath(path string, f func(string) error) error {
	if len(path) <= maxSunPath {
		return f(path)
	}
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	return f(fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)))
}

// listenUnix listens on a unix socket at path, replacing a stale socket
// left there by a run that crashed (the caller holds the pod's lock, so no
// live broker owns it). Closing the listener does not remove the file.
func listenUnix(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	var l *net.UnixListener
	err := shortPath(path, func(p string) error {
		var err error
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	return l, nil
}

func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var c net.Conn
	err := shortPath(path, func(p string) error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "unix", p)
		return err
	})
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err // the path in p may be the /proc/self/fd form
		}
		return nil, err
	}
	return c, nil
}
