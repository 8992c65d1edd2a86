package main

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1-kvm/guest"
	"github.com/skiff-project/skiff/stage1/abi"
)

// recorder takes what the guest reports in its output share (guest.OutDir)
// into the pod directory as the host's own records: the ready marker, and
// each app's exit record once it is a valid one. The guest writes that
// share, so it is read as hostile input: through a descriptor of the
// directory, no link followed, regular files of a bounded size, values
// checked (abi.ReadAppExitAt); nothing in it is executed, and stage0 reads
// only what the recorder wrote.
type recorder struct {
	out   *os.File // guest.OutDir
	apps  []string
	ready bool
	exits map[string]abi.AppExit
	bad   map[string]error // the last refusal of each app's record, for the report
}

func newRecorder(m *abi.PodManifest) (*recorder, error) {
	cwd, err := os.Open(".")
	if err != nil {
		return nil, err
	}
	defer cwd.Close()
	out, err := abi.OpenDirAt(cwd, guest.OutDir)
	if err != nil {
		return nil, err
	}
	r := &recorder{out: out, exits: map[string]abi.AppExit{}, bad: map[string]error{}}
	for _, a := range m.Apps {
		r.apps = append(r.apps, a.Name)
	}
	return r, nil
}

// poll takes what is new. Errors writing the host's records are reported
// on stderr; a record the guest has not written (or not validly) is tried
// again at the next poll.
func (r *recorder) poll() {
	if !r.ready {
		var st unix.Stat_t
		if unix.Fstatat(int(r.out.Fd()), abi.ReadyFile, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			r.ready = true
			if err := os.WriteFile(abi.ReadyFile, nil, 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "stage1-kvm: write the ready marker: %v\n", err)
			}
		}
	}
	for _, app := range r.apps {
		if _, ok := r.exits[app]; ok {
			continue
		}
		x, err := abi.ReadAppExitAt(r.out, app)
		if err != nil {
			r.bad[app] = err
			continue
		}
		delete(r.bad, app)
		x.App = app
		r.exits[app] = x
		if err := abi.WriteJSON(filepath.Join(abi.AppDir(".", app), abi.AppExitFile), x); err != nil {
			fmt.Fprintf(os.Stderr, "stage1-kvm: app %s: record its exit: %v\n", app, err)
		}
	}
}

func (r *recorder) close() { r.out.Close() }
