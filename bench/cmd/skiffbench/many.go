package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startManyPods is how many pods start-50 and stop-50 start at once.
const startManyPods = 50

// appIdle is the long-running app of start-50: it ends cleanly on SIGTERM
// (busybox sleep as a container's PID 1, as under podman, would ignore it).
var appIdle = []string{"/bin/sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"}

// inotifyFloor is the fs.inotify.max_user_instances start-50 needs: each
// pod's systemd holds about 3 inotify instances, all charged to host root
// (the kernel's default of 128 ends at about 40 pods).
const inotifyFloor = 1024

const inotifyInstances = "/proc/sys/fs/inotify/max_user_instances"

// manyScenario starts startManyPods idle pods at once per runtime, round-robin
// per iteration, and times how long until every one is ready (start-50), then
// how long one stop of all of them takes until every one has ended (stop-50).
// skiff: `skiff run` × N in parallel, each then `skiff status --wait-ready`;
// `skiff stop` of all N UUIDs; every run must exit 0. podman: `podman run -d`
// × N in parallel (it returns once the container runs); `podman stop` of all.
func manyScenario(ctx context.Context, e *Env, iters int) []*Result {
	restore, err := raiseInotify(inotifyFloor)
	if err != nil {
		logf("start-50: %v", err)
	}
	defer restore()
	names := []string{"skiff", "podman --network=none"}
	start := func(ctx context.Context, i int) (time.Duration, time.Duration, error) {
		if i == 0 {
			return e.skiffMany(ctx, startManyPods)
		}
		return e.podmanMany(ctx, startManyPods)
	}
	note := fmt.Sprintf("%d pods running %q started at once", startManyPods, strings.Join(appIdle, " "))
	up, down := make([]*Result, len(names)), make([]*Result, len(names))
	for i, n := range names {
		up[i] = &Result{Scenario: fmt.Sprintf("start-%d", startManyPods), Runtime: n, Unit: "s", Status: "ok",
			Note: note + ": until all are ready"}
		down[i] = &Result{Scenario: fmt.Sprintf("stop-%d", startManyPods), Runtime: n, Unit: "s", Status: "ok",
			Note: note + ": one stop of all, until all have ended"}
	}
	// Untimed warm-up: skiff imports its stage1 and the image on its first run.
	warm := [][]string{e.skiffArgv(e.SkiffDir, e.Busybox, "none", []string{"/bin/true"}),
		append(append([]string(nil), e.Podman...), "run", "--rm", "--network=none", e.PodmanImg, "/bin/true")}
	for i, argv := range warm {
		if _, err := must(ctx, argv...); err != nil {
			up[i].Status, down[i].Status = "FAILED: warm-up: "+err.Error(), "FAILED: warm-up: "+err.Error()
		}
	}
	for it := 0; it < iters && ctx.Err() == nil; it++ {
		for k := range names {
			i := (it + k) % len(names)
			if !up[i].ok() {
				continue
			}
			u, d, err := start(ctx, i)
			if err != nil {
				up[i].Status, down[i].Status = "FAILED: "+err.Error(), "FAILED: "+err.Error()
				logf("start-%d/%s: FAILED: %v", startManyPods, names[i], err)
				continue
			}
			logf("start-%d/%s: all ready in %.2f s, all stopped in %.2f s (load %s)", startManyPods, names[i], u.Seconds(), d.Seconds(), loadavg())
			up[i].Samples = append(up[i].Samples, u.Seconds())
			down[i].Samples = append(down[i].Samples, d.Seconds())
		}
	}
	for _, rs := range [][]*Result{up, down} {
		for _, r := range rs {
			summarize(r)
		}
		addRatios(rs, nil)
	}
	return append(up, down...)
}

// raiseInotify sets fs.inotify.max_user_instances to at least floor and
// returns how to put the old value back.
func raiseInotify(floor int) (func(), error) {
	b, err := os.ReadFile(inotifyInstances)
	if err != nil {
		return func() {}, err
	}
	old := strings.TrimSpace(string(b))
	if n, err := strconv.Atoi(old); err != nil || n >= floor {
		return func() {}, nil
	}
	if err := os.WriteFile(inotifyInstances, []byte(strconv.Itoa(floor)), 0o644); err != nil {
		return func() {}, fmt.Errorf("raise %s to %d: %v", inotifyInstances, floor, err)
	}
	logf("fs.inotify.max_user_instances %s -> %d for start-%d (restored after)", old, floor, startManyPods)
	return func() { _ = os.WriteFile(inotifyInstances, []byte(old), 0o644) }, nil
}

