// Package idrange leases uid and gid ranges to the pods that run with
// --private-users, host-wide: every skiff on the host, whatever its --dir,
// leases from one directory (DefaultDir), so no two pods that exist at the
// same time share a range, not even pods of two data directories.
//
// A lease is a file in that directory named by the range's first id and
// holding the pod it belongs to (UUID and data directory). Allocate and
// Release take an flock on the directory, so concurrent skiffs take turns.
// Allocate hands out the lowest free range of the pool, skipping the ranges
// that /etc/subuid and /etc/subgid give users for their own containers
// (Reserved), and takes back the leases of pods that no longer exist (Alive):
// a pod directory removed without 'skiff gc' does not keep its range forever.
package idrange

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/stage1/abi"
)

// DefaultDir is where the host's leases are, whatever skiff's --dir.
const DefaultDir = "/var/lib/skiff/userns"

// DefaultPool is where ranges come from: the ids systemd sets aside for
// containers' ranges (0x00080000 to 0x6FFFFFFF, systemd's UIDS-GIDS.md),
// above every regular and system user.
var DefaultPool = abi.IDRange{Base: 0x80000, Size: 0x70000000 - 0x80000}

// Lease is what a lease file holds: the pod that has the range.
type Lease struct {
	Pod     string `json:"pod"`     // the pod's UUID
	DataDir string `json:"dataDir"` // the pod's skiff data directory (--dir), absolute
}

// Allocator hands out ranges of Size ids, aligned on Size, from Pool.
type Allocator struct {
	Dir      string
	Pool     abi.IDRange
	Size     uint32
	Reserved []abi.IDRange // never handed out, not even in part
	// Alive tells whether a lease's pod still exists; false takes the lease
	// back. It must answer true when in doubt.
	Alive func(Lease) bool
}

// ErrExhausted is returned when every range of the pool is leased.
var ErrExhausted = errors.New("every private uid/gid range is leased")

// Allocate leases the lowest free range to l's pod.
func (a *Allocator) Allocate(l Lease) (abi.IDRange, error) {
	unlock, err := a.lock()
	if err != nil {
		return abi.IDRange{}, err
	}
	defer unlock()
	used, err := a.leased()
	if err != nil {
		return abi.IDRange{}, err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return abi.IDRange{}, err
	}
	end := uint64(a.Pool.Base) + uint64(a.Pool.Size)
	first := (uint64(a.Pool.Base) + uint64(a.Size) - 1) / uint64(a.Size) * uint64(a.Size)
	for base := first; base+uint64(a.Size) <= end; base += uint64(a.Size) {
		r := abi.IDRange{Base: uint32(base), Size: a.Size}
		if used[r.Base] || overlapsAny(r, a.Reserved) {
			continue
		}
		if err := atomicfile.Write(a.path(r.Base), append(b, '\n'), 0o644); err != nil {
			return abi.IDRange{}, fmt.Errorf("lease ids %s for pod %s: %w", r, l.Pod, err)
		}
		return r, nil
	}
	return abi.IDRange{}, fmt.Errorf("pod %s: %w (%d pods hold one, see %s); remove pods with 'skiff gc'", l.Pod, ErrExhausted, len(used), a.Dir)
}

// Release gives back pod's lease of r. Releasing a range that pod does not
// hold (any more) does nothing.
func (a *Allocator) Release(r abi.IDRange, pod string) error {
	unlock, err := a.lock()
	if err != nil {
		return err
	}
	defer unlock()
	l, err := readLease(a.path(r.Base))
	if errors.Is(err, os.ErrNotExist) || (err == nil && l.Pod != pod) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(a.path(r.Base)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("release ids %s of pod %s: %w", r, pod, err)
	}
	return nil
}

// leased reads the leases, taking back those whose pod is gone, and returns
// the first ids of the ranges still leased. A lease it cannot read stays.
func (a *Allocator) leased() (map[uint32]bool, error) {
	entries, err := os.ReadDir(a.Dir)
	if err != nil {
		return nil, err
	}
	used := map[uint32]bool{}
	for _, e := range entries {
		base, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue // a temporary file of atomicfile
		}
		l, err := readLease(filepath.Join(a.Dir, e.Name()))
		if err == nil && !a.Alive(l) {
			if err := os.Remove(filepath.Join(a.Dir, e.Name())); err == nil {
				continue
			}
		}
		used[uint32(base)] = true
	}
	return used, nil
}

func (a *Allocator) path(base uint32) string {
	return filepath.Join(a.Dir, strconv.FormatUint(uint64(base), 10))
}

// lock takes the directory's flock (making the directory first).
func (a *Allocator) lock() (unlock func(), err error) {
	if err := os.MkdirAll(a.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("uid/gid leases: %w", err)
	}
	f, err := os.Open(a.Dir)
	if err != nil {
		return nil, fmt.Errorf("uid/gid leases: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("uid/gid leases: lock %s: %w", a.Dir, err)
	}
	return func() { f.Close() }, nil
}

func readLease(path string) (Lease, error) {
	var l Lease
	b, err := os.ReadFile(path)
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("parse %s: %w", path, err)
	}
	return l, nil
}

func overlapsAny(r abi.IDRange, others []abi.IDRange) bool {
	for _, o := range others {
		if uint64(r.Base) < uint64(o.Base)+uint64(o.Size) && uint64(o.Base) < uint64(r.Base)+uint64(r.Size) {
			return true
		}
	}
	return false
}

// SubIDs reads the ranges of subordinate-id files (subuid(5), subgid(5):
// NAME:FIRST:COUNT lines). A file that does not exist has none; lines that
// do not parse are skipped.
func SubIDs(paths ...string) []abi.IDRange {
	var out []abi.IDRange
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(strings.TrimSpace(line), ":")
			if len(f) != 3 {
				continue
			}
			first, err1 := strconv.ParseUint(f[1], 10, 32)
			count, err2 := strconv.ParseUint(f[2], 10, 32)
			if err1 == nil && err2 == nil && count > 0 {
				out = append(out, abi.IDRange{Base: uint32(first), Size: uint32(count)})
			}
		}
	}
	return out
}
