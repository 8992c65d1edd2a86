package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// memSample is the host memory of one idle pod's processes, in MiB.
type memSample struct{ pss, rss float64 }

// manyPods is the pod count of the pod-pss row that shows what each extra
// pod costs (PSS splits the pages pods share: the stage1 binary, systemd's
// and busybox's files). A row of 2 pods shows the first split.
const manyPods = 10

// memScenario measures one idle pod (/bin/sleep 60) per runtime, round-robin:
// skiff (its own process, which execs into stage1, plus everything below it:
// systemd and the app) against podman's conmon and the container's process.
// It yields two result groups: pod-pss (PSS: shared pages split between
// sharers, the fairer number) and pod-rss.
func memScenario(ctx context.Context, e *Env, iters int) []*Result {
	// The rows, in the order they are printed.
	const (
		one = iota
		podman
		two
		many
		supervisor // the supervisor's share of the one-pod row: measured with it
	)
	names := []string{one: "skiff", podman: "podman", two: "skiff, 2 pods at once (per pod)",
		many: fmt.Sprintf("skiff, %d pods at once (per pod)", manyPods), supervisor: "skiff's supervisor alone (stage1 run)"}
	var sup memSample // the last one-pod measurement's supervisor
	pods := func(n int) func(context.Context) (memSample, error) {
		return func(ctx context.Context) (memSample, error) {
			m, _, err := e.skiffMem(ctx, n)
			return m, err
		}
	}
	measure := []func(context.Context) (memSample, error){
		one: func(ctx context.Context) (memSample, error) {
			m, s, err := e.skiffMem(ctx, 1)
			sup = s
			return m, err
		},
		podman: func(ctx context.Context) (memSample, error) { return e.podmanMem(ctx) },
		two:    pods(2),
		many:   pods(manyPods),
	}
	pss, rss := make([]*Result, len(names)), make([]*Result, len(names))
	for i, n := range names {
		note := "idle pod running /bin/sleep, measured 12 s after it started; sum over the process tree"
		pss[i] = &Result{Scenario: "pod-pss", Runtime: n, Unit: "MiB", Status: "ok", Note: note}
		rss[i] = &Result{Scenario: "pod-rss", Runtime: n, Unit: "MiB", Status: "ok", Note: note}
	}
	for it := 0; it < iters && ctx.Err() == nil; it++ {
		for k := range names {
			i := (it + k) % len(names)
			if i == supervisor {
				continue
			}
			if !pss[i].ok() {
				continue
			}
			m, err := measure[i](ctx)
			if err != nil {
				pss[i].Status, rss[i].Status = "FAILED: "+err.Error(), "FAILED: "+err.Error()
				logf("pod-rss/%s: FAILED: %v", names[i], err)
				continue
			}
			pss[i].Samples = append(pss[i].Samples, m.pss)
			rss[i].Samples = append(rss[i].Samples, m.rss)
			if i == one {
				pss[supervisor].Samples = append(pss[supervisor].Samples, sup.pss)
				rss[supervisor].Samples = append(rss[supervisor].Samples, sup.rss)
			}
		}
	}
	noRatio := []*Runtime{one: {}, podman: {}, two: {NoRatio: true}, many: {NoRatio: true}, supervisor: {NoRatio: true}}
	for _, rs := range [][]*Result{pss, rss} {
		for _, r := range rs {
			summarize(r)
		}
		addRatios(rs, noRatio)
	}
	return append(pss, rss...)
}

