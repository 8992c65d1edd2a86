//go:build functional

package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSoak drives skiff the way a busy host does, at random from a seed:
// concurrent runs with and without networks (some with a port binding, some
// with --private-users), stop,
// enter, fetches of one image from a loopback registry, gc and image gc in
// parallel with all of it, and SIGKILL of skiff run (before or after it
// became the stage1's run), of a pod's systemd (of QEMU in the kvm flavor),
// of fetch, of gc and of enter at random moments. Then one gc, and the host
// must be exactly as before for every pod the soak made: no pod directory,
// no mount, no cgroup in any hierarchy, no netns, no iptables rule, no IPAM
// or uid-range lease, no process; and the store verifies.
//
// SKIFF_SOAK_OPS (default 30; 12 for kvm), SKIFF_SOAK_KILLS (default a fifth
// of the operations), SKIFF_SOAK_PAR (operations at once, default 3) and
// SKIFF_SOAK_SEED (default: from the clock; printed, so that a failure can be
// replayed) shape it; `make soak` runs a long one.
func TestSoak(t *testing.T) {
	e := newEnv(t)
	kvm := strings.Contains(e.flavor(), "kvm")
	ops := soakEnv("SKIFF_SOAK_OPS", 30)
	if kvm && os.Getenv("SKIFF_SOAK_OPS") == "" {
		ops = 12
	}
	kills := min(soakEnv("SKIFF_SOAK_KILLS", ops/5), ops)
	par := 3
	if kvm {
		par = 2 // each VM is a TCG-emulated machine on this host's cores
	}
	par = max(soakEnv("SKIFF_SOAK_PAR", par), 1)
	seed := uint64(soakEnv("SKIFF_SOAK_SEED", int(time.Now().UnixNano()%1_000_000_000)))
	fmt.Fprintf(os.Stderr, "soak: seed %d, %d operations, %d kills, %d at once, flavor %s (replay with SKIFF_SOAK_SEED=%d)\n",
		seed, ops, kills, par, e.flavor(), seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("soak seed %d: replay with SKIFF_SOAK_SEED=%d SKIFF_SOAK_OPS=%d SKIFF_SOAK_KILLS=%d SKIFF_SOAK_PAR=%d",
				seed, seed, ops, kills, par)
		}
	})
	opTimeout := 2 * time.Minute
	if kvm {
		opTimeout = 10 * time.Minute
	}

	fr := newFakeRegistry(t, filepath.Join(e.images, "busybox.oci.tar"))
	e.ok("--insecure-options=image", "fetch", e.image("busybox"))
	s := &soak{e: e, t: t, uuids: map[string]bool{}, timeout: opTimeout, kvm: kvm}
	stopScan := s.scanPods()

	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	plan := make([]soakOp, ops)
	for _, k := range rng.Perm(ops)[:kills] {
		plan[k].kill = true
	}
	for i := range plan {
		p := &plan[i]
		p.n, p.kind = i, soakKinds[rng.IntN(len(soakKinds))]
		p.net = []string{"--net=none", "--net=default"}[rng.IntN(2)]
		p.users = !kvm && rng.IntN(6) == 0
		p.delay = time.Duration(rng.IntN(1500)) * time.Millisecond
		p.pick, p.arg = rng.Uint64(), rng.IntN(1000)
		if p.kill && p.kind.name == "stop" || p.kill && p.kind.name == "image-gc" {
			p.kind = soakKinds[0] // a run to kill instead
		}
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range plan {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			plan[i].kind.do(s, &plan[i], fr)
		})
	}
	wg.Wait()
	// What is still running is killed the hard way: gc must cope.
	s.mu.Lock()
	live := s.live
	s.live = nil
	s.mu.Unlock()
	for _, l := range live {
		_ = l.p.cmd.Process.Signal(syscall.SIGKILL)
		<-l.p.done
		l.p.cancel()
	}
	stopScan()

	r := e.skiff("gc", "--grace-period=0s")
	if r.code != 0 {
		t.Errorf("gc after the soak: exit %d\n%s", r.code, r.stderr)
	}
	s.checkHost()
	if out := e.skiff("image", "verify"); out.code != 0 || !strings.Contains(out.stdout, "all blobs match") {
		t.Errorf("image verify after the soak: exit %d %q %q", out.code, out.stdout, out.stderr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("soak: %d pods; %s", len(s.uuids), strings.Join(s.summary(), ", "))
}

func soakEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

type soak struct {
	e       *env
	t       *testing.T
	timeout time.Duration
	kvm     bool
	mu      sync.Mutex
	uuids   map[string]bool // every pod the soak made
	live    []*soakPod      // long-running pods
	counts  map[string]int  // op outcome -> count
}

type soakPod struct {
	p    *soakProc
	uuid string
	op   *soakOp // its run's: its output tells a failure's story
}

// soakProc is a skiff the soak started; done is closed once it is waited for.
type soakProc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	cancel context.CancelFunc
	ctx    context.Context
	err    error
}

