package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// A Runtime is one contender in a scenario: how to run a command in it and how
// to tell that it really did.
type Runtime struct {
	Name string
	// NA, when set, means the runtime cannot run this scenario yet; the table
	// shows "n/a (NA)" instead of a time.
	NA string
	// Argv turns the app's command (e.g. /bin/true) into this runtime's command line.
	Argv func(app []string) []string
	// Check, if set, validates a timed run's combined output (exit 0 is always required).
	Check func(out string) error
	// Before, if set, runs untimed before every timed run (e.g. to repopulate pods).
	Before func() error
	// NoRatio marks a cost line (e.g. the crun wrapper alone): no skiff/peer ratio.
	NoRatio bool
	Note    string // shown in the markdown and JSON (default: the scenario's note)
}

// A Scenario is timed by running each of its runtimes round-robin, Iter times.
// The first runtime is the baseline of the ratio column (normally skiff).
type Scenario struct {
	Name string
	App  []string // the command the app runs in every timed run
	// Probe is an untimed command run once per runtime before timing, whose
	// output must contain ProbeWant: it proves the runtime runs the app at all
	// (a runtime that exits 0 without running anything fails it).
	Probe     []string
	ProbeWant string
	Runtimes  []*Runtime
	Iter      int
	Warmup    int // untimed runs of App per runtime before timing
	Note      string
	After     func() // cleanup once the scenario is done (e.g. skiff gc)
}

// Result is one row of the report.
type Result struct {
	Scenario string    `json:"scenario"`
	Runtime  string    `json:"runtime"`
	Unit     string    `json:"unit"`   // "s" or "MiB"
	Status   string    `json:"status"` // "ok", "FAILED: ...", "n/a (...)"
	Samples  []float64 `json:"samples,omitempty"`
	Median   float64   `json:"median,omitempty"`
	// CPU is each timed run's CPU time (user+sys of the command and the
	// children it waited for), in seconds; CPUMedian its median. On a loaded
	// machine it is steadier than the wall-clock time.
	CPU       []float64 `json:"cpu_samples,omitempty"`
	CPUMedian float64   `json:"cpu_median,omitempty"`
	Min       float64   `json:"min,omitempty"`
	Max       float64   `json:"max,omitempty"`
	// Ratio is baseline median / this median (e.g. skiff/runc); 0 when none.
	Ratio    float64 `json:"ratio,omitempty"`
	Baseline string  `json:"baseline,omitempty"`
	// Overhead is the baseline's overhead over this row in % ((Ratio-1)*100),
	// set where the scenario is about it (kvm-boot); 0 when not.
	Overhead float64 `json:"overhead_pct,omitempty"`
	Note     string  `json:"note,omitempty"`
}

func (r *Result) ok() bool { return r.Status == "ok" }

// runTimeout bounds every single command the harness runs.
var runTimeout = 90 * time.Second

// run executes argv with stdin from /dev/null and returns its combined output
// and wall-clock duration. It fails on a non-zero exit or a timeout; the
// whole process group is killed on timeout or cancellation.
func run(ctx context.Context, argv []string) (string, time.Duration, error) {
	out, d, _, err := runCPU(ctx, argv)
	return out, d, err
}

// runCPU is run that also returns the command's CPU time: user+sys of it and
// of the descendants it waited for (wait4's rusage).
func runCPU(ctx context.Context, argv []string) (string, time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	var cpu time.Duration
	if ps := cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %s", runTimeout)
	}
	if err != nil {
		return out.String(), d, cpu, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, tail(out.String()))
	}
	return out.String(), d, cpu, nil
}

// must runs a setup command and returns its output, or an error with its tail.
func must(ctx context.Context, argv ...string) (string, error) {
	out, _, err := run(ctx, argv)
	return out, err
}

// tail keeps the last lines of a command's output for error messages.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return strings.ReplaceAll(s, "\n", " | ")
}

