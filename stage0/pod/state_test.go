package pod

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

var allStates = []State{Embryo, Preparing, AbandonedPrepare, Prepared, Running, Exited, ExitedGarbage, Garbage}

// lockedPodIn makes a pod directory in the directory of state s and returns
// it with its lock held by the Pod, as if it had been brought there.
func lockedPodIn(t *testing.T, dataDir string, s State) *Pod {
	t.Helper()
	id := uuid.New().String()
	dir := filepath.Join(dataDir, podsDir, s.dir(), id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := openDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	p := &Pod{UUID: id, State: s, Dir: dir, dataDir: dataDir, lock: f}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestStateString(t *testing.T) {
	want := []string{"embryo", "preparing", "abandoned", "prepared", "running", "exited", "exited-garbage", "garbage"}
	for i, s := range allStates {
		if s.String() != want[i] {
			t.Errorf("State(%d).String() = %q, want %q", int(s), s.String(), want[i])
		}
	}
	if got := State(99).String(); got != "State(99)" {
		t.Errorf("State(99).String() = %q", got)
	}
}

func TestTransitionTable(t *testing.T) {
	for _, e := range edges {
		if e.from.dir() == e.to.dir() {
			t.Errorf("edge %s → %s does not change directory", e.from, e.to)
		}
	}
	for _, from := range allStates {
		for _, to := range allStates {
			t.Run(from.String()+"→"+to.String(), func(t *testing.T) {
				dataDir := t.TempDir()
				p := lockedPodIn(t, dataDir, from)
				old := p.Dir
				err := p.Transition(to)
				if !allowed(from, to) {
					if !errors.Is(err, ErrBadTransition) {
						t.Fatalf("Transition = %v, want ErrBadTransition", err)
					}
					if !strings.Contains(err.Error(), from.String()) || !strings.Contains(err.Error(), to.String()) {
						t.Errorf("error %q does not name both states", err)
					}
					if p.State != from || p.Dir != old {
						t.Errorf("refused transition changed the pod: %s %s", p.State, p.Dir)
					}
					if _, err := os.Stat(old); err != nil {
						t.Errorf("refused transition moved the directory: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Transition: %v", err)
				}
				want := filepath.Join(dataDir, podsDir, to.dir(), p.UUID)
				if p.State != to || p.Dir != want {
					t.Errorf("after Transition: %s %s, want %s %s", p.State, p.Dir, to, want)
				}
				if _, err := os.Stat(want); err != nil {
					t.Errorf("directory not moved: %v", err)
				}
				if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("old directory still there: %v", err)
				}
				fi, err := os.Stat(filepath.Dir(want))
				if err != nil || fi.Mode().Perm() != 0o700 {
					t.Errorf("state directory %s: %v, mode %v, want 0700", filepath.Dir(want), err, fi.Mode().Perm())
				}
			})
		}
	}
}

func TestTransitionNeedsLock(t *testing.T) {
	p := lockedPodIn(t, t.TempDir(), Prepared)
	p.Unlock()
	if err := p.Transition(Running); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Transition without lock = %v, want ErrNotLocked", err)
	}
}

func TestTransitionNoReplace(t *testing.T) {
	dataDir := t.TempDir()
	p := lockedPodIn(t, dataDir, Prepared)
	squatter := filepath.Join(dataDir, podsDir, dirRun, p.UUID)
	if err := os.MkdirAll(squatter, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := p.Transition(Running); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Transition onto an existing directory = %v, want EEXIST", err)
	}
}
