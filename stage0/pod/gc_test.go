package pod

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// fakeClock is a settable GCOptions.Now.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// stage1Recorder is a stage1GC callback that records which pods it saw.
type stage1Recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *stage1Recorder) gc(p *Pod) error {
	// The pod must be locked by the caller, so a probe must fail.
	h, err := openAt(p.Dir, probeLock)
	if err != nil {
		return err
	}
	h.f.Close()
	if !h.locked {
		return errors.New("stage1 gc called on a pod that is not locked")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, p.UUID)
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestGCMarkAndSweep(t *testing.T) {
	dataDir := t.TempDir()
	clock := &fakeClock{now: time.Now().Add(time.Hour)}
	opts := GCOptions{GracePeriod: 30 * time.Minute, ExpirePrepared: 24 * time.Hour, Now: clock.Now}

	running, _ := runningPod(t, dataDir)
	exited := exitedPod(t, dataDir)
	preparing := lockedPodIn(t, dataDir, Preparing) // held by its preparer
	abandoned := lockedPodIn(t, dataDir, AbandonedPrepare)
	abandoned.Close()
	freshEmbryo := lockedPodIn(t, dataDir, Embryo)
	freshEmbryo.Close()
	if err := os.Chtimes(freshEmbryo.Dir, clock.now, clock.now); err != nil {
		t.Fatal(err)
	}
	staleEmbryo := lockedPodIn(t, dataDir, Embryo)
	staleEmbryo.Close()
	prepared := lockedPodIn(t, dataDir, Prepared)
	prepared.Close()

	rec := &stage1Recorder{}
	r, err := GC(dataDir, opts, rec.gc)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Marked, []string{exited.UUID}) {
		t.Errorf("marked %v, want only the exited pod %s", r.Marked, exited.UUID)
	}
	wantGarbage := []string{abandoned.UUID, staleEmbryo.UUID}
	slices.Sort(wantGarbage)
	slices.Sort(r.Garbage)
	if !slices.Equal(r.Garbage, wantGarbage) {
		t.Errorf("to garbage %v, want %v", r.Garbage, wantGarbage)
	}
	slices.Sort(r.Removed)
	if !slices.Equal(r.Removed, wantGarbage) {
		t.Errorf("removed %v, want %v (garbage is swept in the same pass)", r.Removed, wantGarbage)
	}
	marked := filepath.Join(dataDir, podsDir, dirExitedGarbage, exited.UUID)
	if fi, err := os.Stat(marked); err != nil || !fi.ModTime().Equal(clock.now) {
		t.Errorf("marked pod %s: %v; its mtime must be the marking time", marked, err)
	}
	for _, p := range []*Pod{running, preparing, freshEmbryo, prepared} {
		if !exists(p.Dir) {
			t.Errorf("%s pod %s was touched by gc", p.State, p.UUID)
		}
	}

	// Twice in a row: nothing more to do, and no error.
	if r, err := GC(dataDir, opts, rec.gc); err != nil || len(r.Marked)+len(r.Garbage)+len(r.Removed) != 0 {
		t.Errorf("second GC: %+v, %v; want nothing done", r, err)
	}

	// Within the grace period the marked pod stays; past it, it goes.
	clock.now = clock.now.Add(opts.GracePeriod - time.Second)
	// (The fresh embryo is now older than StaleEmbryoAge: it goes.)
	if r, _ := GC(dataDir, opts, rec.gc); !slices.Equal(r.Removed, []string{freshEmbryo.UUID}) {
		t.Errorf("removed %v within the grace period, want only the now stale embryo", r.Removed)
	}
	clock.now = clock.now.Add(2 * time.Second)
	if r, err := GC(dataDir, opts, rec.gc); err != nil || !slices.Equal(r.Removed, []string{exited.UUID}) {
		t.Errorf("GC past the grace period: %+v, %v; want %s removed", r, err, exited.UUID)
	}
	if exists(marked) {
		t.Errorf("marked pod still there after the grace period")
	}
	if !slices.Contains(rec.seen, exited.UUID) {
		t.Errorf("stage1 gc not called for %s", exited.UUID)
	}

	// Prepared pods expire.
	clock.now = clock.now.Add(opts.ExpirePrepared)
	if r, err := GC(dataDir, opts, rec.gc); err != nil || !slices.Equal(r.Removed, []string{prepared.UUID}) {
		t.Errorf("GC past prepared expiry: %+v, %v; want %s removed", r, err, prepared.UUID)
	}
	if !exists(running.Dir) || !exists(preparing.Dir) {
		t.Errorf("gc removed a running or preparing pod")
	}
}