// runScenario probes and warms up each runtime, then times them round-robin:
// iteration i starts with runtime i mod n, so no runtime is always first or
// last. A runtime that fails a probe or a run is marked FAILED and skipped.
func runScenario(ctx context.Context, sc *Scenario) []*Result {
	results := make([]*Result, len(sc.Runtimes))
	live := make([]bool, len(sc.Runtimes))
	for i, rt := range sc.Runtimes {
		results[i] = &Result{Scenario: sc.Name, Runtime: rt.Name, Unit: "s", Status: "ok", Note: sc.Note}
		if rt.Note != "" {
			results[i].Note = rt.Note
		}
		if rt.NA != "" {
			results[i].Status = "n/a (" + rt.NA + ")"
			continue
		}
		if err := prepareRuntime(ctx, sc, rt); err != nil {
			results[i].Status = "FAILED: " + err.Error()
			logf("%s/%s: FAILED: %v", sc.Name, rt.Name, err)
			continue
		}
		live[i] = true
	}
	n := len(sc.Runtimes)
	for it := 0; it < sc.Iter && ctx.Err() == nil; it++ {
		for k := 0; k < n; k++ {
			i := (it + k) % n
			if !live[i] {
				continue
			}
			d, cpu, err := timedRun(ctx, sc.Runtimes[i], sc.App)
			if err != nil {
				results[i].Status = "FAILED: " + err.Error()
				live[i] = false
				logf("%s/%s: FAILED: %v", sc.Name, sc.Runtimes[i].Name, err)
				continue
			}
			results[i].Samples = append(results[i].Samples, d.Seconds())
			results[i].CPU = append(results[i].CPU, cpu.Seconds())
		}
	}
	if sc.After != nil {
		sc.After()
	}
	for _, r := range results {
		summarize(r)
	}
	addRatios(results, sc.Runtimes)
	return results
}

// prepareRuntime runs the probe (output must contain ProbeWant) and the warm-up runs.
func prepareRuntime(ctx context.Context, sc *Scenario, rt *Runtime) error {
	if sc.Probe != nil {
		if rt.Before != nil {
			if err := rt.Before(); err != nil {
				return err
			}
		}
		out, _, err := run(ctx, rt.Argv(sc.Probe))
		if err != nil {
			return fmt.Errorf("probe: %v", err)
		}
		if !strings.Contains(out, sc.ProbeWant) {
			return fmt.Errorf("probe %q: output lacks %q: %s", strings.Join(sc.Probe, " "), sc.ProbeWant, tail(out))
		}
	}
	for w := 0; w < sc.Warmup; w++ {
		if _, _, err := timedRun(ctx, rt, sc.App); err != nil {
			return fmt.Errorf("warm-up: %v", err)
		}
	}
	return nil
}

func timedRun(ctx context.Context, rt *Runtime, app []string) (time.Duration, time.Duration, error) {
	if rt.Before != nil {
		if err := rt.Before(); err != nil {
			return 0, 0, err
		}
	}
	out, d, cpu, err := runCPU(ctx, rt.Argv(app))
	if err != nil {
		return 0, 0, err
	}
	if rt.Check != nil {
		if err := rt.Check(out); err != nil {
			return 0, 0, err
		}
	}
	return d, cpu, nil
}

func summarize(r *Result) {
	if len(r.Samples) == 0 {
		if r.ok() {
			r.Status = "FAILED: no samples"
		}
		return
	}
	s := append([]float64(nil), r.Samples...)
	sort.Float64s(s)
	r.Min, r.Max = s[0], s[len(s)-1]
	r.Median = median(r.Samples)
	if len(r.CPU) > 0 {
		r.CPUMedian = median(r.CPU)
	}
}

// median of a non-empty sample.
func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// addRatios sets baseline/peer on every row after the first (the baseline).
func addRatios(results []*Result, rts []*Runtime) {
	if len(results) < 2 {
		return
	}
	base := results[0]
	for i, r := range results[1:] {
		r.Baseline = base.Runtime
		if base.ok() && r.ok() && r.Median > 0 && (rts == nil || !rts[i+1].NoRatio) {
			r.Ratio = base.Median / r.Median
		}
	}
}

// wantOutput returns a Check requiring s in the output.
func wantOutput(s string) func(string) error {
	return func(out string) error {
		if !strings.Contains(out, s) {
			return fmt.Errorf("output lacks %q: %s", s, tail(out))
		}
		return nil
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "skiffbench: "+format+"\n", a...)
}
