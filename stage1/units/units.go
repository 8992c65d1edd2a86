// Package units writes the systemd units with which a pod's init (systemd, PID 1
// of the pod) runs the apps: one service per app and a target that pulls them
// in. Every stage1 flavor that boots systemd uses this package, so the units are
// the same whether the pod runs in namespaces or in a microVM.
package units

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Target is the unit systemd is started with (--unit=...).
const Target = "skiff.target"

// Dir is where the units live, relative to the stage1 rootfs.
const Dir = "etc/systemd/system"

// SearchPathEnv is the environment entry that gives the pod's systemd its
// unit search path (SYSTEMD_UNIT_PATH; no ':' at the end, so nothing else is
// searched): skiff's units, and the few of systemd's own that the stage1
// image carries (the shutdown targets, the mount.d drop-in). systemd's
// default path has seven directories (and /lib/systemd/system is /usr/lib's
// again); for every unit it loads it looks in each, under every drop-in
// directory name of the unit: with a mount unit per mount of the pod (about
// 35 for one app, before NoMountTrackingEnv), over 2,000 lookups of which all
// but a few failed. With two directories systemd reached the app's unit about
// a quarter sooner.
const SearchPathEnv = "SYSTEMD_UNIT_PATH=/" + Dir + ":/usr/lib/systemd/system"

// NoMountTrackingEnv is the environment entry that keeps the pod's systemd
// from tracking the pod's mounts: it gives libmount (LIBMOUNT_UTAB, its
// documented override of /run/mount/utab) a relative path that cannot exist
// from systemd's working directory, so the watch libmount sets up for that
// file's changes finds nothing to watch, systemd's mount monitor fails to
// start and systemd keeps no mount units at all (it logs one error to its
// log, which goes nowhere without --debug, and carries on).
//
// The pod has nothing to gain from them: stage1 and libcontainer make the
// pod's mounts and the end of its mount namespace takes them down; no unit
// of a pod depends on one. They cost: one unit per mount of the pod (about
// 20 per app: its rootfs, /proc, /dev, ...), each loaded at start (8 ms of
// a busybox pod's 25 from systemd's exec to the app's), kept in systemd's
// heap (~0.2 MiB of an idle pod), and a live inotify watch (libmount's, on
// /run) whose release at the pod's end can wait for a kernel grace period
// (fsnotify's SRCU; systemd's other inotify instances can wait for it
// instead: bench/README.md).
const NoMountTrackingEnv = "LIBMOUNT_UTAB=skiff-no-mount-tracking/utab"

// Paths of skiff's helpers inside the stage1 rootfs, run by the units.
const (
	AppExecPath   = "/usr/lib/skiff/app-exec"
	AppExitedPath = "/usr/lib/skiff/app-exited"
)

// App is what the units need to know about one app.
type App struct {
	Name string
	// Limits, applied by the pod's systemd where it has the controllers (pure
	// cgroup v2 hosts); elsewhere stage1 enforces them from the host.
	MemoryMax int64 // bytes
	CPUQuota  int64 // percent of one CPU
	TasksMax  int64
	CPUWeight uint64
}

// Options shape the pod's units.
type Options struct {
	Apps []App
	// StopTimeout is how long an app gets between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	// ExitWithApp (OCI mode, one app) ends the pod's systemd with the app's
	// own exit status, 128+N for signal N: app-exited calls `systemctl exit
	// CODE` (EnvExitWithApp tells it to) instead of a Success/FailureAction,
	// which would turn a death by signal into 255.
	ExitWithApp bool
}

// EnvExitWithApp, set to "1" in an app's unit, tells app-exited to end the
// pod with the app's exit status (Options.ExitWithApp).
const EnvExitWithApp = "SKIFF_EXIT_WITH_APP"

// ServiceName is the unit that runs app.
func ServiceName(app string) string { return "skiff-app-" + app + ".service" }

// Write writes the pod's units into root (a stage1 rootfs or its overlay upper
// directory).
func Write(root string, o Options) error {
	dir := filepath.Join(root, Dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{Target: target(o)}
	for _, a := range o.Apps {
		files[ServiceName(a.Name)] = service(a, o)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("write unit %s: %w", name, err)
		}
	}
	return nil
}

func target(o Options) string {
	var wants []string
	for _, a := range o.Apps {
		wants = append(wants, ServiceName(a.Name))
	}
	return fmt.Sprintf(`[Unit]
Description=skiff pod
DefaultDependencies=no
Wants=%s
`, strings.Join(wants, " "))
}

// service is one app's unit. The app's stdio does not come from systemd:
// app-exec receives skiff's own descriptors from stage1 (see stage1/stdio), so
// output reaches the user unaltered. The pod ends when an app fails or, for a
// single app, when it exits; app-exited records the exit status first.
func service(a App, o Options) string {
	timeout := o.StopTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	// One app: its end is the pod's end. Several: a failure stops the others
	// cleanly (exit.target pulls in shutdown.target, which the apps conflict
	// with); success ends the pod with the last app (see app-exited).
	actions := ""
	switch {
	case o.ExitWithApp:
		actions = "\n"
	case len(o.Apps) > 1:
		actions = "FailureAction=exit\n"
	default:
		actions = "SuccessAction=exit-force\nFailureAction=exit-force\n"
	}
	env := ""
	if o.ExitWithApp {
		env = "Environment=" + EnvExitWithApp + "=1\n"
	}
	return fmt.Sprintf(`[Unit]
Description=skiff app %[1]s
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target
%[3]s
[Service]
Type=simple
ExecStart=%[5]s %[1]s
ExecStopPost=%[6]s %[1]s
StandardInput=null
StandardOutput=null
StandardError=null
TimeoutStopSec=%[2]dms
Restart=no
%[4]s%[7]s`, a.Name, timeout.Milliseconds(), actions, env, AppExecPath, AppExitedPath, limits(a))
}

func limits(a App) string {
	var b strings.Builder
	if a.MemoryMax > 0 {
		fmt.Fprintf(&b, "MemoryMax=%d\n", a.MemoryMax)
	}
	if a.CPUQuota > 0 {
		fmt.Fprintf(&b, "CPUQuota=%d%%\n", a.CPUQuota)
	}
	if a.CPUWeight > 0 {
		fmt.Fprintf(&b, "CPUWeight=%d\n", a.CPUWeight)
	}
	if a.TasksMax > 0 {
		fmt.Fprintf(&b, "TasksMax=%d\n", a.TasksMax)
	}
	return b.String()
}

// AppFromSpec is what an app's unit needs from its spec: its name and the
// limits systemd applies (memory, CPU quota and weight, tasks).
func AppFromSpec(name string, spec *specs.Spec) App {
	u := App{Name: name}
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return u
	}
	r := spec.Linux.Resources
	if r.Memory != nil && r.Memory.Limit != nil {
		u.MemoryMax = *r.Memory.Limit
	}
	if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Period > 0 {
		u.CPUQuota = *r.CPU.Quota * 100 / int64(*r.CPU.Period)
	}
	if r.CPU != nil && r.CPU.Shares != nil && *r.CPU.Shares >= 2 {
		u.CPUWeight = 1 + (*r.CPU.Shares-2)*9999/262142 // systemd's shares-to-weight mapping
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		u.TasksMax = *r.Pids.Limit
	}
	return u
}