func TestGCKeepsPodWhenStage1GCFails(t *testing.T) {
	dataDir := t.TempDir()
	p := exitedPod(t, dataDir)
	failing := func(*Pod) error { return errors.New("network teardown failed") }
	r, err := GC(dataDir, GCOptions{}, failing)
	if err == nil || !strings.Contains(err.Error(), p.UUID) || len(r.Removed) != 0 {
		t.Fatalf("GC with failing stage1 gc: %+v, %v; want an error naming %s", r, err, p.UUID)
	}
	if !exists(filepath.Join(dataDir, podsDir, dirExitedGarbage, p.UUID)) {
		t.Fatal("pod removed although its stage1 gc failed")
	}
	if r, err := GC(dataDir, GCOptions{}, nil); err != nil || len(r.Removed) != 1 {
		t.Fatalf("retry: %+v, %v", r, err)
	}
}

func TestRemove(t *testing.T) {
	dataDir := t.TempDir()
	running, _ := runningPod(t, dataDir)
	err := Remove(running, nil)
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), running.UUID) || !strings.Contains(err.Error(), "stop") {
		t.Errorf("Remove of a running pod = %v, want ErrRunning naming it and saying to stop it", err)
	}
	if !exists(running.Dir) {
		t.Fatal("running pod removed")
	}

	mine, err := New(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := mine.Transition(Running); err != nil {
		t.Fatal(err)
	}
	if err := Remove(mine, nil); !errors.Is(err, ErrRunning) {
		t.Errorf("Remove of a pod this process runs = %v, want ErrRunning", err)
	}
	mine.Close()

	preparing, err := New(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer preparing.Close()
	other := &Pod{UUID: preparing.UUID, State: Preparing, Dir: preparing.Dir, dataDir: dataDir}
	if err := Remove(other, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("Remove of a pod being prepared elsewhere = %v, want ErrLocked", err)
	}

	exited := exitedPod(t, dataDir)
	prepared := lockedPodIn(t, dataDir, Prepared)
	prepared.Close()
	marked := lockedPodIn(t, dataDir, ExitedGarbage)
	marked.Close()
	rec := &stage1Recorder{}
	for _, p := range []*Pod{exited, prepared, marked, mine} {
		q, err := Load(dataDir, p.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if err := Remove(q, rec.gc); err != nil {
			t.Errorf("Remove of %s pod: %v", p.State, err)
		}
		if locate(dataDir, p.UUID) != "" {
			t.Errorf("%s pod %s still there", p.State, p.UUID)
		}
	}
	if err := Remove(preparing, rec.gc); err != nil || exists(preparing.Dir) {
		t.Errorf("Remove by the preparer itself: %v", err)
	}
	if len(rec.seen) != 5 {
		t.Errorf("stage1 gc ran for %d pods, want 5", len(rec.seen))
	}
}

func TestGCUnmountsBeforeRemoving(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dataDir := t.TempDir()
	p := exitedPod(t, dataDir)
	tmpfs := filepath.Join(p.Dir, "stage1", "rootfs")
	nested := filepath.Join(tmpfs, "run")
	host := t.TempDir() // stands for a host directory bind-mounted into the pod
	hostFile := filepath.Join(host, "precious")
	bind := filepath.Join(p.Dir, "apps", "web", "volume")
	for _, d := range []string{tmpfs, bind} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(hostFile, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	mount := func(src, dst, fstype string, flags uintptr) {
		t.Helper()
		if err := unix.Mount(src, dst, fstype, flags, ""); err != nil {
			t.Skipf("cannot mount %s on %s: %v", fstype, dst, err)
		}
		t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
	}
	mount("tmpfs", tmpfs, "tmpfs", 0)
	if err := os.Mkdir(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	mount("tmpfs", nested, "tmpfs", 0)
	mount(host, bind, "", unix.MS_BIND)

	r, err := GC(dataDir, GCOptions{}, nil)
	if err != nil || !slices.Equal(r.Removed, []string{p.UUID}) {
		t.Fatalf("GC: %+v, %v", r, err)
	}
	realData, _ := filepath.EvalSymlinks(dataDir)
	left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(realData))
	if err != nil || len(left) != 0 {
		t.Errorf("mounts left below the data dir: %v %v", left, err)
	}
	if b, err := os.ReadFile(hostFile); err != nil || string(b) != "keep me" {
		t.Errorf("gc reached through a bind mount into the host: %q %v", b, err)
	}
}

func TestConcurrentGC(t *testing.T) {
	dataDir := t.TempDir()
	const n = 30
	var want []string
	for range n {
		want = append(want, exitedPod(t, dataDir).UUID)
		a, err := New(dataDir)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, a.UUID)
		a.Close()
	}
	running, _ := runningPod(t, dataDir)

	rec := &stage1Recorder{}
	var wg sync.WaitGroup
	reports := make([]GCReport, 4)
	errs := make([]error, len(reports)+1)
	for i := range reports {
		wg.Go(func() {
			for range 3 {
				r, err := GC(dataDir, GCOptions{}, rec.gc)
				reports[i].Removed = append(reports[i].Removed, r.Removed...)
				errs[i] = errors.Join(errs[i], err)
			}
		})
	}
	// Readers run alongside.
	wg.Go(func() {
		for range 20 {
			if _, err := List(dataDir); err != nil {
				errs[len(reports)] = errors.Join(errs[len(reports)], err)
			}
		}
	})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("gc %d: %v", i, err)
		}
	}
	var removed []string
	for _, r := range reports {
		removed = append(removed, r.Removed...)
	}
	slices.Sort(removed)
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %d pods (%d distinct wanted): each pod exactly once across gc runs", len(removed), len(want))
	}
	seen := slices.Clone(rec.seen)
	slices.Sort(seen)
	if !slices.Equal(seen, want) {
		t.Errorf("stage1 gc ran %d times for %d pods; want once each", len(seen), len(want))
	}
	if !exists(running.Dir) {
		t.Error("concurrent gc removed the running pod")
	}
}