// cancelled tells whether the soak's bound ended the command.
func (p *soakProc) cancelled() bool { return p.ctx.Err() != nil }

func (p *soakProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

type soakOp struct {
	n      int
	kind   soakKind
	kill   bool
	net    string
	users  bool
	delay  time.Duration
	pick   uint64
	arg    int
	mu     sync.Mutex // guards output while the command runs
	output bytes.Buffer
}

func (op *soakOp) outputString() string {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.output.String()
}

type soakKind struct {
	name string
	do   func(s *soak, op *soakOp, fr *fakeRegistry)
}

// soakKinds: what an operation does, drawn uniformly (runs weigh more).
var soakKinds = []soakKind{
	{"run", (*soak).run}, {"run", (*soak).run}, {"run-long", (*soak).runLong}, {"run-long", (*soak).runLong},
	{"stop", (*soak).stop}, {"enter", (*soak).enter}, {"fetch", (*soak).fetch}, {"gc", (*soak).gc},
	{"image-gc", (*soak).imageGC},
}

func (s *soak) count(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts == nil {
		s.counts = map[string]int{}
	}
	s.counts[what]++
}

func (s *soak) summary() []string {
	var out []string
	for k, v := range s.counts {
		out = append(out, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(out)
	return out
}

// start starts skiff with args, bounded by the soak's timeout (then killed).
func (s *soak) start(op *soakOp, args ...string) *soakProc {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	c := exec.CommandContext(ctx, s.e.bin, append(s.e.globals(), args...)...)
	w := &syncWriter{mu: &op.mu, b: &op.output}
	c.Stdout, c.Stderr = w, w
	if err := c.Start(); err != nil {
		s.t.Errorf("op %d: start %v: %v", op.n, args, err)
		cancel()
		return nil
	}
	p := &soakProc{cmd: c, done: make(chan struct{}), cancel: cancel, ctx: ctx}
	go func() { p.err = c.Wait(); close(p.done) }()
	return p
}

// finish waits for p and checks that skiff did not crash: a panic or a Go
// runtime error is a failure whatever the operation.
func (s *soak) finish(op *soakOp, p *soakProc, killed bool) int {
	<-p.done
	timedOut := p.cancelled()
	p.cancel()
	code := p.cmd.ProcessState.ExitCode()
	if timedOut && !killed {
		s.t.Errorf("op %d (%s) did not end within %s (a hang, or a host far too busy):\n%s", op.n, op.kind.name, s.timeout, op.outputString())
		return -1
	}
	out := op.output.String()
	if strings.Contains(out, "panic:") || strings.Contains(out, "fatal error:") || strings.Contains(out, "goroutine ") {
		s.t.Errorf("op %d (%s): skiff crashed: %v\n%s", op.n, op.kind.name, p.err, out)
	}
	if code != 0 && !killed && op.kind.name != "run" {
		s.t.Logf("op %d (%s): exit %d: %s", op.n, op.kind.name, code, strings.TrimSpace(lastLines(out, 3)))
	}
	what := op.kind.name
	if killed {
		what += " killed"
	} else if code != 0 {
		what += " exit " + strconv.Itoa(code)
	}
	s.count(what)
	return code
}

func (s *soak) runArgs(op *soakOp, extra ...string) []string {
	a := []string{"--insecure-options=image", "run"}
	a = append(a, s.e.stage1...)
	a = append(a, op.net)
	if op.users {
		a = append(a, "--private-users")
	}
	return append(append(a, extra...), s.e.image("busybox"))
}

// run: a short pod (maybe killed at a random moment of its life).
func (s *soak) run(op *soakOp, _ *fakeRegistry) {
	args := append(s.runArgs(op), "--", "/bin/sh", "-c", fmt.Sprintf("sleep 0.%03d; exit %d", op.arg, op.arg%3))
	p := s.start(op, args...)
	if p == nil {
		return
	}
	if op.kill {
		time.Sleep(op.delay)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	// Killed, it may still have ended on its own first; otherwise its exit
	// is the app's, never a false one.
	if code := s.finish(op, p, op.kill); !op.kill && code >= 0 && code != op.arg%3 {
		s.t.Errorf("op %d (run): exit %d, want the app's %d:\n%s", op.n, code, op.arg%3, op.output.String())
	}
}

// runLong: a pod that stays (until a stop, a kill or the end of the soak);
// killed, it is its systemd (or QEMU) that gets the SIGKILL, or run itself.
func (s *soak) runLong(op *soakOp, _ *fakeRegistry) {
	uf := filepath.Join(s.t.TempDir(), "uuid")
	extra := []string{"--uuid-file-save=" + uf}
	if op.net == "--net=default" && op.arg%3 == 0 { // a port binding too (one port per operation)
		extra = append(extra, fmt.Sprintf("--port=%d:8080", 20000+op.n))
	}
	args := append(s.runArgs(op, extra...), "--", "/bin/sleep", "600")
	p := s.start(op, args...)
	if p == nil {
		return
	}
	var uuid string
	deadline := time.Now().Add(s.timeout / 2)
	for uuid == "" && time.Now().Before(deadline) && !p.exited() {
		if b, err := os.ReadFile(uf); err == nil && len(b) >= 36 {
			uuid = strings.TrimSpace(string(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if op.kill {
		time.Sleep(op.delay)
		target, what := p.cmd.Process.Pid, "run-long killed"
		if uuid != "" && op.pick%2 == 0 {
			if pid := s.podPid(uuid); pid > 0 {
				target, what = pid, "run-long pod-init killed"
			}
		}
		_ = syscall.Kill(target, syscall.SIGKILL)
		s.count(what)
		s.finish(op, p, true)
		return
	}
	if uuid == "" || p.exited() {
		s.finish(op, p, false)
		return
	}
	s.mu.Lock()
	s.live = append(s.live, &soakPod{p: p, uuid: uuid, op: op}) // waited for by stop, or at the end
	s.mu.Unlock()
}

// podPid is what a pod's stage1 kills it through: QEMU in the kvm flavor
// (its pid file), the pod's systemd otherwise (status).
func (s *soak) podPid(uuid string) int {
	r := s.e.skiff("status", "--format=json", uuid)
	var pid int
	if i := strings.Index(r.stdout, `"pid":`); i >= 0 {
		fmt.Sscanf(r.stdout[i+len(`"pid":`):], "%d", &pid)
	}
	return pid
}

func (s *soak) isLive(p *soakPod) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.live, p) && !p.p.exited()
}

// takeLive removes and returns a random long-running pod, if any.
func (s *soak) takeLive(pick uint64, remove bool) *soakPod {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.live) == 0 {
		return nil
	}
	i := int(pick % uint64(len(s.live)))
	p := s.live[i]
	if remove {
		s.live = slices.Delete(s.live, i, i+1)
	}
	return p
}

// stop: a long-running pod, gracefully or with --force.
func (s *soak) stop(op *soakOp, _ *fakeRegistry) {
	p := s.takeLive(op.pick, true)
	if p == nil {
		s.count("stop (nothing to stop)")
		return
	}
	args := []string{"stop", p.uuid}
	if op.arg%2 == 0 {
		args = []string{"stop", "--force", p.uuid}
	}
	if c := s.start(op, args...); c != nil {
		if code := s.finish(op, c, false); code != 0 && !p.p.exited() {
			s.t.Errorf("op %d: %v of a running pod: exit %d:\n%s", op.n, args, code, op.output.String())
			_ = p.p.cmd.Process.Kill()
		}
	}
	select {
	case <-p.p.done:
	case <-time.After(s.timeout):
		s.t.Errorf("op %d: pod %s still runs after %v", op.n, p.uuid, args)
		_ = p.p.cmd.Process.Kill()
		<-p.p.done
	}
	p.p.cancel()
}

// enter: a command in a long-running pod (maybe killed at a random moment).
func (s *soak) enter(op *soakOp, _ *fakeRegistry) {
	pod := s.takeLive(op.pick, false)
	if pod == nil {
		s.count("enter (nothing to enter)")
		return
	}
	p := s.start(op, "enter", pod.uuid, "--", "/bin/sh", "-c", fmt.Sprintf("sleep 0.%03d", op.arg))
	if p == nil {
		return
	}
	if op.kill {
		time.Sleep(op.delay / 2)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	// It may fail only when a stop took the pod meanwhile.
	if code := s.finish(op, p, op.kill); code != 0 && !op.kill && s.isLive(pod) {
		s.t.Errorf("op %d: enter of a running pod: exit %d:\n%s\nits run (op %d) so far:\n%s", op.n, code, op.output.String(), pod.op.n, pod.op.outputString())
	}
}

// fetch: the loopback registry's image, under one of a few tags.
func (s *soak) fetch(op *soakOp, fr *fakeRegistry) {
	p := s.start(op, "--insecure-options=image,http", "fetch", fmt.Sprintf("docker://%s/test/img:v%d", fr.host, op.arg%3))
	if p == nil {
		return
	}
	if op.kill {
		time.Sleep(op.delay / 4)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	s.mustSucceed(op, p)
}

func (s *soak) gc(op *soakOp, _ *fakeRegistry) {
	p := s.start(op, "gc", "--grace-period=0s")
	if p == nil {
		return
	}
	if op.kill {
		time.Sleep(op.delay / 4)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	s.mustSucceed(op, p)
}

func (s *soak) imageGC(op *soakOp, _ *fakeRegistry) {
	if p := s.start(op, "image", "gc", "--grace-period=0s"); p != nil {
		s.mustSucceed(op, p)
	}
}

// mustSucceed: fetch, gc and image gc work whatever runs beside them.
func (s *soak) mustSucceed(op *soakOp, p *soakProc) {
	if code := s.finish(op, p, op.kill); code != 0 && !op.kill {
		s.t.Errorf("op %d (%s): exit %d:\n%s", op.n, op.kind.name, code, op.output.String())
	}
}

// scanPods notes every pod directory that appears under --dir (a pod killed
// before its UUID file was written included) until stop is called.
func (s *soak) scanPods() (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, u := range s.e.podDirs() {
				s.mu.Lock()
				s.uuids[u] = true
				s.mu.Unlock()
			}
			select {
			case <-quit:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		for _, u := range s.e.podDirs() {
			s.uuids[u] = true
		}
	}
}

// checkHost: nothing of any of the soak's pods is left on the host.
func (s *soak) checkHost() {
	t := s.t
	s.mu.Lock()
	uuids := make([]string, 0, len(s.uuids))
	for u := range s.uuids {
		uuids = append(uuids, u)
	}
	s.mu.Unlock()
	if left := s.e.podDirs(); len(left) > 0 {
		t.Errorf("pod directories left after gc: %v", left)
	}
	for _, m := range mountsUnder(s.e.dir) {
		t.Errorf("mount left under --dir: %s", m)
	}
	mentions := func(text string) string {
		for _, u := range uuids {
			if strings.Contains(text, u) {
				return u
			}
		}
		return ""
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if u := mentions(sc.Text()); u != "" {
				t.Errorf("mount of pod %s left: %s", u, sc.Text())
			}
		}
	}
	for _, u := range uuids {
		for _, cg := range cgroupsOf(u) {
			t.Errorf("cgroup left: %s", cg)
		}
		if _, err := os.Lstat(filepath.Join("/run/skiff/netns", u)); err == nil {
			t.Errorf("netns of pod %s left in /run/skiff/netns", u)
		}
	}
	for _, tool := range []string{"iptables-save", "iptables-legacy-save"} {
		if out, err := exec.Command(tool).Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if u := mentions(line); u != "" {
					t.Errorf("%s: rule of pod %s left: %s", tool, u, line)
				}
			}
		}
	}
	for _, dir := range []string{"/var/lib/skiff/cni/networks", "/var/lib/skiff/userns"} {
		_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() || fi.Size() > 4096 {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil {
				if u := mentions(string(b)); u != "" {
					t.Errorf("lease of pod %s left: %s", u, p)
				}
			}
			return nil
		})
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || isZombie(pid) {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cg, _ := os.ReadFile("/proc/" + e.Name() + "/cgroup")
		if u := mentions(string(cmdline) + string(cg)); u != "" {
			t.Errorf("process %d of pod %s left: %q", pid, u, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// syncWriter serializes writes into a buffer shared by stdout and stderr.
type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
