package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// sighting is a pod seen in a state directory during a scan.
type sighting struct {
	uuid string
	dir  string // state directory name, e.g. "run"
}

// scan lists the pods in every state directory, in the order pods move
// through them, so a pod moving forward during the scan is seen at least
// once; a pod seen twice is kept at its later sighting. Entries that are not
// directories named by a canonical UUID are ignored.
func scan(dataDir string) ([]sighting, error) {
	var out []sighting
	index := map[string]int{}
	for _, d := range stateDirs {
		entries, err := os.ReadDir(filepath.Join(dataDir, podsDir, d))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		for _, e := range entries {
			if !e.IsDir() || !isUUID(e.Name()) {
				continue
			}
			s := sighting{uuid: e.Name(), dir: d}
			if i, ok := index[s.uuid]; ok {
				out[i] = s
				continue
			}
			index[s.uuid] = len(out)
			out = append(out, s)
		}
	}
	return out, nil
}

func isUUID(name string) bool {
	u, err := uuid.Parse(name)
	return err == nil && u.String() == name
}

// lockMode says what openPod does with the lock.
type lockMode int

const (
	noLock    lockMode = iota // just open
	probeLock                 // LOCK_SH|LOCK_NB, released at once: is it held?
	takeLock                  // LOCK_EX|LOCK_NB, kept when acquired
)

// handle is a pod directory opened by openPod.
type handle struct {
	f      *os.File // the pod directory; holds LOCK_EX when mode was takeLock and !locked
	path   string   // where the directory was when opened and checked
	state  State    // derived from path and locked
	locked bool     // another open file description holds a conflicting lock
}

// moveRetries bounds how often openPod looks again for a pod that keeps
// moving under it. Each pod moves at most five times in its life.
const moveRetries = 8

// openPod opens the directory of pod id, starting from state directory hint
// ("" to search), applies mode, and checks that the directory it locked is
// still the one at the path it derives the state from, looking again when
// the pod moved in between. It returns an error wrapping ErrNotFound when the
// pod is gone.
func openPod(dataDir, id, hint string, mode lockMode) (*handle, error) {
	dir := hint
	if filepath.IsAbs(hint) {
		dir = filepath.Base(filepath.Dir(hint))
	}
	for range moveRetries {
		if dir == "" {
			if dir = locate(dataDir, id); dir == "" {
				break
			}
		}
		path := filepath.Join(dataDir, podsDir, dir, id)
		h, err := openAt(path, mode)
		if errors.Is(err, errMoved) {
			dir = ""
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", id, err)
		}
		if h.state, err = deriveState(dir, h.locked); err != nil {
			h.f.Close()
			return nil, err
		}
		return h, nil
	}
	return nil, fmt.Errorf("pod %s: %w", id, ErrNotFound)
}

// errMoved says that the pod was not at the path, or left it while being
// opened and locked.
var errMoved = errors.New("pod moved")

func openAt(path string, mode lockMode) (*handle, error) {
	f, err := openDir(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errMoved
	}
	if err != nil {
		return nil, err
	}
	h := &handle{f: f, path: path}
	switch mode {
	case probeLock:
		err = flock(f, unix.LOCK_SH|unix.LOCK_NB)
		if err == nil {
			err = flock(f, unix.LOCK_UN)
		}
	case takeLock:
		err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		h.locked, err = true, nil
	}
	if err == nil {
		err = samePlace(f, path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return h, nil
}

// samePlace checks that path still names the open directory f.
func samePlace(f *os.File, path string) error {
	var st, fst unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errMoved
		}
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Dev != fst.Dev || st.Ino != fst.Ino {
		return errMoved
	}
	return nil
}

// locate returns the state directory that holds pod id now, or "".
func locate(dataDir, id string) string {
	for _, d := range stateDirs {
		if _, err := os.Lstat(filepath.Join(dataDir, podsDir, d, id)); err == nil {
			return d
		}
	}
	return ""
}

// openDir opens a directory for locking: O_RDONLY|O_DIRECTORY, close-on-exec,
// not following a symlink in the last component.
func openDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = unix.Flock(int(fd), how)
			if ferr != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if ferr != nil {
		return &os.PathError{Op: "flock", Path: f.Name(), Err: ferr}
	}
	return nil
}