// A mount that appears below a pod after gc read the mount table (or that
// the table did not show) is never emptied: removeTree stops at it, and
// destroy then detaches it and removes the pod.
func TestRemoveTreeStopsAtMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	host := t.TempDir() // stands for a host directory bind-mounted into the pod
	hostFile := filepath.Join(host, "precious")
	if err := os.WriteFile(hostFile, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, below := range []string{"apps/web/volume", ""} { // deep in the pod, and on the pod directory itself
		dataDir := t.TempDir()
		p := exitedPod(t, dataDir)
		if err := p.Lock(); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(p.Dir, below)
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(host, target, "", unix.MS_BIND, ""); err != nil {
			t.Skipf("cannot bind-mount: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
		if err := removeTree(p.Dir); !errors.Is(err, errMountBelow) {
			t.Errorf("removeTree with a mount at %q: %v, want errMountBelow", below, err)
		}
		if b, err := os.ReadFile(hostFile); err != nil || string(b) != "keep me" {
			t.Fatalf("removeTree reached through a bind mount at %q: %q %v", below, b, err)
		}
		if err := destroy(p, nil, false); err != nil {
			t.Errorf("destroy with a mount at %q the table did not show: %v", below, err)
		}
		p.Close()
		if exists(p.Dir) {
			t.Errorf("pod directory left: %s", p.Dir)
		}
		if b, err := os.ReadFile(hostFile); err != nil || string(b) != "keep me" {
			t.Fatalf("destroy reached through a bind mount at %q: %q %v", below, b, err)
		}
	}
}
