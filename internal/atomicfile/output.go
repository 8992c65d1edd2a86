package atomicfile

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/lazyre"
)

// Output is where a verb writes a stream (an archive) a user named: a new or
// regular file written atomically ([Create]), or a stream written in place.
type Output interface {
	io.Writer
	// Commit puts a file in place; for a stream it only reports a failed close.
	Commit() error
	// Abort drops an uncommitted file; a no-op for a stream and after Commit.
	Abort()
}

// fdLink matches the links that name one of this process's open files.
var fdLink = lazyre.New(`^/(?:dev/fd|proc/self/fd)/([0-9]{1,4})$`)

// CreateOutput opens path for a stream a user wants written there, as
// podman save does: "-" is standard output; a fifo is written in place; so
// are /dev/stdout, /dev/stderr, /dev/fd/N and /proc/self/fd/N when they name
// an open pipe, socket, fifo or regular file of this process (a shell's
// redirection), and /dev/null. A new name or a regular file is written
// atomically, as [Create] does. Anything else (a terminal, another device, a
// directory, another link) is refused with an error saying what to do; the
// thing at path is never replaced.
func CreateOutput(path string, perm os.FileMode) (Output, error) {
	return createOutput(path, perm, false)
}

// CreateTextOutput is [CreateOutput] for a line of text a user wants to see
// (a pod's UUID): a terminal or other device open as standard output (or
// another open descriptor named) is written to as well.
func CreateTextOutput(path string, perm os.FileMode) (Output, error) {
	return createOutput(path, perm, true)
}

func createOutput(path string, perm os.FileMode, text bool) (Output, error) {
	fd, inPlace, err := checkOutput(path, text)
	if err != nil {
		return nil, err
	}
	if fd >= 0 {
		return &stream{w: os.NewFile(uintptr(fd), path)}, nil
	}
	if inPlace {
		var st unix.Stat_t
		// O_NOFOLLOW, and checked again once open: what was a fifo at the
		// Lstat may have been swapped meanwhile.
		f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_NOCTTY, 0)
		if err != nil {
			return nil, userError(path, err)
		}
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || (st.Mode&unix.S_IFMT != unix.S_IFIFO && !isDevNull(&st)) {
			f.Close()
			return nil, fmt.Errorf("%s changed while skiff opened it; name a new file", path)
		}
		return &stream{w: f, owned: true}, nil
	}
	return Create(path, perm)
}

// CheckTextOutput tells, without opening it, whether [CreateTextOutput]
// would accept path, and whether it is a stream written in place (standard
// output, a fifo, /dev/null, ...) rather than a file created in its
// directory. The error says what to do.
func CheckTextOutput(path string) (stream bool, err error) {
	fd, inPlace, err := checkOutput(path, true)
	return fd >= 0 || inPlace, err
}

// checkOutput is CreateOutput's decision: fd >= 0 for an open file
// descriptor of this process to stream to, inPlace for a fifo or /dev/null
// to open and stream to, neither for a new or regular file.
func checkOutput(path string, text bool) (fd int, inPlace bool, err error) {
	fd = -1
	switch path {
	case "-", "/dev/stdout":
		fd = 1
	case "/dev/stderr":
		fd = 2
	default:
		if m := fdLink.FindStringSubmatch(path); m != nil {
			fd, _ = strconv.Atoi(m[1])
		}
	}
	if fd >= 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return -1, false, fmt.Errorf("%s: file descriptor %d is not open: %w", path, fd, err)
		}
		if text && st.Mode&unix.S_IFMT == unix.S_IFCHR {
			return fd, false, nil
		}
		if err := streamable(path, &st); err != nil {
			return -1, false, err
		}
		return fd, false, nil
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		if st.Mode&unix.S_IFMT != unix.S_IFIFO && !isDevNull(&st) {
			return -1, false, notStreamable(path, CheckTarget(path))
		}
		return -1, true, nil
	}
	return -1, false, nil
}

// streamable refuses a terminal or device open at a standard stream.
func streamable(path string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFREG:
		return nil
	case unix.S_IFCHR:
		if isDevNull(st) {
			return nil
		}
		return fmt.Errorf("%s is a terminal or device; skiff does not write an archive there: redirect it to a file or a pipe (> FILE, | CMD) or name a file", path)
	}
	return fmt.Errorf("%s is not a file, pipe or socket; redirect it or name a file", path)
}

func isDevNull(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3
}

func notStreamable(path string, err error) error {
	if err == nil {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	return fmt.Errorf("%v; or write to a fifo, or '-' for standard output", err)
}

type stream struct {
	w     *os.File
	owned bool
	done  bool
}

func (s *stream) Write(p []byte) (int, error) { return s.w.Write(p) }

func (s *stream) Commit() error {
	if s.done || !s.owned {
		s.done = true
		return nil
	}
	s.done = true
	return s.w.Close()
}

func (s *stream) Abort() {
	if !s.done && s.owned {
		s.w.Close()
	}
	s.done = true
}
