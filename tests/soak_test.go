//go:build functional

package tests

import (
	"bufio"
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"crypto/sha512"
	"fmt"
	"math/rand/v2"
	"net"
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
	s := &soak{e: e, t: t, uuids: map[string]bool{}, timeout: opTimeout, kvm: kvm,
		localnet: localnetChain, leaseDirs: soakLeaseDirs}
	s.before = s.snapshotHost()
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
	s.checkHost(t)
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
	e         *env
	t         *testing.T
	timeout   time.Duration
	kvm       bool
	mu        sync.Mutex
	uuids     map[string]bool // every pod the soak made
	live      []*soakPod      // long-running pods
	before    hostSnapshot    // what the host had before the soak
	localnet  string          // the host-wide loopback guard chain (localnetChain)
	leaseDirs []string        // where IPAM and uid-range leases are (soakLeaseDirs)
	counts    map[string]int  // op outcome -> count
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
		s.t.Errorf("op %d (run): exit %d, want the app's %d:\n%s\n(%s)", op.n, code, op.arg%3, op.output.String(), inotifyUse())
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

// errorer is where checkHost reports what it finds: the soak's test, or
// TestSoakHostChecksFindEachLeak's recorder.
type errorer interface {
	Errorf(format string, args ...any)
}

// checkHost: nothing of any of the soak's pods is left on the host.
func (s *soak) checkHost(t errorer) {
	s.mu.Lock()
	uuids := make([]string, 0, len(s.uuids))
	for u := range s.uuids {
		uuids = append(uuids, u)
	}
	s.mu.Unlock()
	if left := s.e.podDirs(); len(left) > 0 {
		var why []string
		for _, u := range left {
			why = append(why, describePodDir(s.e.dir, u))
		}
		t.Errorf("pod directories left after gc: %v\n%s", left, strings.Join(why, "\n"))
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
	// Rules name the pod; the per-pod chains (CNI's, the pod's network
	// name and UUID hashed) may be left empty, so they are looked for by
	// name too.
	chains := map[string]string{}
	for _, u := range uuids {
		for _, c := range cniChains("default", u) {
			chains[c] = u
		}
	}
	for _, tool := range []string{"iptables-save", "iptables-legacy-save"} {
		if out, err := exec.Command(tool).Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if u := mentions(line); u != "" {
					t.Errorf("%s: rule of pod %s left: %s", tool, u, line)
				}
				if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], ":") && chains[f[0][1:]] != "" {
					t.Errorf("%s: chain %s of pod %s left", tool, f[0][1:], chains[f[0][1:]])
				}
			}
		}
	}
	// The host-wide loopback guard holds its one rule, as before the soak.
	for _, r := range localnetRules(s.localnet) {
		if !s.before.localnet[r] && !strings.Contains(r, "CVE-2020-8558") {
			t.Errorf("rule left in %s: %s", s.localnet, r)
		}
	}
	// Host links of skiff's kinds (the host end of a pod's veth; taps)
	// that were not there before: a pod of another test running now has
	// its address leased to its own UUID, so is not the soak's.
	var links []string
	for l := range skiffLinks() {
		if !s.before.links[l] && !s.otherPodsLink(l, mentions) {
			links = append(links, l)
		}
	}
	if len(links) > 0 {
		// Another test's pod may be between its veth and its lease, or
		// tearing down: look again a little later.
		time.Sleep(2 * time.Second)
		now := skiffLinks()
		for _, l := range links {
			if now[l] && !s.otherPodsLink(l, mentions) {
				t.Errorf("link %s left on the host (not there before the soak)", l)
			}
		}
	}
	for _, dir := range s.leaseDirs {
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

// hostSnapshot is what the soak's final check compares the host with:
// host-wide things other tests (or the host) may have had before.
type hostSnapshot struct {
	links    map[string]bool // skiffLinks
	localnet map[string]bool // localnetRules
}

func (s *soak) snapshotHost() hostSnapshot {
	h := hostSnapshot{links: skiffLinks(), localnet: map[string]bool{}}
	for _, r := range localnetRules(s.localnet) {
		h.localnet[r] = true
	}
	return h
}

const localnetChain = "SKIFF-LOCALNET"

// soakLeaseDirs hold the host's IPAM leases (of the built-in networks) and
// uid-range leases, each a small file naming its pod.
var soakLeaseDirs = []string{"/var/lib/skiff/cni/networks", "/var/lib/skiff/userns"}

// localnetRules are the rules of chain (skiff's host-wide loopback guard),
// in every iptables flavor the host has.
func localnetRules(chain string) []string {
	var rules []string
	for _, tool := range []string{"iptables", "iptables-legacy"} {
		out, err := exec.Command(tool, "-w", "-S", chain).Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") {
				rules = append(rules, tool+": "+line)
			}
		}
	}
	return rules
}

