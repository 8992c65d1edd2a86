package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/stdio"
)

// What each app is handed when it checks in (see stage1/stdio): stdin (skiff's
// when interactive, else /dev/null), stdout and stderr (tees into the pod's
// log, or skiff's own when they are a terminal), the socket-activated
// descriptors for the one app that takes them, and the environment that goes
// with all that. The hand-over also records the app's pid, to forward
// signals.

// handover is run's side of the apps' stdio.
type handover struct {
	o      runOpts
	stdin  *os.File
	log    *stdio.Log
	outs   map[string][2]*os.File // per app: what it gets as stdout, stderr
	tees   []*stdio.Tee
	listen []*os.File // socket-activated descriptors, for listenApp
	names  []string
	lapp   string

	mu     sync.Mutex
	pidfds map[string]int // app -> pidfd of its main process
}

// takeListenFDs takes the descriptors systemd passed to skiff (LISTEN_PID is
// skiff's pid: stage0 exec'd us) and clears LISTEN_* from the environment.
func takeListenFDs() ([]*os.File, []string) {
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	files := activation.Files(true) // close-on-exec: never into the pod's init
	out := make([]string, len(files))
	for i := range files {
		out[i] = "unknown" // systemd's name for an unnamed descriptor
		if i < len(names) && names[i] != "" {
			out[i] = names[i]
		}
	}
	return files, out
}

// newHandover prepares the apps' descriptors: the log and one tee per app
// stream that is not a terminal.
func newHandover(o runOpts, m *abi.PodManifest) (*handover, error) {
	h := &handover{o: o, outs: map[string][2]*os.File{}, pidfds: map[string]int{}}
	h.stdin = os.Stdin
	if !o.Interactive {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		h.stdin = null
	}
	h.listen, h.names = takeListenFDs()
	if len(h.listen) > 0 {
		h.lapp = o.ListenFDsApp
		if h.lapp == "" {
			h.lapp = m.Apps[0].Name
		}
		if !hasApp(m, h.lapp) {
			return nil, fmt.Errorf("--listen-fds-app=%s: the pod has no such app", h.lapp)
		}
		o.Debugf("%d socket-activated descriptors %v for app %s", len(h.listen), h.names, h.lapp)
	} else if o.ListenFDsApp != "" && !hasApp(m, o.ListenFDsApp) {
		return nil, fmt.Errorf("--listen-fds-app=%s: the pod has no such app", o.ListenFDsApp)
	}
	// Writes to skiff's stdout or stderr fail with EPIPE, rather than kill
	// run, when their reader has gone; the tee then closes the app's pipe.
	signal.Notify(make(chan os.Signal, 1), unix.SIGPIPE)
	var err error
	if h.log, err = stdio.OpenLog(abi.LogFile, stdio.DefaultLogMax); err != nil {
		return nil, err
	}
	outTTY, errTTY := isTerminal(os.Stdout), isTerminal(os.Stderr)
	for _, a := range m.Apps {
		var pair [2]*os.File
		for i, f := range []*os.File{os.Stdout, os.Stderr} {
			stream := []string{abi.StreamStdout, abi.StreamStderr}[i]
			if []bool{outTTY, errTTY}[i] {
				pair[i] = f
				continue
			}
			// A pipe per stream even when skiff's stdout and stderr are one
			// file: the log keeps which stream each line came from.
			t, err := h.log.Tee(a.Name, stream, f)
			if err != nil {
				h.close()
				return nil, err
			}
			h.tees = append(h.tees, t)
			pair[i] = t.W()
		}
		h.outs[a.Name] = pair
	}
	return h, nil
}

// ownPipes gives the apps' output pipes to id (uid and gid), the host id of
// the pod's root (--private-users): a pipe's owner is who may reopen it
// through /proc/self/fd (/dev/stdout), and app-exec can hand a pipe of the
// pod's root on to the app's user, but not one of the host's root.
func (h *handover) ownPipes(id int) error {
	for _, t := range h.tees {
		if err := t.W().Chown(id, id); err != nil {
			return fmt.Errorf("the apps' output pipes: %w", err)
		}
	}
	return nil
}

func hasApp(m *abi.PodManifest, name string) bool {
	for _, a := range m.Apps {
		if a.Name == name {
			return true
		}
	}
	return false
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// files is what app gets; env are its readiness variables.
func (h *handover) files(app string, env []string) stdio.Files {
	out := h.outs[app]
	f := stdio.Files{Stdin: h.stdin, Stdout: out[0], Stderr: out[1], Env: env}
	if app == h.lapp && len(h.listen) > 0 {
		f.Extra = h.listen
		f.Env = append(f.Env, "LISTEN_FDS="+strconv.Itoa(len(h.listen)),
			"LISTEN_FDNAMES="+strings.Join(h.names, ":"))
	}
	return f
}

// started records app's main process (its pid as run sees it).
func (h *handover) started(app string, pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.pidfds[app]; ok {
		unix.Close(old)
	}
	h.pidfds[app] = fd
}

// signal sends sig to every app's main process (as `systemctl kill
// --kill-whom=main` would); pidfds make a recycled pid safe.
func (h *handover) signal(sig unix.Signal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for app, fd := range h.pidfds {
		err := unix.PidfdSendSignal(fd, sig, nil, 0)
		h.o.Debugf("%v to app %s: %v", sig, app, err)
	}
}

// finish waits for the tees to copy what the apps wrote (the pod has ended,
// so nothing holds the pipes but run) and closes the log.
func (h *handover) finish() {
	for _, t := range h.tees {
		t.CloseWriter()
	}
	for _, t := range h.tees {
		if !t.Wait(5 * time.Second) {
			fmt.Fprintf(os.Stderr, "skiff: pod %s: an app's output pipe is still open; its log may be incomplete\n", filepath.Base(h.o.PodDir))
			break
		}
	}
	h.close()
}

func (h *handover) close() {
	h.log.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, fd := range h.pidfds {
		unix.Close(fd)
	}
	h.pidfds = map[string]int{}
}
