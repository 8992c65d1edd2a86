package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// State is where a pod is in its life: its directory plus, where the lock
// means something, whether the lock is held.
type State int

// The states, in the order a pod normally goes through them.
const (
	Embryo           State = iota // embryo/: UUID allocated, nothing written
	Preparing                     // prepare/, locked: a preparer is writing it
	AbandonedPrepare              // prepare/, unlocked: the preparer died
	Prepared                      // prepared/: ready for run-prepared
	Running                       // run/, locked: stage1 holds the lock
	Exited                        // run/, unlocked: stage1 has ended
	ExitedGarbage                 // exited-garbage/: marked by gc, swept later
	Garbage                       // garbage/: to be removed
)

// stateInfo is one row of the state table: its name and its directory under
// DATADIR/pods.
type stateInfo struct {
	name string
	dir  string
}

var stateTable = [...]stateInfo{
	Embryo:           {"embryo", dirEmbryo},
	Preparing:        {"preparing", dirPrepare},
	AbandonedPrepare: {"abandoned", dirPrepare},
	Prepared:         {"prepared", dirPrepared},
	Running:          {"running", dirRun},
	Exited:           {"exited", dirRun},
	ExitedGarbage:    {"exited-garbage", dirExitedGarbage},
	Garbage:          {"garbage", dirGarbage},
}

// The state directories, in the order pods move through them. Scanning them
// in this order never misses a pod that moves forward during the scan.
const (
	dirEmbryo        = "embryo"
	dirPrepare       = "prepare"
	dirPrepared      = "prepared"
	dirRun           = "run"
	dirExitedGarbage = "exited-garbage"
	dirGarbage       = "garbage"
)

var stateDirs = []string{dirEmbryo, dirPrepare, dirPrepared, dirRun, dirExitedGarbage, dirGarbage}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateTable) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateTable[s].name
}

func (s State) dir() string { return stateTable[s].dir }

// deriveState tells the state of a pod found in dir, given whether another
// open file description holds its lock.
func deriveState(dir string, locked bool) (State, error) {
	switch dir {
	case dirEmbryo:
		return Embryo, nil
	case dirPrepare:
		if locked {
			return Preparing, nil
		}
		return AbandonedPrepare, nil
	case dirPrepared:
		return Prepared, nil
	case dirRun:
		if locked {
			return Running, nil
		}
		return Exited, nil
	case dirExitedGarbage:
		return ExitedGarbage, nil
	case dirGarbage:
		return Garbage, nil
	}
	return 0, fmt.Errorf("unknown pod state directory %q", dir)
}

// edge is one allowed transition and what it stands for.
type edge struct {
	from, to State
	why      string
}

// edges is every transition a pod may take. Each one changes directory, and
// each is taken with the pod's exclusive lock held. Running has no outgoing
// edge: a running pod is never moved; it becomes Exited when stage1 lets go
// of the lock.
var edges = []edge{
	{Embryo, Preparing, "New locks the fresh directory"},
	{Embryo, Garbage, "gc of a stale embryo"},
	{Preparing, Prepared, "prepare finished"},
	{Preparing, Running, "run: prepared and started in one go"},
	{Preparing, Garbage, "preparation failed"},
	{AbandonedPrepare, Garbage, "gc of a dead preparation"},
	{Prepared, Running, "run-prepared"},
	{Prepared, Garbage, "rm, or gc of an expired prepared pod"},
	{Exited, ExitedGarbage, "gc mark"},
	{Exited, Garbage, "rm"},
	{ExitedGarbage, Garbage, "rm of a marked pod"},
}

func allowed(from, to State) bool {
	for _, e := range edges {
		if e.from == from && e.to == to {
			return true
		}
	}
	return false
}

// ErrBadTransition is returned by Transition for an edge that the state table
// does not have.
var ErrBadTransition = errors.New("transition not allowed")

// ErrNotLocked is returned when an operation needs the pod's exclusive lock
// and the caller does not hold it.
var ErrNotLocked = errors.New("pod lock not held; take it with Lock first")

// Transition moves the pod to state to by renaming its directory. The caller
// must hold the pod's exclusive lock (New and Lock take it). An edge that is
// not in the table returns an error wrapping ErrBadTransition that names both
// states.
func (p *Pod) Transition(to State) error {
	if !allowed(p.State, to) {
		return fmt.Errorf("pod %s: from %s to %s: %w", p.UUID, p.State, to, ErrBadTransition)
	}
	if p.lock == nil {
		return fmt.Errorf("pod %s: from %s to %s: %w", p.UUID, p.State, to, ErrNotLocked)
	}
	parent := filepath.Join(p.dataDir, podsDir, to.dir())
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("pod %s: from %s to %s: %w", p.UUID, p.State, to, err)
	}
	dst := filepath.Join(parent, p.UUID)
	if err := renameNoReplace(p.Dir, dst); err != nil {
		return fmt.Errorf("pod %s: from %s to %s: %w", p.UUID, p.State, to, err)
	}
	p.Dir, p.State = dst, to
	return nil
}

// renameNoReplace renames a directory, refusing to replace an existing one
// (plain rename(2) silently replaces an empty directory).
func renameNoReplace(src, dst string) error {
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// The filesystem does not support RENAME_NOREPLACE.
		if _, serr := os.Lstat(dst); serr == nil {
			return &os.LinkError{Op: "rename", Old: src, New: dst, Err: unix.EEXIST}
		}
		return os.Rename(src, dst)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: src, New: dst, Err: err}
	}
	return nil
}
