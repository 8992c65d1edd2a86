package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// timelineLine is one line of skiff's --debug timeline (internal/timeline).
var timelineLine = regexp.MustCompile(`(?m)^(skiff|stage1): timeline ([0-9.]+) ms (.+)$`)

// phaseTimes is the timeline of one run: each phase's time since stage0
// started, in ms, in the order the phases came.
type phaseTimes struct {
	names []string
	ms    map[string]float64
}

// parseTimeline reads the timeline lines of one run's output.
func parseTimeline(out string) phaseTimes {
	t := phaseTimes{ms: map[string]float64{}}
	for _, m := range timelineLine.FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		name := m[1] + ": " + m[3]
		if _, seen := t.ms[name]; !seen {
			t.names = append(t.names, name)
		}
		t.ms[name] = v
	}
	return t
}

// timelineMode runs `skiff --debug run --net=none busybox -- /bin/true` n
// times (after one untimed run that imports the image) and prints the median
// time of each phase since stage0 started, and of the phase itself (since
// the phase before it), as a markdown table.
func timelineMode(ctx context.Context, e *Env, n int, w io.Writer) error {
	dir := e.newSkiffDir("skiff-timeline")
	argv := func() []string {
		a := e.skiffArgv(dir, e.Busybox, "none", appTrue)
		return append([]string{a[0], "--debug"}, a[1:]...)
	}
	if _, err := must(ctx, argv()...); err != nil {
		return fmt.Errorf("timeline warm-up: %v", err)
	}
	var order []string
	samples := map[string][]float64{}
	steps := map[string][]float64{}
	var walls, cpus []float64
	for i := 0; i < n && ctx.Err() == nil; i++ {
		out, d, cpu, err := runCPU(ctx, argv())
		if err != nil {
			return err
		}
		t := parseTimeline(out)
		if len(t.names) == 0 {
			return fmt.Errorf("no timeline lines in skiff --debug's output (a skiff without internal/timeline?): %s", tail(out))
		}
		prev := 0.0
		for _, name := range t.names {
			if _, ok := samples[name]; !ok {
				order = append(order, name)
			}
			samples[name] = append(samples[name], t.ms[name])
			steps[name] = append(steps[name], t.ms[name]-prev)
			prev = t.ms[name]
		}
		walls, cpus = append(walls, d.Seconds()*1000), append(cpus, cpu.Seconds()*1000)
		run(ctx, []string{e.Skiff, "--dir=" + dir, "gc", "--grace-period=0s"})
	}
	fmt.Fprintf(w, "timeline of `skiff --debug run --net=none busybox -- /bin/true`, medians of %d runs (load average %s)\n\n", len(walls), loadavg())
	fmt.Fprintln(w, "| phase (process: end of the phase) | ms since start | ms in the phase |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, name := range order {
		fmt.Fprintf(w, "| %s | %.1f | %.1f |\n", strings.ReplaceAll(name, "|", "\\|"), median(samples[name]), median(steps[name]))
	}
	fmt.Fprintf(w, "| skiffbench: skiff exited (wall clock from its exec) | %.1f | |\n", median(walls))
	fmt.Fprintf(w, "| CPU time of skiff and what it reaped (user+sys) | %.1f | |\n", median(cpus))
	return nil
}
