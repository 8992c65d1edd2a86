// Package lockfile opens the files skiff's processes flock to take turns
// (host-wide ones in /run, a state root's own): root's alone, never through
// a symbolic link, and not inherited by what the process executes.
package lockfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// Open opens the lock file at path for flock, creating it (0600) if it is
// missing. A symbolic link at path is refused (ELOOP): a lock file in a
// directory another user could write must not open the link's target.
func Open(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}
