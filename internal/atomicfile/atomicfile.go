// Package atomicfile writes files so that readers see the old content or the
// new, never a partial file: a temporary file in the same directory, then rename.
//
// Neither step follows a symbolic link at the target: the temporary file is
// created with O_EXCL (a new name nobody could have planted a link at), and
// rename(2) replaces the target's directory entry, a link included, without
// looking at what it points to. So skiff, running as root, never writes
// through a link someone left at a path a user named (a world-writable /tmp
// in particular). [WriteFile] and [Create] also refuse a target that exists
// and is not a regular file, so a link, directory, device or fifo at a
// user-given path is reported, not silently replaced.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes data to path through a temporary file in the same directory and
// rename(2). It does not fsync: callers that need durability across a power
// loss sync themselves.
func Write(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// CheckTarget returns an error naming path if it exists and is not a regular
// file (checked without following a link). It is for a path a user gave:
// the error says what to do.
func CheckTarget(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	what := ""
	switch m := fi.Mode(); {
	case m.IsRegular():
		return nil
	case m&fs.ModeSymlink != 0:
		what = "a symbolic link"
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "a fifo"
	case m&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		what = "a device"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	default:
		what = "not a regular file"
	}
	return fmt.Errorf("%s is %s; skiff only replaces regular files: remove it or name a new file", path, what)
}

// WriteFile is [Write] for a path a user gave: it refuses a target that
// exists and is not a regular file ([CheckTarget]).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := CheckTarget(path); err != nil {
		return err
	}
	return Write(path, data, perm)
}

// File is a file being written by [Create]: a temporary file beside its
// target until [File.Commit] renames it into place.
type File struct {
	*os.File
	path string
	perm os.FileMode
	done bool
}

// Create starts writing path, a path a user gave (see [WriteFile]), through
// a temporary file in its directory. Call Commit to put it in place, and
// Abort (a no-op after Commit) on every path, e.g. deferred.
func Create(path string, perm os.FileMode) (*File, error) {
	if err := CheckTarget(path); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path, perm: perm}, nil
}

// Commit closes the file and renames it to its target.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: already committed or aborted", f.path)
	}
	f.done = true
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(f.perm); err != nil {
		f.File.Close()
		return err
	}
	if err := f.File.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, f.path)
}

// Abort closes and removes the temporary file, unless Commit ran.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.Name())
}
