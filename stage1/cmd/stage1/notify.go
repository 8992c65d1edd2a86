package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/daemon"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/internal/timeline"
	"github.com/skiff-project/skiff/stage1/abi"
)

// Readiness, sd_notify in both directions.
//
// Outwards, run is skiff: when its NOTIFY_SOCKET is set (a Type=notify unit),
// it sends READY=1 with MAINPID=its own pid once the pod is ready, and passes
// the apps' STATUS= and WATCHDOG=1 messages on, and nothing else of theirs
// (filterNotify). Inwards, each app that declares
// notify support (abi.AnnotationAppNotify in its spec) gets its own datagram
// socket, stage1/notify/APP in the pod directory, bind-mounted at
// appNotifySocket in its rootfs and named by its NOTIFY_SOCKET. The pod is
// ready when every app has started and every notify app has sent READY=1;
// run then writes abi.ReadyFile too.

// appNotifySocket is where a notify app finds its socket, in its rootfs.
const appNotifySocket = "/run/skiff/notify"

const s1Notify = abi.Stage1Dir + "/notify"

// readiness tracks the apps' start and READY=1.
type readiness struct {
	o       runOpts
	mu      sync.Mutex
	apps    int
	notify  map[string]bool // apps that declared notify support
	started map[string]bool
	ready   map[string]bool // notify apps that sent READY=1
	done    bool
	doneCh  chan struct{} // closed when done is set: the pod is ready
	socks   []*net.UnixConn
}

func notifyApp(s *specs.Spec) bool {
	return s.Annotations[abi.AnnotationAppNotify] == "true"
}

// newReadiness opens the sockets of the notify apps.
func newReadiness(o runOpts, m *abi.PodManifest, sp map[string]*specs.Spec) (*readiness, error) {
	r := &readiness{o: o, apps: len(m.Apps), notify: map[string]bool{},
		started: map[string]bool{}, ready: map[string]bool{}, doneCh: make(chan struct{})}
	for _, a := range m.Apps {
		if !notifyApp(sp[a.Name]) {
			continue
		}
		r.notify[a.Name] = true
		if err := os.MkdirAll(s1Notify, 0o755); err != nil {
			return nil, err
		}
		path := filepath.Join(s1Notify, a.Name) // relative: sun_path is short
		_ = os.Remove(path)
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			r.close()
			return nil, fmt.Errorf("app %s: notify socket: %w", a.Name, err)
		}
		// Any user in the app may notify, as with NotifyAccess=all.
		_ = os.Chmod(path, 0o777)
		r.socks = append(r.socks, c)
		go r.serve(a.Name, c)
	}
	return r, nil
}

// mount is the bind mount of app's socket into its rootfs (none for an app
// that does not notify).
func (r *readiness) mount(app string) []specs.Mount {
	if !r.notify[app] {
		return nil
	}
	return []specs.Mount{{Destination: appNotifySocket, Type: "bind",
		Source: abs(filepath.Join(s1Notify, app)), Options: []string{"bind"}}}
}

// env is what app's environment gets for readiness.
func (r *readiness) env(app string) []string {
	if !r.notify[app] {
		return nil
	}
	env := []string{"NOTIFY_SOCKET=" + appNotifySocket}
	// The unit's watchdog, when it is ours: the app pings through us.
	if usec := os.Getenv("WATCHDOG_USEC"); usec != "" {
		if pid := os.Getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
			env = append(env, "WATCHDOG_USEC="+usec)
		}
	}
	return env
}

// serve reads one app's notifications.
func (r *readiness) serve(app string, c *net.UnixConn) {
	buf := make([]byte, 4096)
	watchdog := slices.ContainsFunc(r.env(app), func(kv string) bool { return strings.HasPrefix(kv, "WATCHDOG_USEC=") })
	var lim notifyLimiter
	send := func(msg []string) {
		if len(msg) > 0 {
			r.o.Debugf("app %s notifies %q", app, msg)
			_, _ = daemon.SdNotify(false, strings.Join(msg, "\n"))
		}
	}
	for {
		n, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) { // time to pass on what was held back
			send(lim.flush(time.Now()))
			_ = c.SetReadDeadline(time.Time{})
			continue
		}
		if err != nil {
			return
		}
		ready, pass := filterNotify(buf[:n], watchdog)
		if ready {
			r.mark(app, true)
		}
		msg, wait := lim.add(pass, time.Now())
		send(msg)
		if wait > 0 {
			_ = c.SetReadDeadline(time.Now().Add(wait))
		}
	}
}