// skiffMany starts n pods at once and returns the time until all are ready
// and the time one `skiff stop` of all of them takes until all have exited.
// Each pod is an attached `skiff run` (it becomes the pod's stage1, alive
// while the pod runs); each is waited for by its own `skiff status
// --wait-ready`, all at once.
func (e *Env) skiffMany(ctx context.Context, n int) (time.Duration, time.Duration, error) {
	type pod struct {
		uf   string
		cmd  *exec.Cmd
		out  lockedBuffer
		done chan struct{}
		err  error
	}
	pods := make([]*pod, n)
	defer func() { // whatever happened: nothing stays running
		var uuids []string
		for _, p := range pods {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
			default:
				if b, err := os.ReadFile(p.uf); err == nil {
					uuids = append(uuids, strings.TrimSpace(string(b)))
				}
			}
		}
		if len(uuids) > 0 {
			run(context.Background(), append([]string{e.Skiff, "--dir=" + e.SkiffDir, "stop", "--force"}, uuids...))
		}
		for _, p := range pods {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
		}
		run(context.Background(), []string{e.Skiff, "--dir=" + e.SkiffDir, "gc", "--grace-period=0s"})
	}()
	t0 := time.Now()
	for i := range pods {
		p := &pod{uf: filepath.Join(e.Tmp, fmt.Sprintf("many-%d.uuid", e.next())), done: make(chan struct{})}
		argv := e.skiffArgv(e.SkiffDir, e.Busybox, "none", appIdle, "--uuid-file-save="+p.uf)
		p.cmd = exec.Command(argv[0], argv[1:]...)
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := p.cmd.Start(); err != nil {
			return 0, 0, err
		}
		pods[i] = p
		go func() { p.err = p.cmd.Wait(); close(p.done) }()
	}
	uuids, errs := make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := waitUUID(ctx, p.uf, p.done)
			if err != nil {
				errs[i] = fmt.Errorf("pod %d of %d: %v: %s", i+1, n, err, tail(p.out.String()))
				return
			}
			uuids[i] = u
			if out, err := must(ctx, e.Skiff, "--dir="+e.SkiffDir, "status", "--wait-ready=60s", u); err != nil {
				errs[i] = fmt.Errorf("pod %d of %d (%s) not ready: %v: %s", i+1, n, u, err, tail(out+p.out.String()))
			}
		}()
	}
	wg.Wait()
	ready := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	if _, err := must(ctx, append([]string{e.Skiff, "--dir=" + e.SkiffDir, "stop"}, uuids...)...); err != nil {
		return 0, 0, fmt.Errorf("stop: %v", err)
	}
	for i, p := range pods {
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			return 0, 0, fmt.Errorf("pod %d of %d (%s) still running 60 s after stop", i+1, n, uuids[i])
		}
	}
	stopped := time.Since(t1)
	var failed []string
	for i, p := range pods {
		if p.err != nil {
			failed = append(failed, fmt.Sprintf("pod %d (%s): %v: %s", i+1, uuids[i], p.err, tail(p.out.String())))
		}
	}
	if len(failed) > 0 {
		return 0, 0, fmt.Errorf("%d of %d runs did not exit 0 after stop: %s", len(failed), n, strings.Join(failed, "; "))
	}
	return ready, stopped, nil
}

// lockedBuffer is a bytes.Buffer a command writes to while others read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitUUID waits (up to 60 s) for a run's --uuid-file-save file.
func waitUUID(ctx context.Context, file string, exited <-chan struct{}) (string, error) {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(file); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return strings.TrimSpace(string(b)), nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("run exited before it saved its UUID")
		default:
		}
	}
	return "", fmt.Errorf("no UUID in %s after 60 s", file)
}

// podmanMany is skiffMany's peer: n `podman run -d` at once (each returns
// once its container runs), then one `podman stop` of all of them.
func (e *Env) podmanMany(ctx context.Context, n int) (time.Duration, time.Duration, error) {
	pm := func(args ...string) []string { return append(append([]string(nil), e.Podman...), args...) }
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("skiffbench-many-%d", e.next())
	}
	defer run(context.Background(), pm(append([]string{"rm", "-f", "-t", "0"}, names...)...))
	errs := make([]error, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = must(ctx, pm(append([]string{"run", "-d", "--network=none", "--name", names[i], e.PodmanImg}, appIdle...)...)...)
		}()
	}
	wg.Wait()
	ready := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			return 0, 0, fmt.Errorf("container %d of %d: %v", i+1, n, err)
		}
	}
	t1 := time.Now()
	if _, err := must(ctx, pm(append([]string{"stop", "-t", "10"}, names...)...)...); err != nil {
		return 0, 0, fmt.Errorf("stop: %v", err)
	}
	stopped := time.Since(t1)
	out, err := must(ctx, pm("ps", "-a", "--filter", "name=skiffbench-many-", "--format", "{{.Names}} {{.State}} {{.ExitCode}}")...)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] != "0" {
			return 0, 0, fmt.Errorf("container %s exited %s after stop", f[0], f[2])
		}
	}
	return ready, stopped, nil
}