// skiffLinks are the host's links of the kinds skiff's pods make: the host
// ends of CNI's veths ("veth" and 8 hex digits) and taps.
func skiffLinks() map[string]bool {
	links := map[string]bool{}
	ents, _ := os.ReadDir("/sys/class/net")
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "veth") || strings.HasPrefix(n, "tap") {
			links[n] = true
		}
	}
	return links
}

// otherPodsLink tells whether host link l routes to an address leased to a
// pod that is not the soak's (mentions finds the soak's UUIDs).
func (s *soak) otherPodsLink(l string, mentions func(string) string) bool {
	out, err := exec.Command("ip", "-o", "route", "show", "dev", l).Output()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ip := strings.TrimSuffix(f[0], "/32")
		leases, _ := filepath.Glob(filepath.Join("/var/lib/skiff/cni/networks", "*", ip))
		for _, lease := range leases {
			if b, err := os.ReadFile(lease); err == nil && len(b) > 0 && mentions(string(b)) == "" {
				return true
			}
		}
	}
	return false
}

// cniChains are the names of the iptables chains CNI makes for a pod on
// network name (its ipMasq chain, its portmap DNAT chain): a prefix and the
// SHA-512 of the network's name and the pod's UUID, cut to 28 characters.
func cniChains(name, uuid string) []string {
	h := fmt.Sprintf("%x", sha512.Sum512([]byte(name+uuid)))
	return []string{"CNI-" + h[:24], "CNI-DN-" + h[:21]}
}

// inotifyUse tells how many inotify instances root's processes hold against
// the per-user limit: each pod's systemd takes some, and a pod whose systemd
// finds none left exits 255 before its apps start, saying nothing.
func inotifyUse() string {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if fi, err := os.Stat(p); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			continue
		}
		fds, _ := os.ReadDir(p + "/fd")
		for _, fd := range fds {
			if l, err := os.Readlink(p + "/fd/" + fd.Name()); err == nil && l == "anon_inode:inotify" {
				n++
			}
		}
	}
	max, _ := os.ReadFile("/proc/sys/fs/inotify/max_user_instances")
	return fmt.Sprintf("root's processes hold %d inotify instances; fs.inotify.max_user_instances is %s", n, strings.TrimSpace(string(max)))
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