// notifyInterval is the least time between two messages passed from one
// app to the unit: each costs the host's systemd (outside the pod's
// limits) some work, so an app that floods its socket has its STATUS=
// and WATCHDOG=1 coalesced, the latest of each passed once per interval.
const notifyInterval = 100 * time.Millisecond

type notifyLimiter struct {
	last     time.Time
	status   string // the latest STATUS= held back, if any
	watchdog bool   // a WATCHDOG=1 held back
}

// add takes what filterNotify passes at now and returns what to send now,
// and, when it held something back, how long until flush should send it.
func (l *notifyLimiter) add(pass []string, now time.Time) ([]string, time.Duration) {
	for _, kv := range pass {
		if kv == "WATCHDOG=1" {
			l.watchdog = true
		} else {
			l.status = kv
		}
	}
	if l.status == "" && !l.watchdog {
		return nil, 0
	}
	if wait := l.last.Add(notifyInterval).Sub(now); wait > 0 {
		return nil, wait
	}
	return l.flush(now), 0
}

// flush returns everything held back and starts a new interval at now.
func (l *notifyLimiter) flush(now time.Time) []string {
	var msg []string
	if l.status != "" {
		msg = append(msg, l.status)
	}
	if l.watchdog {
		msg = append(msg, "WATCHDOG=1")
	}
	if len(msg) > 0 {
		l.last = now
	}
	l.status, l.watchdog = "", false
	return msg
}

// maxStatus bounds a STATUS= text passed to the unit, in bytes.
const maxStatus = 256

// filterNotify reads one datagram of an app's and returns whether it says
// READY=1 and what of it the unit's NOTIFY_SOCKET may get. An app speaks for
// itself, not for the unit: READY=1 is skiff's to decide (the pod is ready
// when all its apps are), and MAINPID=, EXTEND_TIMEOUT_USEC=, WATCHDOG_USEC=,
// WATCHDOG=trigger, FDSTORE=, STOPPING=, RELOADING=, ERRNO= and everything
// else would let an app in a pod steer the host's unit (track another
// process, keep a stop or a start pending forever, fire or disarm its
// watchdog). Only these pass:
//   - STATUS=TEXT, cut to maxStatus bytes of valid UTF-8 with control
//     characters removed (the text ends up in systemctl status and journals);
//   - WATCHDOG=1, when the unit's watchdog is skiff's and the app was given
//     it (watchdog: the app has WATCHDOG_USEC).
func filterNotify(msg []byte, watchdog bool) (ready bool, pass []string) {
	for _, line := range strings.Split(string(msg), "\n") {
		switch {
		case line == "READY=1":
			ready = true
		case line == "WATCHDOG=1" && watchdog:
			pass = append(pass, line)
		case strings.HasPrefix(line, "STATUS="):
			pass = append(pass, "STATUS="+cleanStatus(strings.TrimPrefix(line, "STATUS=")))
		}
	}
	return ready, pass
}

// cleanStatus drops control characters and invalid UTF-8 from s and cuts it
// to maxStatus bytes on a rune boundary.
func cleanStatus(s string) string {
	var b strings.Builder
	for _, c := range strings.ToValidUTF8(s, "") {
		if unicode.IsControl(c) {
			continue
		}
		if b.Len()+utf8.RuneLen(c) > maxStatus {
			break
		}
		b.WriteRune(c)
	}
	return b.String()
}

// appStarted records that app has its stdio and is about to exec.
func (r *readiness) appStarted(app string) {
	r.o.Debugf("app %s started", app)
	timeline.Mark(r.o.Debug, "stage1", "app started (systemd ran its unit; app-exec has its stdio)")
	r.mark(app, false)
}

func (r *readiness) mark(app string, ready bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ready {
		r.ready[app] = true
		r.o.Debugf("app %s is ready", app)
	} else {
		r.started[app] = true
	}
	if r.done || len(r.started) < r.apps {
		return
	}
	for a := range r.notify {
		if !r.ready[a] {
			return
		}
	}
	r.done = true
	close(r.doneCh)
	_ = os.WriteFile(abi.ReadyFile, nil, 0o644)
	_, _ = daemon.SdNotify(false, fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid()))
	go leanAfterStart() // start-up is over: the pod's apps run (and are ready)
}

// stopping tells the unit the pod is on its way down.
func (r *readiness) stopping() {
	_, _ = daemon.SdNotify(false, "STOPPING=1")
}

func (r *readiness) close() {
	for _, c := range r.socks {
		c.Close()
	}
}
