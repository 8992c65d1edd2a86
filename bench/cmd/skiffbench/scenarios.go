package main

import (
	"context"
	"fmt"
	"strings"
)

// iterations per scenario: quick (BENCH_QUICK=1) and full.
type iters struct{ quick, full int }

var (
	itRunTrue    = iters{5, 30}
	itRunNet     = iters{5, 20}
	itList       = iters{3, 10}
	itGC         = iters{1, 5}
	itMem        = iters{1, 3}
	itMany       = iters{1, 3} // start-50: each iteration starts and stops 50 pods per runtime
	itRunBig     = iters{5, 20}
	itFetchBig   = iters{1, 7} // each well under a second; 3 were too few to see a tenth of one
	itFetchNginx = iters{1, 5} // a second or two each
	itFirstRun   = iters{1, 3}
	itKVMBoot    = iters{2, 5} // each boot takes seconds under TCG
	itKVMWarm    = iters{0, 1} // warm-ups after the probe (a full boot already)
)

func (i iters) n(quick bool) int {
	if quick {
		return i.quick
	}
	return i.full
}

const marker = "skiffbench-ok"

var (
	appTrue  = []string{"/bin/true"}
	probeOK  = []string{"/bin/echo", marker}
	probeNet = []string{"/bin/cat", "/proc/net/dev"}
)

// startScenarios are the start→exit comparisons of skiff against its peers.
func startScenarios(e *Env, quick bool) []*Scenario {
	skiff := func(net, image string) func([]string) []string {
		return func(app []string) []string { return e.skiffArgv(e.SkiffDir, image, net, app) }
	}
	runTrue := &Scenario{
		Name: "run-true", App: appTrue, Probe: probeOK, ProbeWant: marker, Warmup: 1, Iter: itRunTrue.n(quick),
		Runtimes: []*Runtime{
			{Name: "skiff", Argv: skiff("none", e.Busybox)},
			{Name: "runc", Argv: e.runcArgv},
			{Name: "crun (wrapped)", Argv: e.crunArgv},
			{Name: "crun wrapper alone", Argv: func(app []string) []string { return append([]string{e.Wrapper}, app...) }, NoRatio: true,
				Note: "cost of crun's mount-ns wrapper alone (runs the host's command), included in crun's time"},
			{Name: "podman --network=none", Argv: func(app []string) []string { return e.podmanArgv("none", app) }},
			{Name: "nspawn --boot", Argv: e.nspawnBootArgv},
			{Name: "nspawn", Argv: e.nspawnArgv},
		},
	}
	runNet := &Scenario{
		Name: "run-net", App: appTrue, Probe: probeNet, ProbeWant: "eth0", Warmup: 1, Iter: itRunNet.n(quick),
		Note: "default network (podman: CNI bridge)",
		Runtimes: []*Runtime{
			{Name: "skiff", Argv: skiff("default", e.Busybox)},
			{Name: "podman (CNI bridge)", Argv: func(app []string) []string { return e.podmanArgv("", app) }},
		},
	}
	reg := &fetchRegistry{e: e}
	fetchBig := e.fetchScenario(reg, "fetch-big", e.Big, "big", "~100 MB, 5 layers of random data (gzip stores it), from a loopback registry into an empty store",
		"", itFetchBig.n(quick))
	fetchNginx := e.fetchScenario(reg, "fetch-nginx", e.Nginx, "nginx", "Debian's nginx image (55 MB of gzip, 145 MB, 7,000 files), from the same registry",
		"no "+e.Nginx+": make test-images builds it", itFetchNginx.n(quick))
	runBig := &Scenario{
		Name: "run-big", App: appTrue, Probe: probeOK, ProbeWant: marker, Warmup: 1, Iter: itRunBig.n(quick),
		Note: "image already imported: rendering should not grow with image size",
		Runtimes: []*Runtime{
			{Name: "skiff big (~100 MB)", Argv: skiff("none", e.Big)},
			{Name: "skiff busybox (1 MB)", Argv: skiff("none", e.Busybox)},
		},
	}
	// First run into an empty --dir: includes importing (hashing, extracting) the image.
	fresh := func(image string) func([]string) []string {
		return func(app []string) []string {
			return e.skiffArgv(e.newSkiffDir(fmt.Sprintf("skiff-fresh-%d", e.next())), image, "none", app)
		}
	}
	firstRun := &Scenario{
		Name: "first-run-big", App: appTrue, Iter: itFirstRun.n(quick),
		Note: "empty skiff --dir: includes the image import",
		Runtimes: []*Runtime{
			{Name: "skiff big (~100 MB)", Argv: fresh(e.Big)},
			{Name: "skiff busybox (1 MB)", Argv: fresh(e.Busybox)},
		},
	}
	gc := func() { run(context.Background(), []string{e.Skiff, "--dir=" + e.SkiffDir, "gc", "--grace-period=0s"}) }
	runTrue.After, runNet.After, runBig.After = gc, gc, gc
	return []*Scenario{runTrue, runNet, fetchBig, fetchNginx, runBig, firstRun}
}

// podScenarios time skiff list and gc over 1,000 exited pods (no peer).
func podScenarios(e *Env, farm *PodFarm, quick bool) []*Scenario {
	const n = 1000
	list := &Scenario{
		Name: "list-1000", Iter: itList.n(quick), Note: "1,000 exited pods (copies of one real pod)",
		Runtimes: []*Runtime{{
			Name: "skiff",
			Argv: func([]string) []string { return []string{e.Skiff, "--dir=" + farm.Dir, "list"} },
			Check: func(out string) error {
				if c := strings.Count(out, " exited "); c != n {
					return fmt.Errorf("list shows %d exited pods, want %d", c, n)
				}
				return nil
			},
			Before: func() error {
				if farm.Count("run") == n {
					return nil
				}
				return farm.Populate(n - farm.Count("run"))
			},
		}},
	}
	gc := &Scenario{
		Name: "gc-1000", Iter: itGC.n(quick),
		Note: "one `gc --grace-period=0s` pass: with a zero grace period it marks and sweeps in the same pass",
		Runtimes: []*Runtime{{
			Name: "skiff",
			Argv: func([]string) []string { return []string{e.Skiff, "--dir=" + farm.Dir, "gc", "--grace-period=0s"} },
			Check: func(out string) error {
				if c := strings.Count(out, "removed "); c != n {
					return fmt.Errorf("gc removed %d pods, want %d: %s", c, n, tail(out))
				}
				if left := farm.Count("run") + farm.Count("exited-garbage") + farm.Count("garbage"); left != 0 {
					return fmt.Errorf("%d pods left after gc", left)
				}
				return nil
			},
			Before: func() error { return farm.Populate(n - farm.Count("run")) },
		}},
	}
	return []*Scenario{list, gc}
}