// TestSoakHostChecksFindEachLeak proves the soak's final check fires: for
// each kind of thing a pod can leave on the host it makes one, after the
// soak's snapshot, for a pod UUID of its own, and checkHost must name it;
// with nothing made, checkHost must find nothing. The loopback guard chain
// and the lease directories are the test's own, so that no other test's
// pods see them.
func TestSoakHostChecksFindEachLeak(t *testing.T) {
	e := newEnv(t)
	uuid := fakePodUUID(t)
	tmp := t.TempDir()
	s := &soak{e: e, t: t, uuids: map[string]bool{uuid: true}, localnet: "SOAKTEST-" + uuid[:8],
		leaseDirs: []string{filepath.Join(tmp, "networks"), filepath.Join(tmp, "userns")}}
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	quiet := func(args ...string) { _ = exec.Command(args[0], args[1:]...).Run() }
	// The guard chain with its one rule, as skiff makes it.
	sh("iptables", "-w", "-N", s.localnet)
	t.Cleanup(func() { quiet("iptables", "-w", "-F", s.localnet); quiet("iptables", "-w", "-X", s.localnet) })
	sh("iptables", "-w", "-A", s.localnet, "-d", "127.0.0.0/8", "-m", "comment", "--comment", "soak test: CVE-2020-8558", "-j", "RETURN")
	s.before = s.snapshotHost()

	var rec soakRecorder
	s.checkHost(&rec)
	if len(rec.msgs) > 0 {
		t.Fatalf("nothing was left, yet checkHost reports: %q", rec.msgs)
	}
	tag := uuid[:8]
	cgroupHier, _ := filepath.Glob("/sys/fs/cgroup/*/skiff")
	leaks := []struct {
		name, want string
		make       func() (undo func())
	}{
		{"pod directory", "pod directories left after gc: [" + uuid, func() func() {
			d := filepath.Join(e.dir, "pods", "garbage", uuid)
			sh("mkdir", "-p", d)
			return func() { os.RemoveAll(d) }
		}},
		{"mount under --dir", "mount left under --dir: " + e.dir + "/m", func() func() {
			d := filepath.Join(e.dir, "m")
			sh("mkdir", "-p", d)
			sh("mount", "-t", "tmpfs", "soaktest", d)
			return func() { quiet("umount", "-l", d) }
		}},
		{"mount naming the pod", "mount of pod " + uuid, func() func() {
			d := filepath.Join(tmp, uuid)
			sh("mkdir", "-p", d)
			sh("mount", "-t", "tmpfs", "soaktest", d)
			return func() { quiet("umount", "-l", d) }
		}},
		{"cgroup", "cgroup left: ", func() func() {
			if len(cgroupHier) == 0 {
				t.Fatal("no /sys/fs/cgroup/*/skiff to make a cgroup in")
			}
			d := filepath.Join(cgroupHier[0], uuid)
			sh("mkdir", d)
			return func() { os.Remove(d) }
		}},
		{"netns", "netns of pod " + uuid, func() func() {
			f := filepath.Join("/run/skiff/netns", uuid)
			sh("mkdir", "-p", "/run/skiff/netns")
			sh("touch", f)
			return func() { os.Remove(f) }
		}},
		{"rule naming the pod", "rule of pod " + uuid, func() func() {
			c := "SOAKTEST-R-" + tag
			sh("iptables", "-w", "-N", c)
			sh("iptables", "-w", "-A", c, "-s", "192.0.2.1/32", "-m", "comment", "--comment", "name: default id: "+uuid, "-j", "RETURN")
			return func() { quiet("iptables", "-w", "-F", c); quiet("iptables", "-w", "-X", c) }
		}},
		{"CNI chain", "chain " + cniChains("default", uuid)[0] + " of pod " + uuid, func() func() {
			c := cniChains("default", uuid)[0]
			sh("iptables", "-w", "-t", "nat", "-N", c)
			return func() { quiet("iptables", "-w", "-t", "nat", "-X", c) }
		}},
		{"CNI portmap chain", "chain " + cniChains("default", uuid)[1] + " of pod " + uuid, func() func() {
			c := cniChains("default", uuid)[1]
			sh("iptables", "-w", "-t", "nat", "-N", c)
			return func() { quiet("iptables", "-w", "-t", "nat", "-X", c) }
		}},
		{"loopback guard rule", "rule left in " + s.localnet, func() func() {
			sh("iptables", "-w", "-A", s.localnet, "-s", "192.0.2.1/32", "-j", "RETURN")
			return func() { quiet("iptables", "-w", "-D", s.localnet, "-s", "192.0.2.1/32", "-j", "RETURN") }
		}},
		{"IPAM lease", "lease of pod " + uuid, func() func() {
			d := filepath.Join(s.leaseDirs[0], "default")
			sh("mkdir", "-p", d)
			if err := os.WriteFile(filepath.Join(d, "192.0.2.7"), []byte(uuid+"\r\neth0"), 0o600); err != nil {
				t.Fatal(err)
			}
			return func() { os.RemoveAll(d) }
		}},
		{"uid-range lease", "lease of pod " + uuid, func() func() {
			sh("mkdir", "-p", s.leaseDirs[1])
			if err := os.WriteFile(filepath.Join(s.leaseDirs[1], "65536"), []byte(uuid), 0o600); err != nil {
				t.Fatal(err)
			}
			return func() { os.RemoveAll(s.leaseDirs[1]) }
		}},
		{"process", "of pod " + uuid + " left", func() func() {
			c := exec.Command("/bin/sleep", "600")
			c.Args[0] = "soaktest-" + uuid
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			return func() { _ = c.Process.Kill(); _ = c.Wait() }
		}},
		{"veth", "link veth" + tag + " left", func() func() {
			sh("ip", "link", "add", "veth"+tag, "type", "veth", "peer", "name", "vsoak"+tag)
			return func() { quiet("ip", "link", "del", "veth"+tag) }
		}},
		{"tap", "link tap" + tag + " left", func() func() {
			sh("ip", "tuntap", "add", "dev", "tap"+tag, "mode", "tap")
			return func() { quiet("ip", "tuntap", "del", "dev", "tap"+tag, "mode", "tap") }
		}},
	}
	for _, l := range leaks {
		undo := sync.OnceFunc(l.make())
		t.Cleanup(undo)
		var rec soakRecorder
		s.checkHost(&rec)
		undo()
		if !slices.ContainsFunc(rec.msgs, func(m string) bool { return strings.Contains(m, l.want) }) {
			t.Errorf("%s left on the host: checkHost did not say %q; it said %q", l.name, l.want, rec.msgs)
		}
	}
	var after soakRecorder
	s.checkHost(&after)
	if len(after.msgs) > 0 {
		t.Errorf("everything was undone, yet checkHost reports: %q", after.msgs)
	}
}

