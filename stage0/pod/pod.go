package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// podsDir is the directory under the data directory that holds the state
// directories.
const podsDir = "pods"

// Pod is one pod directory. State and Dir are a sample taken when the pod was
// created, loaded, locked or moved: other processes may move an unlocked pod
// at any time, and a running pod may exit at any time.
type Pod struct {
	UUID  string
	State State
	Dir   string // absolute path of the pod directory when last seen

	dataDir string
	lock    *os.File // the pod directory, flock(LOCK_EX) held; nil when not held
}

// Sentinel errors, checked with errors.Is.
var (
	ErrNotFound  = errors.New("no such pod")
	ErrAmbiguous = errors.New("pod UUID prefix is ambiguous")
	ErrLocked    = errors.New("pod is locked by another process")
)

// AmbiguousError is returned by Load when a prefix matches more than one pod.
// It wraps ErrAmbiguous.
type AmbiguousError struct {
	Prefix string
	UUIDs  []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("pod UUID prefix %q matches %d pods (%s); give more of the UUID",
		e.Prefix, len(e.UUIDs), strings.Join(e.UUIDs, ", "))
}

func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// New allocates a pod: a fresh UUID, an empty directory in embryo/, locked
// exclusively and moved to prepare/. It returns the pod in state Preparing
// with the lock held; the caller prepares it and then moves it on with
// Transition (or to Garbage when preparation fails).
func New(dataDir string) (*Pod, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	parent := filepath.Join(dataDir, podsDir, dirEmbryo)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("create pod: %w", err)
	}
	id := uuid.New().String()
	dir := filepath.Join(parent, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pod %s: %w", id, err)
	}
	f, err := openDir(dir)
	if err == nil {
		err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("lock new pod %s: %w", id, err)
	}
	p := &Pod{UUID: id, State: Embryo, Dir: dir, dataDir: dataDir, lock: f}
	if err := p.Transition(Preparing); err != nil {
		os.Remove(dir)
		p.Close()
		return nil, err
	}
	return p, nil
}

