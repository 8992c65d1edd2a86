package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/internal/overlay"
	"github.com/skiff-project/skiff/internal/timeline"
	"github.com/skiff-project/skiff/networking"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
	"github.com/skiff-project/skiff/stage1/container"
	"github.com/skiff-project/skiff/stage1/podfs"
	"github.com/skiff-project/skiff/stage1/podnet"
	"github.com/skiff-project/skiff/stage1/podrun"
	"github.com/skiff-project/skiff/stage1/stdio"
	"github.com/skiff-project/skiff/stage1/units"
)

// Paths in the pod directory private to this flavor.
const (
	s1Rootfs = abi.Stage1Dir + "/rootfs"
	s1Run    = abi.Stage1Dir + "/run"
	s1State  = abi.Stage1Dir + "/libcontainer"
	s1Stop   = abi.Stage1Dir + "/stop-requested" // written by stop before it signals
	s1Kill   = abi.Stage1Dir + "/kill-requested" // written before the pod is killed on request (stop --force, a second signal)
)

// Signals of the pod's systemd (systemd(1)).
// SIGRTMIN+3 (halt): glibc, which systemd is built with, puts SIGRTMIN at 34.
var sigHalt = unix.Signal(34 + 3)

// runOpts are run's options (package podrun).
type runOpts = podrun.Opts

func parseRun(args []string) (runOpts, error) { return podrun.Parse("stage1", args) }

// containerID is libcontainer's name for the pod.
func containerID(uuid string) string { return "skiff-" + uuid }

// runMain runs the pod: it mounts the stage1 rootfs, starts the pod's systemd in
// a new sandbox with one service per app, hands the apps skiff's stdio, waits
// for the pod to end and reports the pod's exit code. It holds the pod lock
// (inherited on SKIFF_LOCK_FD) until it exits.
func runMain(args []string) error {
	o, err := parseRun(args)
	if err != nil {
		return err
	}
	timeline.Mark(o.Debug, "stage1", "stage1 started")
	// Pdeathsig follows the thread that started the pod: keep it alive.
	runtime.LockOSThread()
	if fd, err := strconv.Atoi(os.Getenv(abi.EnvLockFD)); err == nil {
		unix.CloseOnExec(fd) // the lock stays with us, never with the pod
	}
	var m abi.PodManifest
	if err := abi.ReadJSON(abi.PodManifestFile, &m); err != nil {
		return fmt.Errorf("pod %s: %w", o.UUID, err)
	}
	r, err := startPod(o, &m)
	if err != nil {
		return fmt.Errorf("pod %s: %w", o.UUID, err)
	}
	go func() { // the pod's moves: its start's, and a short job's end
		select {
		case <-r.ready.doneCh:
			t := time.NewTimer(warmAfterReady)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.gone:
			}
		case <-r.gone:
		}
		r.stopWarm()
	}()
	leanAfterStart()
	r.watchIdle()
	code := r.wait()
	return codeError(code)
}

type runningPod struct {
	o      runOpts
	m      *abi.PodManifest
	specs  map[string]*specs.Spec // each app's config.json
	gone   chan struct{}          // closed once the pod's init has been reaped
	net    *podnet.Net
	c      *container.Running
	srv    *stdio.Server
	ready  *readiness
	cgroup string    // the pod's cgroup path (see cgroup.go)
	users  *podUsers // nil without --private-users (see users.go)
	hand   *handover
	// stopWarm ends warmCgroupMoves, started for the pod's start.
	stopWarm func()
	// unregister undoes the registration with systemd-machined.
	unregister func()
	// exitWithApp: OCI mode, the pod's systemd exits with the app's status.
	exitWithApp bool
	stopping    bool
	mu          sync.Mutex
}