// soakRecorder collects what checkHost reports.
type soakRecorder struct{ msgs []string }

func (r *soakRecorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

// fakePodUUID is a random UUID no pod has.
func fakePodUUID(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := cryptorand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// TestSoakHostChecksSeeALivePod: a running pod on the default network with a
// port binding is, to the soak's final check, every leak at once (which
// proves the check knows the real names: CNI's portmap chain, the host veth,
// the lease; the default network has no per-pod masquerade chain, SKIFF-MASQ
// serves its whole subnet); once it is stopped and gc'd, the check finds
// nothing.
func TestSoakHostChecksSeeALivePod(t *testing.T) {
	e := newEnv(t)
	s := &soak{e: e, t: t, localnet: localnetChain, leaseDirs: soakLeaseDirs}
	s.before = s.snapshotHost()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	uuid, _, wait := e.startPod([]string{"--net=default", fmt.Sprintf("--port=%d:8080", port)}, e.image("busybox"), "--", "/bin/sleep", "600")
	s.uuids = map[string]bool{uuid: true}
	var rec soakRecorder
	s.checkHost(&rec)
	chains := cniChains("default", uuid)
	for _, want := range []string{"chain " + chains[1] + " of pod", "link veth", "lease of pod " + uuid,
		"cgroup left: ", "netns of pod " + uuid, "of pod " + uuid + " left: \"", "mount of pod " + uuid} {
		if !slices.ContainsFunc(rec.msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("a running pod: checkHost did not say %q; it said:\n%s", want, strings.Join(rec.msgs, "\n"))
		}
	}
	e.ok("stop", uuid)
	wait()
	e.ok("gc", "--grace-period=0s")
	rec.msgs = nil
	s.checkHost(&rec)
	if len(rec.msgs) > 0 {
		t.Errorf("the pod was stopped and gc'd, yet checkHost reports:\n%s", strings.Join(rec.msgs, "\n"))
	}
}

// describePodDir says, for a soak failure, where pod uuid is left and why gc
// may have passed it by: its state directory, age, entries, and the
// processes that hold a lock on it (from /proc/locks).
func describePodDir(dataDir, uuid string) string {
	matches, _ := filepath.Glob(filepath.Join(dataDir, "pods", "*", uuid))
	if len(matches) == 0 {
		return uuid + ": gone"
	}
	var b strings.Builder
	for _, dir := range matches {
		var st syscall.Stat_t
		if err := syscall.Lstat(dir, &st); err != nil {
			fmt.Fprintf(&b, "%s: %v\n", dir, err)
			continue
		}
		fmt.Fprintf(&b, "%s: state %s, mtime %s ago", uuid, filepath.Base(filepath.Dir(dir)),
			time.Since(time.Unix(st.Mtim.Sec, st.Mtim.Nsec)).Round(time.Millisecond))
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		fmt.Fprintf(&b, ", entries %v", names)
		locks, _ := os.ReadFile("/proc/locks")
		ino := ":" + strconv.FormatUint(st.Ino, 10) + " "
		for _, l := range strings.Split(string(locks), "\n") {
			f := strings.Fields(l)
			if len(f) < 6 || !strings.HasSuffix(f[5], ino[:len(ino)-1]) {
				continue
			}
			cmd, _ := os.ReadFile("/proc/" + f[4] + "/cmdline")
			status, _ := os.ReadFile("/proc/" + f[4] + "/status")
			state := ""
			for _, sl := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(sl, "State:") {
					state = strings.TrimSpace(strings.TrimPrefix(sl, "State:"))
				}
			}
			fmt.Fprintf(&b, "; locked (%s %s) by pid %s %q [%s]", f[1], f[3], f[4], strings.ReplaceAll(string(cmd), "\x00", " "), state)
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}
