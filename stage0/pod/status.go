package pod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
	"golang.org/x/sys/unix"
)

// Status is what stage0 and stage1 wrote about a pod, with its sampled state.
// Zero values mean "not written yet".
type Status struct {
	UUID     string
	State    State
	PID      int       // from abi.PIDFile
	Created  time.Time // from the manifest
	Started  time.Time // mtime of abi.PIDFile
	Ready    bool      // abi.ReadyFile exists
	Exited   time.Time // from abi.PodExitFile; zero while it is absent
	ExitCode int       // the pod's exit code; meaningful when Exited is set
	Apps     []AppStatus
	// Manifest is the pod's pod.json; nil until it is written.
	Manifest *abi.PodManifest
	// Networks is what stage1 wrote to abi.NetworksFile; nil when absent
	// (before the network is up) or unreadable.
	Networks []abi.NetworkStatus
}

// AppStatus is one app of the pod, in manifest order.
type AppStatus struct {
	Name string
	Exit *abi.AppExit // nil until stage1 wrote apps/NAME/exit.json
}

// Manifest reads the pod's pod.json.
func (p *Pod) Manifest() (*abi.PodManifest, error) {
	h, err := openPod(p.dataDir, p.UUID, p.Dir, noLock)
	if err != nil {
		return nil, err
	}
	defer h.f.Close()
	p.Dir = h.path
	var m abi.PodManifest
	if err := readJSONAt(h.f, abi.PodManifestFile, &m); err != nil {
		return nil, fmt.Errorf("pod %s: manifest: %w", p.UUID, err)
	}
	return &m, nil
}

// Status samples the pod's state and reads what stage1 reported. Files are
// read relative to the open pod directory, so a pod moved by gc meanwhile is
// still read consistently.
func (p *Pod) Status() (*Status, error) {
	h, err := openPod(p.dataDir, p.UUID, p.Dir, probeLock)
	if err != nil {
		return nil, err
	}
	defer h.f.Close()
	p.Dir, p.State = h.path, h.state
	st := &Status{UUID: p.UUID, State: h.state}
	if err := st.read(h.f, false); err != nil {
		return nil, fmt.Errorf("pod %s: %w", p.UUID, err)
	}
	return st, nil
}

// read fills st from the open pod directory dir. On an error, st keeps what
// was read before it. brief reads only what skiff list's table shows:
// of the manifest its creation time and its apps' names and images (see
// readBriefManifest), when the pod started (the pid file's mtime, its PID left
// zero) and how it exited; not Ready, Networks or the apps' exits.
func (st *Status) read(dir *os.File, brief bool) error {
	var m abi.PodManifest
	var err error
	if brief {
		m, err = readBriefManifest(dir)
	} else {
		err = readJSONAt(dir, abi.PodManifestFile, &m)
	}
	switch {
	case err == nil:
		st.Created, st.Manifest = m.Created, &m
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if brief {
		var fi unix.Stat_t
		err := unix.Fstatat(int(dir.Fd()), abi.PIDFile, &fi, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && fi.Mode&unix.S_IFMT == unix.S_IFREG {
			st.Started = time.Unix(fi.Mtim.Unix())
		}
	} else {
		if err := readPID(dir, st); err != nil {
			return err
		}
		st.Ready = existsAt(dir, abi.ReadyFile)
	}

	var pe abi.PodExit
	switch err := readJSONAt(dir, abi.PodExitFile, &pe); {
	case err == nil && pe.Validate() != nil:
		return fmt.Errorf("%s: %w", abi.PodExitFile, pe.Validate())
	case err == nil:
		st.Exited, st.ExitCode = pe.ExitedAt, pe.Code
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if brief {
		for _, app := range m.Apps {
			st.Apps = append(st.Apps, AppStatus{Name: app.Name})
		}
		return nil
	}
	if readJSONAt(dir, abi.NetworksFile, &st.Networks) != nil { // absent before the network is up
		st.Networks = nil
	}
	for _, app := range m.Apps {
		as := AppStatus{Name: app.Name}
		if err := abi.ValidateAppName(app.Name); err != nil {
			return err
		}
		switch ae, err := abi.ReadAppExitAt(dir, app.Name); {
		case err == nil:
			as.Exit = &ae
		case !errors.Is(err, os.ErrNotExist):
			return err
		}
		st.Apps = append(st.Apps, as)
	}
	return nil
}

// briefManifest is what skiff list's table shows of pod.json: decoding
// only it leaves the larger part of the file (the stage1's and the apps'
// rootfs layers, volumes, annotations) unparsed into Go values, which is
// most of a listing's CPU time over many pods (issue #18).
type briefManifest struct {
	Created time.Time `json:"created"`
	Apps    []struct {
		Name  string    `json:"name"`
		Image abi.Image `json:"image"`
	} `json:"apps"`
}

// readBriefManifest reads the briefManifest part of dir's pod.json into a
// PodManifest; its other fields are left zero.
func readBriefManifest(dir *os.File) (abi.PodManifest, error) {
	var b briefManifest
	if err := readJSONAt(dir, abi.PodManifestFile, &b); err != nil {
		return abi.PodManifest{}, err
	}
	m := abi.PodManifest{Created: b.Created, Apps: make([]abi.App, len(b.Apps))}
	for i, a := range b.Apps {
		m.Apps[i] = abi.App{Name: a.Name, Image: a.Image}
	}
	return m, nil
}

func readPID(dir *os.File, st *Status) error {
	f, err := openFileAt(dir, abi.PIDFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("%s: not a pid: %q", abi.PIDFile, b)
	}
	st.PID, st.Started = pid, fi.ModTime()
	return nil
}

// waitPoll is how often WaitExit tries the lock again.
const waitPoll = 100 * time.Millisecond

// WaitExit blocks until the pod is neither preparing nor running, or ctx is
// done. It polls a shared non-blocking lock on the pod directory, which it
// keeps open, so the wait follows the pod through prepare → run. It returns
// at once for a pod in any other state, and refuses a pod whose lock this
// Pod holds (it would wait for itself).
func (p *Pod) WaitExit(ctx context.Context) error {
	if p.lock != nil {
		return fmt.Errorf("pod %s: cannot wait for a pod whose lock this process holds", p.UUID)
	}
	h, err := openPod(p.dataDir, p.UUID, p.Dir, probeLock)
	if err != nil {
		return err
	}
	defer h.f.Close()
	p.Dir, p.State = h.path, h.state
	if !h.locked || (h.state != Preparing && h.state != Running) {
		return nil
	}
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		err := flock(h.f, unix.LOCK_SH|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			continue
		}
		if err != nil {
			return fmt.Errorf("pod %s: %w", p.UUID, err)
		}
		flock(h.f, unix.LOCK_UN)
		break
	}
	// Sample where it ended up; it may have been removed already.
	if h2, err := openPod(p.dataDir, p.UUID, p.Dir, probeLock); err == nil {
		h2.f.Close()
		p.Dir, p.State = h2.path, h2.state
	}
	return nil
}

// openFileAt opens rel beneath the open directory dir as hostile input (a
// pod can write parts of its directory): nothing outside dir, no symbolic
// link, a regular file only (abi.OpenFileAt).
func openFileAt(dir *os.File, rel string) (*os.File, error) { return abi.OpenFileAt(dir, rel) }

// readJSONAt decodes rel beneath dir, at most abi.MaxFileSize bytes.
func readJSONAt(dir *os.File, rel string, v any) error { return abi.ReadJSONAt(dir, rel, v) }

func existsAt(dir *os.File, rel string) bool {
	var st unix.Stat_t
	return unix.Fstatat(int(dir.Fd()), rel, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}
