package pod

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
	"golang.org/x/sys/unix"
)

// holdLock takes the exclusive lock on dir through its own open file
// description, as stage1 does on the inherited descriptor. Closing the
// returned file is the pod exiting.
func holdLock(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := openDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// runningPod returns a pod in run/ whose lock is held the way stage1 holds
// it: on a duplicate of stage0's descriptor (the same open file description)
// that outlives the Pod's own. Closing the returned file is the pod exiting.
func runningPod(t *testing.T, dataDir string) (*Pod, *os.File) {
	t.Helper()
	p, err := New(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Transition(Running); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.FcntlInt(p.LockFD().Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	stage1 := os.NewFile(uintptr(fd), "stage1-lock")
	t.Cleanup(func() { stage1.Close() })
	p.Close()
	return p, stage1
}

// exitedPod returns a pod in run/ whose stage1 has ended.
func exitedPod(t *testing.T, dataDir string) *Pod {
	t.Helper()
	p, stage1 := runningPod(t, dataDir)
	stage1.Close()
	p.State = Exited
	return p
}

func TestNew(t *testing.T) {
	dataDir := t.TempDir()
	p, err := New(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.State != Preparing || p.Dir != filepath.Join(dataDir, podsDir, dirPrepare, p.UUID) {
		t.Fatalf("New: %s %s", p.State, p.Dir)
	}
	for _, d := range []string{filepath.Join(dataDir, podsDir), filepath.Join(dataDir, podsDir, dirPrepare), p.Dir} {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, want mode 0700", d, err)
		}
	}
	q, err := Load(dataDir, p.UUID)
	if err != nil || q.State != Preparing {
		t.Fatalf("Load of a pod being prepared: %v %v", q, err)
	}
	p.Close()
	if q, err = Load(dataDir, p.UUID); err != nil || q.State != AbandonedPrepare {
		t.Fatalf("Load after the preparer let go: %v %v", q, err)
	}
}

// makePodDir creates an empty pod directory with a chosen UUID in state
// directory dir.
func makePodDir(t *testing.T, dataDir, dir, id string) string {
	t.Helper()
	path := filepath.Join(dataDir, podsDir, dir, id)
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadPrefix(t *testing.T) {
	dataDir := t.TempDir()
	a1 := "aaaa1111-0000-4000-8000-000000000001"
	a2 := "aaaa2222-0000-4000-8000-000000000002"
	b := "bbbb3333-0000-4000-8000-000000000003"
	makePodDir(t, dataDir, dirPrepared, a1)
	makePodDir(t, dataDir, dirRun, a2)
	makePodDir(t, dataDir, dirExitedGarbage, b)
	makePodDir(t, dataDir, dirRun, "not-a-uuid")

	for _, tc := range []struct{ q, want string }{{b, b}, {"b", b}, {"BBBB", b}, {"aaaa1", a1}, {a2, a2}} {
		p, err := Load(dataDir, tc.q)
		if err != nil || p.UUID != tc.want {
			t.Errorf("Load(%q) = %v, %v; want %s", tc.q, p, err, tc.want)
		}
	}
	p, _ := Load(dataDir, "b")
	if p.State != ExitedGarbage {
		t.Errorf("state of %s = %s, want exited-garbage", b, p.State)
	}

	_, err := Load(dataDir, "aaaa")
	var amb *AmbiguousError
	if !errors.Is(err, ErrAmbiguous) || !errors.As(err, &amb) {
		t.Fatalf("Load(aaaa) = %v, want ErrAmbiguous", err)
	}
	if len(amb.UUIDs) != 2 || !strings.Contains(err.Error(), a1) || !strings.Contains(err.Error(), a2) {
		t.Errorf("ambiguous error does not list both pods: %v", err)
	}
	for _, q := range []string{"c", "", "../run", "not-a-uuid"} {
		if _, err := Load(dataDir, q); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load(%q) = %v, want ErrNotFound", q, err)
		}
	}
	if _, err := Load(t.TempDir(), "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load in an empty data dir = %v, want ErrNotFound", err)
	}
}

func TestListRunningVsExited(t *testing.T) {
	dataDir := t.TempDir()
	// Running, with the lock held by this very Pod (stage0 just before exec).
	mine, err := New(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	if err := mine.Transition(Running); err != nil {
		t.Fatal(err)
	}
	running, stage1 := runningPod(t, dataDir)
	exited := exitedPod(t, dataDir)
	prepared := lockedPodIn(t, dataDir, Prepared)
	prepared.Close()

	want := map[string]State{mine.UUID: Running, running.UUID: Running, exited.UUID: Exited, prepared.UUID: Prepared}
	checkList(t, dataDir, want)

	stage1.Close()
	want[running.UUID] = Exited
	checkList(t, dataDir, want)
}

func checkList(t *testing.T, dataDir string, want map[string]State) {
	t.Helper()
	pods, err := List(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]State{}
	for _, p := range pods {
		got[p.UUID] = p.State
		if filepath.Base(p.Dir) != p.UUID || filepath.Base(filepath.Dir(p.Dir)) != p.State.dir() {
			t.Errorf("pod %s: Dir %s does not match state %s", p.UUID, p.Dir, p.State)
		}
	}
	if len(got) != len(want) {
		t.Errorf("List returned %d pods, want %d", len(got), len(want))
	}
	for id, s := range want {
		if got[id] != s {
			t.Errorf("pod %s: %s, want %s", id, got[id], s)
		}
	}
}

// TestLockInheritedByChild hands the lock to a child process, as stage0 does
// to stage1, and checks that the pod runs exactly as long as the child.
func TestLockInheritedByChild(t *testing.T) {
	dataDir := t.TempDir()
	p, err := New(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Transition(Running); err != nil {
		t.Fatal(err)
	}
	fd, err := p.InheritLockFD()
	if err != nil {
		t.Fatal(err)
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC != 0 {
		t.Fatalf("lock fd %d flags %#x, %v: close-on-exec still set", fd, flags, err)
	}
	child := exec.Command("sleep", "60")
	child.ExtraFiles = []*os.File{p.LockFD()}
	if err := child.Start(); err != nil {
		t.Skipf("cannot start sleep(1): %v", err)
	}
	p.Close()
	if q, err := Load(dataDir, p.UUID); err != nil || q.State != Running {
		t.Fatalf("with the child holding the lock: %v %v, want running", q, err)
	}
	if err := Remove(p, nil); !errors.Is(err, ErrRunning) {
		t.Errorf("Remove of a pod running in a child = %v, want ErrRunning", err)
	}
	child.Process.Kill()
	child.Wait()
	if q, err := Load(dataDir, p.UUID); err != nil || q.State != Exited {
		t.Fatalf("after the child died: %v %v, want exited", q, err)
	}
}

func TestWaitExit(t *testing.T) {
	dataDir := t.TempDir()
	p, stage1 := runningPod(t, dataDir)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := p.WaitExit(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitExit on a running pod = %v, want deadline exceeded", err)
	}

	go func() {
		time.Sleep(200 * time.Millisecond)
		stage1.Close()
	}()
	start := time.Now()
	if err := p.WaitExit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Errorf("WaitExit returned before the pod exited")
	}
	if p.State != Exited {
		t.Errorf("state after WaitExit = %s, want exited", p.State)
	}
	// An exited pod: at once.
	if err := p.WaitExit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStatus(t *testing.T) {
	dataDir := t.TempDir()
	p, stage1 := runningPod(t, dataDir)
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	m := abi.PodManifest{Version: 1, UUID: p.UUID, Created: created, Apps: []abi.App{{Name: "web"}, {Name: "db"}}}
	write := func(rel string, v any) {
		t.Helper()
		path := filepath.Join(p.Dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := abi.WriteJSON(path, v); err != nil {
			t.Fatal(err)
		}
	}
	write(abi.PodManifestFile, m)
	if err := os.WriteFile(filepath.Join(p.Dir, abi.PIDFile), []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.State != Running || st.PID != 4242 || !st.Created.Equal(created) || st.Started.IsZero() || st.Ready || !st.Exited.IsZero() {
		t.Errorf("status of a running pod: %+v", st)
	}
	if len(st.Apps) != 2 || st.Apps[0].Name != "web" || st.Apps[0].Exit != nil {
		t.Errorf("apps: %+v", st.Apps)
	}

	exitedAt := created.Add(time.Hour)
	if err := os.WriteFile(filepath.Join(p.Dir, abi.ReadyFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(abi.AppsDir, "db", abi.AppExitFile), abi.AppExit{App: "db", Code: 3, ExitedAt: exitedAt})
	write(abi.PodExitFile, abi.PodExit{Code: 3, ExitedAt: exitedAt})
	stage1.Close()

	got, err := p.Manifest()
	if err != nil || got.UUID != p.UUID || len(got.Apps) != 2 {
		t.Fatalf("Manifest = %+v, %v", got, err)
	}
	st, err = p.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.State != Exited || !st.Ready || !st.Exited.Equal(exitedAt) || st.ExitCode != 3 {
		t.Errorf("status of an exited pod: %+v", st)
	}
	if st.Apps[1].Exit == nil || st.Apps[1].Exit.Code != 3 || st.Apps[0].Exit != nil {
		t.Errorf("app exits: %+v", st.Apps)
	}
}

// What a pod can write in its directory is hostile to status: an exit record
// that is a link out of the pod directory, a FIFO (which would block the
// reader for ever), an endless file or a forged code is refused, never
// followed, waited on or read without bound.
func TestStatusReadsPodFilesAsHostile(t *testing.T) {
	dataDir := t.TempDir()
	p, stage1 := runningPod(t, dataDir)
	defer stage1.Close()
	m := abi.PodManifest{Version: 1, UUID: p.UUID, Apps: []abi.App{{Name: "web"}}}
	if err := abi.WriteJSON(filepath.Join(p.Dir, abi.PodManifestFile), m); err != nil {
		t.Fatal(err)
	}
	appDir := filepath.Join(p.Dir, abi.AppsDir, "web")
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "exit.json")
	if err := os.WriteFile(outside, []byte(`{"app":"web","code":42}`), 0o644); err != nil {
		t.Fatal(err)
	}
	exit := filepath.Join(appDir, abi.AppExitFile)
	for name, plant := range map[string]func() error{
		"a link out of the pod": func() error { return os.Symlink(outside, exit) },
		"a FIFO":                func() error { return unix.Mkfifo(exit, 0o644) },
		"a link to /dev/zero":   func() error { return os.Symlink("/dev/zero", exit) },
		"a forged code":         func() error { return os.WriteFile(exit, []byte(`{"app":"web","code":-9}`), 0o644) },
		"another app's record":  func() error { return os.WriteFile(exit, []byte(`{"app":"db","code":1}`), 0o644) },
		"an endless file": func() error {
			f, err := os.Create(exit)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(abi.MaxFileSize + 1)
		},
	} {
		os.Remove(exit)
		if err := plant(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var st *Status
		var err error
		go func() { st, err = p.Status(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s: status blocks", name)
		}
		if err == nil {
			t.Errorf("%s: status read it: %+v", name, st.Apps[0].Exit)
		}
	}
}