// skiffMem starts n idle pods and returns the memory of one (the sum over
// every pod's process tree, divided by n) and of the first pod's supervisor
// alone (skiff's process, which execs into stage1 run).
func (e *Env) skiffMem(ctx context.Context, n int) (memSample, memSample, error) {
	type pod struct {
		uf   string
		cmd  *exec.Cmd
		out  *bytes.Buffer
		done chan error
	}
	var pods []*pod
	defer func() {
		for _, p := range pods {
			if b, err := os.ReadFile(p.uf); err == nil {
				run(context.Background(), []string{e.Skiff, "--dir=" + e.SkiffDir, "stop", strings.TrimSpace(string(b))})
			}
		}
		for _, p := range pods {
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
		}
	}()
	for range n {
		p := &pod{uf: filepath.Join(e.Tmp, fmt.Sprintf("rss-%d.uuid", e.next())), out: &bytes.Buffer{}, done: make(chan error, 1)}
		argv := e.skiffArgv(e.SkiffDir, e.Busybox, "none", []string{"/bin/sleep", "120"}, "--uuid-file-save="+p.uf)
		p.cmd = exec.Command(argv[0], argv[1:]...)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := p.cmd.Start(); err != nil {
			return memSample{}, memSample{}, err
		}
		go func() { p.done <- p.cmd.Wait() }()
		pods = append(pods, p)
	}
	var total memSample
	for _, p := range pods {
		root := p.cmd.Process.Pid
		tree, err := waitForSleep(ctx, root, p.done)
		if err != nil {
			return memSample{}, memSample{}, fmt.Errorf("%v: %s", err, tail(p.out.String()))
		}
		// The pod's pid file names the pod's init: it must be one of skiff's descendants.
		b, _ := os.ReadFile(p.uf)
		pidb, err := os.ReadFile(filepath.Join(e.SkiffDir, "pods/run", strings.TrimSpace(string(b)), "pid"))
		if err != nil {
			return memSample{}, memSample{}, fmt.Errorf("pod pid file: %v", err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
		if !contains(tree, pid) {
			return memSample{}, memSample{}, fmt.Errorf("pod pid %d is not below skiff (pid %d)", pid, root)
		}
	}
	sleepCtx(ctx, idleSettle) // the pods started together: they idle together
	for _, p := range pods {  // all settled: now the shares are final
		m := memOf(descendants(p.cmd.Process.Pid))
		total.pss, total.rss = total.pss+m.pss, total.rss+m.rss
	}
	sup := memOf([]int{pods[0].cmd.Process.Pid})
	return memSample{total.pss / float64(n), total.rss / float64(n)}, sup, nil
}

func (e *Env) podmanMem(ctx context.Context) (memSample, error) {
	name := fmt.Sprintf("skiffbench-rss-%d", e.next())
	a := append(append([]string(nil), e.Podman...), "run", "-d", "--network=none", "--name", name, e.PodmanImg, "/bin/sleep", "60")
	if _, err := must(ctx, a...); err != nil {
		return memSample{}, err
	}
	defer run(context.Background(), append(append([]string(nil), e.Podman...), "rm", "-f", "-t", "0", name))
	out, err := must(ctx, append(append([]string(nil), e.Podman...), "inspect", "--format", "{{.State.ConmonPid}}", name)...)
	if err != nil {
		return memSample{}, err
	}
	conmon, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || conmon <= 0 {
		return memSample{}, fmt.Errorf("conmon pid %q", out)
	}
	if _, err := waitForSleep(ctx, conmon, nil); err != nil {
		return memSample{}, err
	}
	sleepCtx(ctx, idleSettle)
	return memOf(descendants(conmon)), nil
}

// idleSettle is how long a pod runs its idle app before it is measured, under
// every runtime: an idle pod, not one that has just started. skiff pages out
// the file pages of an idle pod's systemd 10 s after the pod is ready (stage1's
// idleAfter).
const idleSettle = 12 * time.Second

// waitForSleep waits (up to 30 s) until a process named "sleep" runs below
// root; it returns the tree.
func waitForSleep(ctx context.Context, root int, exited <-chan error) ([]int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("exited early (%v)", err)
		default:
		}
		tree := descendants(root)
		for _, p := range tree {
			if comm(p) == "sleep" {
				return tree, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("no sleep process below pid %d after 30s", root)
}

// descendants returns root and every process below it.
func descendants(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // state ppid ...
		if len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// memOf sums Pss and Rss from smaps_rollup over pids, in MiB.
func memOf(pids []int) memSample {
	var m memSample
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "Pss:":
				m.pss += kb / 1024
			case "Rss:":
				m.rss += kb / 1024
			}
		}
	}
	return m
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
