// Package privdir makes the directories that hold skiff's private state (the
// data directory, the image store, the pods) reachable by root alone: image
// layers keep their setuid files and device nodes, so a store other users
// can walk into hands them a setuid-root binary (Docker CVE-2021-41091).
package privdir

import (
	"fmt"
	"io/fs"
	"os"
)

// Ensure creates dir with mode perm (missing parents too), or narrows an
// existing dir whose permission bits go beyond perm down to perm. It returns
// the mode dir had when it was narrowed, and 0 when nothing had to change.
// A symbolic link is followed: the administrator may point the data
// directory elsewhere.
func Ensure(dir string, perm fs.FileMode) (was fs.FileMode, err error) {
	if err := os.MkdirAll(dir, perm); err != nil {
		return 0, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("%s: not a directory", dir)
	}
	mode := fi.Mode().Perm()
	if mode&^perm == 0 {
		return 0, nil
	}
	if err := os.Chmod(dir, mode&perm); err != nil {
		return 0, fmt.Errorf("%s: narrowing mode %04o to %04o: %w", dir, mode, mode&perm, err)
	}
	return mode, nil
}