func startPod(o runOpts, m *abi.PodManifest) (*runningPod, error) {
	r := &runningPod{o: o, m: m, specs: map[string]*specs.Spec{}, cgroup: choosePodCgroup(o, m.UUID), gone: make(chan struct{})}
	// After choosePodCgroup: the writes go to the cgroup run stays in.
	r.stopWarm = warmCgroupMoves(o, warmMax)
	defer func() {
		if r.c == nil {
			r.stopWarm() // the pod never started
		}
	}()
	var err error
	if r.users, err = newPodUsers(o.PrivateUsers); err != nil {
		return nil, err
	}
	defer dropScratch() // the overlay, if mounted, keeps it
	if err := r.writeUnits(); err != nil {
		return nil, err
	}
	timeline.Mark(o.Debug, "stage1", "units written")
	if r.hand, err = newHandover(o, m); err != nil {
		return nil, err
	}
	if r.users != nil {
		if err := r.hand.ownPipes(r.users.hostID(0)); err != nil {
			return nil, err
		}
	}
	if r.ready, err = newReadiness(o, m, r.specs); err != nil {
		return nil, err
	}
	rootfs, err := r.mountRootfs()
	if err != nil {
		return nil, fmt.Errorf("mount stage1 rootfs: %w", err)
	}
	// The sandbox keeps its own copy of the mount; the host's goes right away,
	// so a crash of this process leaves no mount behind.
	defer unix.Unmount(rootfs, unix.MNT_DETACH)
	defer func() {
		if r.c == nil {
			_ = r.users.removeRootfs(m.UUID) // the pod never started
		}
	}()
	o.Debugf("stage1 rootfs mounted")
	timeline.Mark(o.Debug, "stage1", "stage1 rootfs mounted")
	o.Network.AnyUserLowPorts = r.users != nil
	if r.net, err = podnet.Setup(context.Background(), m.UUID, o.Network); err != nil {
		return nil, err
	}
	defer func() {
		if r.c == nil {
			r.net.Teardown() // the pod never started: nothing of its network stays
		}
	}()
	o.Debugf("network %s set up", o.Net)
	timeline.Mark(o.Debug, "stage1", "network set up")
	sb, err := r.sandbox(rootfs)
	if err != nil {
		return nil, err
	}
	if r.srv, err = r.serveStdio(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s1Cgroup, []byte(r.cgroup), 0o644); err != nil {
		r.srv.Close()
		return nil, fmt.Errorf("record the pod's cgroup for gc: %w", err)
	}
	timeline.Mark(o.Debug, "stage1", "sandbox spec ready")
	c, err := container.Start(sb)
	if err != nil {
		r.srv.Close()
		return nil, err
	}
	r.c = c
	o.Debugf("sandbox started, init pid %d", c.Pid())
	timeline.Mark(o.Debug, "stage1", "libcontainer started the pod's init")
	if err := atomicfile.Write(abi.PIDFile, []byte(strconv.Itoa(c.Pid())+"\n"), 0o644); err != nil {
		_ = c.Signal(unix.SIGKILL)
	}
	r.unregister = registerMachine(o, m, c.Pid(), rootfs)
	return r, nil
}

// writeUnits reads the apps' specs, makes the pod's directories and volumes,
// and writes the units into the stage1 rootfs's upper directory.
func (r *runningPod) writeUnits() error {
	if err := prepareDirs(r.m); err != nil {
		return err
	}
	if err := mountScratch(); err != nil { // the caller drops it: dropScratch
		return err
	}
	if err := podfs.MakeVolumes(r.m.Volumes, r.users.hostID); err != nil {
		return err
	}
	var apps []units.App
	for _, a := range r.m.Apps {
		var s specs.Spec
		if err := abi.ReadJSON(filepath.Join(abi.AppsDir, a.Name, abi.AppSpecFile), &s); err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		r.specs[a.Name] = &s
		apps = append(apps, units.AppFromSpec(a.Name, &s))
	}
	saveStopTimeout(r.o.StopTimeout)
	if err := units.Write(s1Upper, units.Options{Apps: apps, StopTimeout: r.o.StopTimeout, ExitWithApp: r.exitWithApp}); err != nil {
		return err
	}
	return r.users.ownPodDirs(r.m)
}

// mountRootfs mounts the stage1 rootfs, and with private users the apps'
// rootfs in it too (see users.go), and returns where.
func (r *runningPod) mountRootfs() (string, error) {
	if r.users != nil {
		return r.users.mountRootfs(r.m)
	}
	rootfs := filepath.Join(r.o.PodDir, s1Rootfs)
	return rootfs, overlay.Mount(r.m.Stage1.Rootfs.Layers, s1Upper, s1Work, rootfs)
}