// Load finds a pod by its full UUID or by an unambiguous prefix of it, in any
// state directory, and samples its state. It returns an error wrapping
// ErrNotFound, or an *AmbiguousError (wrapping ErrAmbiguous).
func Load(dataDir, uuidOrPrefix string) (*Pod, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	prefix := strings.ToLower(uuidOrPrefix)
	if prefix == "" || strings.Trim(prefix, "0123456789abcdef-") != "" {
		return nil, fmt.Errorf("pod %q: not a UUID or UUID prefix: %w", uuidOrPrefix, ErrNotFound)
	}
	found, err := scan(dataDir)
	if err != nil {
		return nil, err
	}
	var matches []sighting
	for _, s := range found {
		if s.uuid == prefix {
			matches = []sighting{s}
			break
		}
		if strings.HasPrefix(s.uuid, prefix) {
			matches = append(matches, s)
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("pod %q: %w; list pods with 'skiff list'", uuidOrPrefix, ErrNotFound)
	case 1:
		return load(dataDir, matches[0])
	}
	amb := &AmbiguousError{Prefix: uuidOrPrefix}
	for _, m := range matches {
		amb.UUIDs = append(amb.UUIDs, m.uuid)
	}
	return nil, amb
}

// List returns every pod, each with its state sampled by a non-blocking lock
// probe, in state-directory order. Pods removed during the scan are left out.
func List(dataDir string) ([]*Pod, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	found, err := scan(dataDir)
	if err != nil {
		return nil, err
	}
	pods := make([]*Pod, 0, len(found))
	for _, s := range found {
		p, err := load(dataDir, s)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pods = append(pods, p)
	}
	return pods, nil
}

// listWorkers bounds how many pods ListStatus reads at once: enough to keep
// the CPUs busy and the disk's queue filled while some reads wait.
const listWorkers = 8

// ListStatus returns the Status of every pod (what skiff list shows), each
// pod opened once and its state sampled by a non-blocking lock probe, in
// state-directory order. Pods are read in parallel. Pods removed during the
// scan are left out. brief reads only what skiff list's table shows (see
// Status.read). A pod whose files cannot be read is listed with what
// was read before the error (at least its UUID and state). The error is the
// scan's: reading the state directories.
func ListStatus(dataDir string, brief bool) ([]*Status, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	found, err := scan(dataDir)
	if err != nil {
		return nil, err
	}
	sts := make([]*Status, len(found))
	parallel(len(found), listWorkers, func(i int) {
		s := found[i]
		h, err := openPod(dataDir, s.uuid, s.dir, probeLock)
		switch {
		case errors.Is(err, ErrNotFound):
			return
		case err != nil:
			sts[i] = &Status{UUID: s.uuid, State: stateGuess(s.dir)}
			return
		}
		defer h.f.Close()
		st := &Status{UUID: s.uuid, State: h.state}
		_ = st.read(h.f, brief) // what was read before an error is shown
		sts[i] = st
	})
	out := make([]*Status, 0, len(sts))
	for _, st := range sts {
		if st != nil {
			out = append(out, st)
		}
	}
	return out, nil
}

// stateGuess is the state of a pod in dir that could not be opened.
func stateGuess(dir string) State {
	s, _ := deriveState(dir, false)
	return s
}

// parallel calls f(0) to f(n-1) on at most workers goroutines and returns
// when all have returned.
func parallel(n, workers int, f func(i int)) {
	if workers > n {
		workers = n
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// load samples the state of the pod seen at s.
func load(dataDir string, s sighting) (*Pod, error) {
	h, err := openPod(dataDir, s.uuid, s.dir, probeLock)
	if err != nil {
		return nil, err
	}
	h.f.Close()
	return &Pod{UUID: s.uuid, State: h.state, Dir: h.path, dataDir: dataDir}, nil
}

// Lock takes the pod's exclusive lock without blocking, wherever the pod has
// moved to, and samples its state again: a pod seen Running that is now
// unlocked is Exited. It returns an error wrapping ErrLocked when another
// process holds the lock (a running pod, a preparer, a concurrent gc or rm).
// Locking a pod this Pod already holds is a no-op.
func (p *Pod) Lock() error {
	if p.lock != nil {
		return nil
	}
	h, err := openPod(p.dataDir, p.UUID, p.Dir, takeLock)
	if err != nil {
		return err
	}
	p.Dir = h.path
	p.State = h.state
	if h.locked {
		h.f.Close()
		return fmt.Errorf("pod %s (%s): %w; try again once it is released", p.UUID, p.State, ErrLocked)
	}
	p.lock = h.f
	return nil
}

// Unlock releases the exclusive lock. The pod's State is left as last
// sampled; Load or Status sample it again.
func (p *Pod) Unlock() error {
	if p.lock == nil {
		return nil
	}
	err := p.lock.Close()
	p.lock = nil
	return err
}

// Close releases everything the Pod holds (today, only the lock).
func (p *Pod) Close() error { return p.Unlock() }

// LockFD returns the open pod directory on which the exclusive lock is held,
// or nil when it is not held. Its descriptor is close-on-exec, which suits
// os/exec's ExtraFiles; before syscall.Exec of stage1, use InheritLockFD.
func (p *Pod) LockFD() *os.File { return p.lock }

// InheritLockFD clears close-on-exec on the locked pod directory descriptor so
// that an exec'd stage1 inherits the lock, and returns the descriptor number
// to pass in abi.EnvLockFD.
func (p *Pod) InheritLockFD() (int, error) {
	if p.lock == nil {
		return -1, fmt.Errorf("pod %s: %w", p.UUID, ErrNotLocked)
	}
	rc, err := p.lock.SyscallConn()
	if err != nil {
		return -1, err
	}
	var fd int
	var serr error
	err = rc.Control(func(u uintptr) {
		fd = int(u)
		_, serr = unix.FcntlInt(u, unix.F_SETFD, 0)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return -1, fmt.Errorf("pod %s: clear close-on-exec on lock fd: %w", p.UUID, err)
	}
	return fd, nil
}
