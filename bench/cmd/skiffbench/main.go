// Command skiffbench times skiff side by side with runc, crun, podman and
// systemd-nspawn, alternating between runtimes on every iteration so machine
// noise hits all of them alike, and reports medians and skiff/peer ratios as a
// table, JSON, markdown and a gnuplot bar chart. scripts/bench builds and runs
// it (make bench); see bench/README.md. It must run as root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	var (
		e     Env
		quick = flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "few iterations (default from BENCH_QUICK=1)")
		out   = flag.String("out", "bench/results", "results directory")
		only  = flag.String("only", "", "comma-separated scenarios to run (default: all)")
		tl    = flag.Int("timeline", 0, "instead of the scenarios: run skiff --debug N times and print the median of each phase of its timeline")
	)
	flag.StringVar(&e.Skiff, "skiff", "bin/skiff", "skiff binary")
	flag.StringVar(&e.Stage1, "stage1", "bin/stage1-default.oci.tar", "stage1 image")
	flag.StringVar(&e.Busybox, "busybox", "build/images/busybox.oci.tar", "busybox OCI archive")
	flag.StringVar(&e.Nginx, "nginx", "build/images/nginx.oci.tar", "Debian nginx OCI archive (fetch-nginx; skipped when missing)")
	flag.StringVar(&e.Cache, "cache", "build/bench", "cache directory (the big image)")
	flag.StringVar(&e.KVMStage1, "stage1-kvm", "bin/stage1-kvm.oci.tar", "kvm stage1 image (kvm-boot; skipped when missing)")
	flag.StringVar(&e.KVMInit, "kvminit", "build/bench/kvminit", "static init of kvm-boot's bare QEMU boot (bench/cmd/kvminit)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "skiffbench: must run as root")
		os.Exit(2)
	}
	for _, p := range []*string{&e.Skiff, &e.Stage1, &e.Busybox, &e.Nginx, &e.Cache, &e.KVMStage1, &e.KVMInit, out} {
		a, err := filepath.Abs(*p)
		if err != nil {
			fatal(err)
		}
		*p = a
	}
	for _, p := range []string{e.Skiff, e.Stage1, e.Busybox} {
		if _, err := os.Stat(p); err != nil {
			fatal(fmt.Errorf("%v (run `make all test-images`)", err))
		}
	}
	if err := os.MkdirAll(e.Cache, 0o755); err != nil {
		fatal(err)
	}
	var err error
	if e.Tmp, err = os.MkdirTemp("", "skiffbench."); err != nil {
		fatal(err)
	}

	m := machine(e.Skiff, *quick) // before the private CONTAINERS_CONF is set
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *tl > 0 {
		err := timelineMode(ctx, &e, *tl, os.Stdout)
		e.cleanup()
		if err != nil {
			fatal(err)
		}
		return
	}
	results, err := benchAll(ctx, &e, *quick, *only)
	logf("cleaning up")
	e.cleanup()
	if err != nil {
		fatal(err)
	}
	if ctx.Err() != nil {
		fatal(fmt.Errorf("interrupted"))
	}
	m.LoadEnd = loadavg()
	fmt.Println()
	printTable(os.Stdout, m, results)
	files, err := writeResults(*out, m, results)
	if err != nil {
		fatal(err)
	}
	fmt.Println("\nwrote", strings.Join(files, " "))
}

// benchAll builds the shared inputs once and runs every scenario.
func benchAll(ctx context.Context, e *Env, quick bool, only string) ([]*Result, error) {
	want := func(name string) bool {
		return only == "" || strings.Contains(","+only+",", ","+name+",")
	}
	var results []*Result
	// The peers are built only for the scenarios that have peers, the big
	// image only for those that use it.
	start := want("run-true") || want("run-net") || want("fetch-big") || want("fetch-nginx") || want("run-big") || want("first-run-big")
	many := want(fmt.Sprintf("start-%d", startManyPods)) || want(fmt.Sprintf("stop-%d", startManyPods))
	if start || many || want("pod-rss") || want("pod-pss") {
		logf("building shared inputs in %s", e.Tmp)
		if err := e.setupPeers(ctx); err != nil {
			return nil, err
		}
	} else {
		e.SkiffDir = e.newSkiffDir("skiff")
	}
	if want("fetch-big") || want("run-big") || want("first-run-big") {
		if err := e.buildBig(ctx); err != nil {
			return nil, fmt.Errorf("big image: %v", err)
		}
	}
	if start {
		for _, sc := range startScenarios(e, quick) {
			if want(sc.Name) && ctx.Err() == nil {
				logf("scenario %s (%d iterations)", sc.Name, sc.Iter)
				results = append(results, runScenario(ctx, sc)...)
			}
		}
	}
	if (want("list-1000") || want("gc-1000")) && ctx.Err() == nil {
		farm, err := e.newPodFarm(ctx)
		for _, sc := range podScenarios(e, farm, quick) {
			if !want(sc.Name) {
				continue
			}
			if err != nil {
				results = append(results, &Result{Scenario: sc.Name, Runtime: "skiff", Unit: "s", Status: "FAILED: " + err.Error()})
				continue
			}
			logf("scenario %s (%d iterations)", sc.Name, sc.Iter)
			results = append(results, runScenario(ctx, sc)...)
		}
	}
	if (want("pod-rss") || want("pod-pss")) && ctx.Err() == nil {
		logf("scenario pod-rss (%d iterations)", itMem.n(quick))
		results = append(results, memScenario(ctx, e, itMem.n(quick))...)
		run(ctx, []string{e.Skiff, "--dir=" + e.SkiffDir, "gc", "--grace-period=0s"})
	}
	if many && ctx.Err() == nil {
		logf("scenario start-%d (%d iterations)", startManyPods, itMany.n(quick))
		results = append(results, manyScenario(ctx, e, itMany.n(quick))...)
	}
	if (want("kvm-boot") || want("kvm-boot-exit") || want("kvm-boot-rss")) && ctx.Err() == nil {
		logf("scenario kvm-boot (%d iterations)", itKVMBoot.n(quick))
		results = append(results, kvmScenario(ctx, e, itKVMBoot.n(quick), itKVMWarm.n(quick))...)
	}
	return results, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "skiffbench:", err)
	os.Exit(1)
}
