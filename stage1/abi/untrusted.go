package abi

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/lazyre"
)

// Reading what a pod may have written. Parts of a pod directory are writable
// from inside the pod (the apps' directories in the default flavor; in the kvm
// flavor, what the guest shares), so every reader of a pod file treats it as
// hostile: no symbolic link is followed anywhere on the path below the
// directory the caller trusts, only a regular file is read (a FIFO or a device
// never blocks or floods the reader), and never more than a bound.

// MaxFileSize bounds any file stage0 or a stage1 reads from a pod directory
// (pod.json, exit records, network state): far above what skiff writes, far
// below what would hurt. Since v1.
const MaxFileSize = 4 << 20

// ErrTooLarge is returned for a pod file larger than the reader's bound.
var ErrTooLarge = errors.New("file too large")

// ErrNotRegular is returned for a pod file that is not a regular file (a
// directory, FIFO, socket or device).
var ErrNotRegular = errors.New("not a regular file")

// OpenFileAt opens rel beneath the open directory dir for reading, refusing a
// path that leaves dir or has a symbolic link in any component (ELOOP), and
// anything but a regular file (ErrNotRegular). The open never blocks: a FIFO
// is refused, not waited on.
func OpenFileAt(dir *os.File, rel string) (*os.File, error) {
	fd, err := openBeneath(int(dir.Fd()), rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	name := filepath.Join(dir.Name(), rel)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	// Reads of a regular file ignore O_NONBLOCK; clear it all the same.
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// OpenDirAt opens the directory rel beneath dir as OpenFileAt opens a file
// (no symbolic link on the way, nothing outside dir).
func OpenDirAt(dir *os.File, rel string) (*os.File, error) {
	fd, err := openBeneath(int(dir.Fd()), rel, unix.O_RDONLY|unix.O_DIRECTORY)
	name := filepath.Join(dir.Name(), rel)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// openBeneath is openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), or, on a
// kernel without openat2, walkBeneath.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	how := &unix.OpenHow{Flags: uint64(flags),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dirfd, rel, how)
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	return walkBeneath(dirfd, rel, flags)
}

// walkBeneath opens rel beneath dirfd one component at a time, each with
// O_NOFOLLOW, refusing ".." and absolute paths.
func walkBeneath(dirfd int, rel string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	if filepath.IsAbs(rel) {
		return -1, unix.EXDEV
	}
	parts := strings.Split(rel, "/")
	cur := dirfd
	closeCur := func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}
	for i, p := range parts {
		if p == ".." {
			closeCur()
			return -1, unix.EXDEV
		}
		fl := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW
		if i == len(parts)-1 {
			fl = flags
		} else if p == "" || p == "." {
			continue
		}
		if p == "" {
			p = "."
		}
		next, err := unix.Openat(cur, p, fl, 0)
		closeCur()
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// ReadFileAt reads the regular file rel beneath dir (see OpenFileAt), at most
// max bytes: a larger file is ErrTooLarge.
//
// It works on the bare descriptor: open, fstat, one read of the size fstat
// gave, close (skiff list reads two or three files of each pod; through an
// *os.File and io.ReadAll a read took twice as many system calls). What the
// file holds is what it held at the fstat: a file that grows meanwhile (only
// a hostile writer's; skiff's writers rename a whole file into place) is read
// up to that size. So it is not for procfs or sysfs files, whose size fstat
// gives as 0 (or 4096): they would read as empty (or cut); its callers read
// pod files only.
func ReadFileAt(dir *os.File, rel string, max int64) ([]byte, error) {
	fd, err := openBeneath(int(dir.Fd()), rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	name := filepath.Join(dir.Name(), rel)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	if st.Size > max {
		return nil, &os.PathError{Op: "read", Path: name, Err: fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, max)}
	}
	b := make([]byte, st.Size)
	for n := 0; n < len(b); {
		m, err := unix.Read(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: name, Err: err}
		}
		if m == 0 { // shrunk meanwhile
			return b[:n], nil
		}
		n += m
	}
	return b, nil
}

// ReadJSONAt decodes the JSON file rel beneath dir into v: a regular file
// reached without symbolic links, at most MaxFileSize bytes.
func ReadJSONAt(dir *os.File, rel string, v any) error {
	b, err := ReadFileAt(dir, rel, MaxFileSize)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", filepath.Join(dir.Name(), rel), err)
	}
	return nil
}

// ReadJSON decodes the JSON file at path into v, as ReadJSONAt does. A
// relative path (a pod file, the working directory being the pod
// directory) is resolved beneath the working directory with no symbolic
// link in any component; for an absolute path the caller trusts the
// directory and only the file itself must not be a link.
func ReadJSON(path string, v any) error {
	dir, rel := ".", path
	if filepath.IsAbs(path) {
		dir, rel = filepath.Dir(path), filepath.Base(path)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := ReadJSONAt(d, rel, v); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && dir == "." {
			pe.Path = path
		}
		return err
	}
	return nil
}

// ErrBadRecord is returned for an exit record whose values skiff never
// writes: a code outside 0–255, a malformed signal name or app name.
var ErrBadRecord = errors.New("malformed record")

var signalRE = lazyre.New(`^SIG[A-Z0-9+-]{1,16}$`)

// Validate checks an app's exit record as a pod may have forged it.
func (x AppExit) Validate() error {
	switch {
	case x.Code < 0 || x.Code > 255:
		return fmt.Errorf("%w: exit code %d", ErrBadRecord, x.Code)
	case x.Signal != "" && !signalRE.MatchString(x.Signal):
		return fmt.Errorf("%w: signal %q", ErrBadRecord, x.Signal)
	case x.App != "" && ValidateAppName(x.App) != nil:
		return fmt.Errorf("%w: app name %q", ErrBadRecord, x.App)
	}
	return nil
}

// Validate checks the pod's exit record.
func (x PodExit) Validate() error {
	if x.Code < 0 || x.Code > 255 {
		return fmt.Errorf("%w: exit code %d", ErrBadRecord, x.Code)
	}
	return nil
}

// DecodeAppExit parses and validates an apps/NAME/exit.json.
func DecodeAppExit(b []byte) (AppExit, error) {
	var x AppExit
	if err := json.Unmarshal(b, &x); err != nil {
		return AppExit{}, err
	}
	if err := x.Validate(); err != nil {
		return AppExit{}, err
	}
	return x, nil
}

// DecodePodExit parses and validates the pod's exit.json.
func DecodePodExit(b []byte) (PodExit, error) {
	var x PodExit
	if err := json.Unmarshal(b, &x); err != nil {
		return PodExit{}, err
	}
	if err := x.Validate(); err != nil {
		return PodExit{}, err
	}
	return x, nil
}

// ReadAppExitAt reads and validates app's exit record beneath the pod
// directory dir (see ReadFileAt).
func ReadAppExitAt(dir *os.File, app string) (AppExit, error) {
	rel := filepath.Join(AppsDir, app, AppExitFile)
	b, err := ReadFileAt(dir, rel, MaxFileSize)
	if err != nil {
		return AppExit{}, err
	}
	x, err := DecodeAppExit(b)
	if err != nil {
		return AppExit{}, fmt.Errorf("%s: %w", filepath.Join(dir.Name(), rel), err)
	}
	if x.App != "" && x.App != app {
		return AppExit{}, fmt.Errorf("%s: %w: record of app %q", filepath.Join(dir.Name(), rel), ErrBadRecord, x.App)
	}
	return x, nil
}
