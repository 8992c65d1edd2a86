package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// GCOptions tune GC.
type GCOptions struct {
	// GracePeriod is how long a pod marked exited-garbage stays (and can
	// still be inspected) before it is swept.
	GracePeriod time.Duration
	// ExpirePrepared sends prepared pods older than it to garbage (zero: all
	// of them); a negative value keeps prepared pods forever. A prepared pod's
	// age is its directory's mtime, which preparation sets by writing pod.json.
	// A pod being run (locked) is never taken.
	ExpirePrepared time.Duration
	// MarkOnly runs the mark phase only: nothing is removed (what a unit's
	// ExecStopPost runs, so that the grace period starts when the pod ends).
	MarkOnly bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// StaleEmbryoAge is how old an unlocked embryo must be before gc takes it for
// the remains of a New that died between mkdir and lock.
const StaleEmbryoAge = time.Minute

// GCReport says what one GC pass did. Pods that another process held (running,
// being prepared, or taken by a concurrent gc or rm) are skipped silently and
// revisited by the next pass.
type GCReport struct {
	Marked  []string // exited pods moved to exited-garbage
	Garbage []string // abandoned, stale or expired pods moved to garbage
	Removed []string // pods whose stage1 gc ran and whose directory is gone
	Errors  []error  // per-pod failures; the pass went on past each
}

// ErrRunning is returned by Remove for a pod that is running.
var ErrRunning = errors.New("pod is running")

// markRule is one row of the mark phase: which pods in dir go where, when.
type markRule struct {
	dir      string
	from, to State
	old      func(opts GCOptions) time.Duration // minimum age; nil: any age
	marked   bool                               // record in Marked (else Garbage)
}

var markRules = []markRule{
	{dir: dirRun, from: Exited, to: ExitedGarbage, marked: true},
	{dir: dirPrepare, from: AbandonedPrepare, to: Garbage},
	{dir: dirEmbryo, from: Embryo, to: Garbage, old: func(GCOptions) time.Duration { return StaleEmbryoAge }},
	{dir: dirPrepared, from: Prepared, to: Garbage, old: func(o GCOptions) time.Duration { return o.ExpirePrepared }},
}

// GC runs one mark-and-sweep pass over dataDir. Mark moves every exited pod
// to exited-garbage (its mtime becomes the marking time) and abandoned
// preparations, stale embryos and expired prepared pods to garbage. Sweep
// takes every pod in exited-garbage marked at least GracePeriod ago and every
// pod in garbage, each under its exclusive lock, calls stage1GC on it (nil to
// skip), detaches any mount left below it, and removes its directory. A pod
// whose stage1 gc fails is kept for the next pass. The returned error joins
// the per-pod errors in the report.
func GC(dataDir string, opts GCOptions, stage1GC func(p *Pod) error) (GCReport, error) {
	var r GCReport
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return r, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for _, rule := range markRules {
		if rule.dir == dirPrepared && opts.ExpirePrepared < 0 {
			continue
		}
		mark(dataDir, rule, opts, &r)
	}
	if !opts.MarkOnly {
		sweep(dataDir, dirExitedGarbage, ExitedGarbage, opts.GracePeriod, opts, stage1GC, &r)
		sweep(dataDir, dirGarbage, Garbage, 0, opts, stage1GC, &r)
	}
	return r, errors.Join(r.Errors...)
}

// gcWorkers bounds how many pods one gc pass handles at once. Pods are
// independent (each is taken under its own lock), and most of a sweep is the
// filesystem removing files, which overlaps well on more than one CPU and
// while the journal waits.
const gcWorkers = 4

// syncReport is a GCReport that gc's workers add to.
type syncReport struct {
	mu sync.Mutex
	r  *GCReport
}

func (s *syncReport) add(f func(r *GCReport)) {
	s.mu.Lock()
	f(s.r)
	s.mu.Unlock()
}

func mark(dataDir string, rule markRule, opts GCOptions, r *GCReport) {
	var minAge time.Duration
	if rule.old != nil {
		minAge = rule.old(opts)
	}
	ids := listDir(dataDir, rule.dir, r)
	sr := &syncReport{r: r}
	parallel(len(ids), gcWorkers, func(i int) {
		id := ids[i]
		var terr error
		p := take(dataDir, rule.dir, id, rule.from, minAge, opts, &terr)
		if p == nil {
			if terr != nil {
				sr.add(func(r *GCReport) { r.Errors = append(r.Errors, terr) })
			}
			return
		}
		err := p.markAs(rule.to, opts.Now())
		p.Close()
		sr.add(func(r *GCReport) {
			switch {
			case err != nil:
				r.Errors = append(r.Errors, err)
			case rule.marked:
				r.Marked = append(r.Marked, id)
			default:
				r.Garbage = append(r.Garbage, id)
			}
		})
	})
	sortReport(r)
}

// sortReport keeps a report in a stable order whatever order the workers
// finished in: the UUIDs sorted, so that gc's output does not depend on
// scheduling.
func sortReport(r *GCReport) {
	slices.Sort(r.Marked)
	slices.Sort(r.Garbage)
	slices.Sort(r.Removed)
}

// markAs moves a locked pod to state to. Marking for exited-garbage first
// sets the directory's mtime to now: the grace period counts from there.
func (p *Pod) markAs(to State, now time.Time) error {
	if to == ExitedGarbage {
		if err := os.Chtimes(p.Dir, now, now); err != nil {
			return fmt.Errorf("pod %s: mark: %w", p.UUID, err)
		}
	}
	return p.Transition(to)
}

// sweep removes the pods of one state directory, in parallel. stage1GC may
// thus run for several pods at once (as it may from concurrent gc and rm
// processes). The mount table is read once for the whole directory: a pod
// with nothing mounted below it then costs no read of it, and a mount that
// appears below a pod after that read stops its removal (removeTree never
// crosses into another mount), after which the pod is unmounted and removed
// as one with mounts.
func sweep(dataDir, dir string, want State, minAge time.Duration, opts GCOptions, stage1GC func(*Pod) error, r *GCReport) {
	ids := listDir(dataDir, dir, r)
	if len(ids) == 0 {
		return
	}
	mounted, err := mountsBelow(filepath.Join(dataDir, podsDir, dir))
	if err != nil {
		r.Errors = append(r.Errors, fmt.Errorf("gc: %w", err))
		return
	}
	sr := &syncReport{r: r}
	parallel(len(ids), gcWorkers, func(i int) {
		id := ids[i]
		var terr error
		p := take(dataDir, dir, id, want, minAge, opts, &terr)
		if p == nil {
			if terr != nil {
				sr.add(func(r *GCReport) { r.Errors = append(r.Errors, terr) })
			}
			return
		}
		err := destroy(p, stage1GC, mounted == nil || mounted[id])
		p.Close()
		sr.add(func(r *GCReport) {
			if err != nil {
				r.Errors = append(r.Errors, err)
				return
			}
			r.Removed = append(r.Removed, id)
		})
	})
	sortReport(r)
}

// take locks pod id, seen in state directory dir, for gc: only when nobody
// else holds it, it is still in state want, and (when minAge > 0) its
// directory's mtime is at least minAge old, checked before locking (so a
// fresh embryo is never locked under New) and again after. It returns nil to
// skip the pod, setting *errp when that is an error to report.
func take(dataDir, dir, id string, want State, minAge time.Duration, opts GCOptions, errp *error) *Pod {
	path := filepath.Join(dataDir, podsDir, dir, id)
	if minAge > 0 {
		fi, err := os.Lstat(path)
		if err != nil || opts.Now().Sub(fi.ModTime()) < minAge {
			return nil
		}
	}
	p := &Pod{UUID: id, State: want, Dir: path, dataDir: dataDir}
	if err := p.Lock(); err != nil {
		if !errors.Is(err, ErrLocked) && !errors.Is(err, ErrNotFound) {
			*errp = err
		}
		return nil
	}
	if p.State != want {
		p.Close() // it moved on meanwhile
		return nil
	}
	if minAge > 0 {
		fi, err := p.lock.Stat()
		if err != nil || opts.Now().Sub(fi.ModTime()) < minAge {
			p.Close()
			return nil
		}
	}
	return p
}

// listDir lists the pod UUIDs in one state directory.
func listDir(dataDir, dir string, r *GCReport) []string {
	entries, err := os.ReadDir(filepath.Join(dataDir, podsDir, dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		r.Errors = append(r.Errors, fmt.Errorf("gc: %w", err))
		return nil
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && isUUID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// destroy runs stage1 gc on a locked pod, detaches what is still mounted
// below it, and removes its directory. mounted says whether the mount table
// may show mounts below it (true when not known): then they are detached
// first. Otherwise the removal itself stops at any mount, and the pod is then
// unmounted and removed again.
func destroy(p *Pod, stage1GC func(*Pod) error, mounted bool) error {
	if stage1GC != nil {
		if err := stage1GC(p); err != nil {
			return fmt.Errorf("pod %s: stage1 gc failed, pod kept for the next gc: %w", p.UUID, err)
		}
	}
	if mounted {
		if err := unmountBelow(p.Dir); err != nil {
			return fmt.Errorf("pod %s: %w", p.UUID, err)
		}
	}
	err := removeTree(p.Dir)
	if errors.Is(err, errMountBelow) && !mounted {
		if err = unmountBelow(p.Dir); err == nil {
			err = removeTree(p.Dir)
		}
	}
	if err != nil {
		return fmt.Errorf("pod %s: remove: %w", p.UUID, err)
	}
	return nil
}

// Remove deletes one pod now (skiff rm): it takes the pod's lock, moves it to
// garbage, calls stage1GC (nil to skip), detaches leftover mounts and removes
// the directory. A running pod is refused with an error wrapping ErrRunning;
// a pod that another process holds otherwise (a preparer, a concurrent gc or
// rm) with one wrapping ErrLocked.
func Remove(p *Pod, stage1GC func(*Pod) error) error {
	if err := p.Lock(); err != nil {
		if errors.Is(err, ErrLocked) && p.State == Running {
			return fmt.Errorf("pod %s is running; stop it first with 'skiff stop %s': %w", p.UUID, p.UUID, ErrRunning)
		}
		return err
	}
	defer p.Close()
	if p.State == Running { // this process holds a running pod's lock
		return fmt.Errorf("pod %s is running; stop it first with 'skiff stop %s': %w", p.UUID, p.UUID, ErrRunning)
	}
	if p.State != Garbage {
		if err := p.Transition(Garbage); err != nil {
			return err
		}
	}
	return destroy(p, stage1GC, true)
}