func prepareDirs(m *abi.PodManifest) error {
	dirs := []string{s1Rootfs, s1Scratch, s1Run, s1State}
	for _, a := range m.Apps {
		d := filepath.Join(abi.AppsDir, a.Name)
		dirs = append(dirs, filepath.Join(d, "upper"), filepath.Join(d, "work"))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func abs(p string) string {
	a, _ := filepath.Abs(p)
	return a
}

// sandbox describes the pod's init for the container package.
func (r *runningPod) sandbox(rootfs string) (container.Pod, error) {
	mounts := []specs.Mount{
		{Destination: appexec.AppsDir, Type: "bind", Source: abs(abi.AppsDir), Options: []string{"rbind"}},
		{Destination: appexec.RunDir, Type: "bind", Source: abs(s1Run), Options: []string{"rbind"}},
	}
	for _, a := range r.m.Apps {
		app, err := r.appFS(a)
		if err != nil {
			return container.Pod{}, fmt.Errorf("app %s: %w", a.Name, err)
		}
		app.Mounts = append(app.Mounts, r.net.Files...)
		app.Mounts = append(app.Mounts, r.ready.mount(a.Name)...)
		ms, err := container.AppMounts(rootfs, app)
		if err != nil {
			return container.Pod{}, fmt.Errorf("app %s: %w", a.Name, err)
		}
		mounts = append(mounts, ms...)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return container.Pod{}, err
	}
	logTarget, stderr := "null", null
	if r.o.Debug {
		logTarget, stderr = "console", os.Stderr
	}
	return container.Pod{
		ID:          containerID(r.m.UUID),
		StateRoot:   abs(s1State),
		Rootfs:      rootfs,
		Hostname:    r.o.Hostname,
		HostNetwork: r.net.Mode == networking.ModeHost,
		NetNSPath:   r.net.NetNSPath(),
		CgroupsPath: r.cgroup,
		UserNS:      r.users.mapping(),
		Mounts:      mounts,
		Args: []string{"/usr/lib/systemd/systemd", "--unit=" + units.Target, // dies with this process: initDeathSignal
			"--log-target=" + logTarget, "--show-status=0"},
		Env: []string{"container=skiff", "container_uuid=" + r.m.UUID, units.SearchPathEnv,
			units.NoMountTrackingEnv, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Stdio: [3]*os.File{null, stderr, stderr},
	}, nil
}

// appFS describes an app's filesystem from its manifest entry and its spec.
func (r *runningPod) appFS(a abi.App) (container.App, error) {
	spec := r.specs[a.Name]
	lower, err := overlay.Lowerdir(a.Rootfs.Layers)
	if err != nil {
		return container.App{}, err
	}
	d := abi.AppDir(r.o.PodDir, a.Name)
	app := container.App{
		App:      podfs.FromSpec(appexec.AppRoot(a.Name), r.o.PodDir, spec),
		Lowerdir: lower, Upper: filepath.Join(d, "upper"), Work: filepath.Join(d, "work"),
		Mounted: r.users != nil,
	}
	app.UserNS = r.users != nil
	if !app.Mounted { // mount targets are looked up in the overlay-to-be
		app.Layers = []string{app.Upper}
		for i := len(a.Rootfs.Layers) - 1; i >= 0; i-- {
			app.Layers = append(app.Layers, a.Rootfs.Layers[i])
		}
	}
	// Host volumes are bind mounts seen through the pod's range unless stage0
	// gave them the idmap/ridmap option (the user's idmap=true; users.go).
	return app, nil
}

// serveStdio hands each app its descriptors (see handover) and tells
// readiness when it has them.
func (r *runningPod) serveStdio() (*stdio.Server, error) {
	known := map[string]bool{}
	for _, a := range r.m.Apps {
		known[a.Name] = true
	}
	sock := filepath.Join(s1Run, "stdio.sock")
	srv, err := stdio.Listen(sock,
		func(app string, pid int) (stdio.Files, error) {
			if !known[app] {
				return stdio.Files{}, fmt.Errorf("pod has no app %q", app)
			}
			if err := applyLimits(r.cgroup, app, pid, r.specs[app]); err != nil {
				// app-exec has no stdio yet: say it here, on skiff's stderr.
				fmt.Fprintf(os.Stderr, "skiff: app %s: %v\n", app, err)
				return stdio.Files{}, err
			}
			return r.hand.files(app, r.ready.env(app)), nil
		},
		func(app string, pid int) {
			r.hand.started(app, pid)
			r.ready.appStarted(app)
		})
	if err != nil {
		return nil, err
	}
	if err := r.users.own(sock); err != nil { // app-exec connects as the pod's root
		srv.Close()
		return nil, err
	}
	return srv, nil
}

// wait forwards stop requests, waits for the pod's init and cleans up.
func (r *runningPod) wait() int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2)
	go r.forward(sigs)
	r.stopIfRequested()
	state, _ := r.c.Wait()
	close(r.gone)
	r.o.Debugf("pod init exited: %v", state)
	timeline.Mark(r.o.Debug, "stage1", "pod's init exited")
	noInotify := r.noInotifyBeforeStart(state) // now, while the shortage lasts
	// sigs stays subscribed: a signal from now on (a `systemctl stop` landing
	// as the pod ends on its own, a second ^C) must not kill run halfway
	// through the cleanup below; forward drops it.
	r.recordOOMKills()
	r.recordKills()
	r.srv.Close()
	r.ready.close()
	r.hand.finish()
	r.unregister()
	clean := false
	errDestroy := r.c.Destroy()
	errNet := r.net.Teardown()
	errUsers := r.users.removeRootfs(r.m.UUID)
	if err := errors.Join(errDestroy, errNet, errUsers); err != nil {
		fmt.Fprintf(os.Stderr, "skiff: pod %s: %v; 'skiff gc' will retry\n", r.m.UUID, err)
	} else {
		clean = os.WriteFile(abi.CleanFile, nil, 0o644) == nil // gc has nothing left to undo
	}
	r.o.Debugf("sandbox destroyed")
	timeline.Mark(r.o.Debug, "stage1", "cleaned up")
	code := r.exitCode(state)
	if noInotify != nil {
		fmt.Fprintf(os.Stderr, "skiff: pod %s: %v\n", r.m.UUID, noInotify)
		code = abi.ExitSkiffFailure
	}
	_ = abi.WriteJSON(abi.PodExitFile, abi.PodExit{Code: code, ExitedAt: time.Now().UTC()})
	timeline.Mark(r.o.Debug, "stage1", "exit recorded")
	if clean {
		dropUndoRecords() // after exitCode, which reads the stop markers
	}
	return code
}

// recordOOMKills marks the exit records of apps the OOM killer hit (read
// before the pod's cgroups go away).
func (r *runningPod) recordOOMKills() {
	for _, a := range r.m.Apps {
		if !oomKilled(r.cgroup, a.Name) {
			continue
		}
		path := filepath.Join(abi.AppsDir, a.Name, abi.AppExitFile)
		var x abi.AppExit
		if err := abi.ReadJSON(path, &x); err != nil {
			x = abi.AppExit{App: a.Name, Code: 137, Signal: "SIGKILL", ExitedAt: time.Now().UTC()}
		}
		x.OOMKilled = true
		_ = abi.WriteJSON(path, x)
	}
}

// stopIfRequested halts (or kills) the pod now if stop came while it was
// starting, before its pid file was there (stop leaves its markers first).
func (r *runningPod) stopIfRequested() {
	if _, err := os.Stat(s1Stop); err != nil {
		return
	}
	r.ready.stopping()
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	if _, err := os.Stat(s1Kill); err == nil {
		_ = r.c.Signal(unix.SIGKILL)
		return
	}
	go haltPod(r.c.Pid(), podHaltGrace(), r.gone)
}

// recordKills gives each app that ended without an exit record, when the
// pod was killed on request, the code of a SIGKILL (137), as a kill after the
// stop timeout does: a killed pod never reports success.
func (r *runningPod) recordKills() {
	if _, err := os.Stat(s1Kill); err != nil {
		return
	}
	for _, a := range r.m.Apps {
		path := filepath.Join(abi.AppsDir, a.Name, abi.AppExitFile)
		var x abi.AppExit
		if err := abi.ReadJSON(path, &x); err == nil {
			continue
		}
		_ = abi.WriteJSON(path, abi.AppExit{App: a.Name, Code: 137, Signal: "SIGKILL", ExitedAt: time.Now().UTC()})
	}
}

// forward turns SIGTERM/SIGINT into a clean halt of the pod's systemd (apps get
// SIGTERM, then SIGKILL after their stop timeout); a second one kills now.
// SIGHUP, SIGUSR1 and SIGUSR2 go to each app's main process. Once the pod's
// init has exited, every signal is dropped: the cleanup finishes.
func (r *runningPod) forward(sigs <-chan os.Signal) {
	for sig := range sigs {
		select {
		case <-r.gone:
			r.o.Debugf("%v while the pod is cleaned up: ignored", sig)
			continue
		default:
		}
		if s := sig.(unix.Signal); s != unix.SIGTERM && s != unix.SIGINT {
			r.hand.signal(s)
			continue
		}
		r.ready.stopping()
		r.mu.Lock()
		again := r.stopping
		r.stopping = true
		r.mu.Unlock()
		if again {
			_ = os.WriteFile(s1Kill, nil, 0o644)
			_ = r.c.Signal(unix.SIGKILL)
			continue
		}
		go haltPod(r.c.Pid(), podHaltGrace(), r.gone)
	}
}

// exitCode is the pod's exit code: the first failing app's, where apps stopped
// on request with SIGTERM count as clean; systemd's own status otherwise.
func (r *runningPod) exitCode(state *os.ProcessState) int {
	var exits []abi.AppExit
	for _, a := range r.m.Apps {
		var x abi.AppExit
		if err := abi.ReadJSON(filepath.Join(abi.AppsDir, a.Name, abi.AppExitFile), &x); err != nil {
			continue
		}
		if x.Signal == "SIGTERM" && r.haltRequested() {
			x.Code = 0
		}
		exits = append(exits, x)
	}
	if len(exits) > 0 {
		return abi.PodCode(exits)
	}
	if state == nil {
		return abi.ExitSkiffFailure
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if r.haltRequested() {
			return 0
		}
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}

// haltRequested tells whether the pod ended because someone asked it to: our
// own signal handler, or the stop entrypoint (which leaves a marker first).
func (r *runningPod) haltRequested() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return true
	}
	_, err := os.Stat(s1Stop)
	return err == nil
}
