package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"
)

// Machine describes where the numbers were taken.
type Machine struct {
	Date   string `json:"date"`
	CPUs   int    `json:"nproc"`
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
	Quick  bool   `json:"quick"`
	// LoadStart and LoadEnd are the load averages (1, 5, 15 min) when the
	// run began and ended: the machine may be shared.
	LoadStart string            `json:"loadavg_start"`
	LoadEnd   string            `json:"loadavg_end"`
	Versions  map[string]string `json:"versions"`
}

func machine(skiff string, quick bool) Machine {
	m := Machine{Date: time.Now().Format(time.RFC3339), CPUs: runtime.NumCPU(), Quick: quick, Versions: map[string]string{},
		LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	for name, argv := range map[string][]string{
		"skiff": {skiff, "version"}, "runc": {"runc", "--version"}, "crun": {"crun", "--version"},
		"podman": {"podman", "--version"}, "systemd-nspawn": {"systemd-nspawn", "--version"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).Output(); err == nil {
			m.Versions[name], _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
		}
	}
	return m
}

func (m Machine) String() string {
	mode := "full"
	if m.Quick {
		mode = "quick (BENCH_QUICK=1)"
	}
	return fmt.Sprintf("date %s, %s run; %d CPUs (%s), kernel %s; load average %s at start, %s at end",
		m.Date, mode, m.CPUs, m.CPU, m.Kernel, m.LoadStart, m.LoadEnd)
}

func fmtVal(v float64, unit string) string {
	if unit == "s" {
		return fmt.Sprintf("%.3fs", v)
	}
	return fmt.Sprintf("%.1f%s", v, unit)
}

// row returns the table cells of one result.
func row(r *Result) []string {
	ratio := ""
	switch {
	case r.Baseline == "" && r.ok() && r.Ratio == 0:
		ratio = "-"
	case r.Ratio > 0 && r.Overhead != 0:
		ratio = fmt.Sprintf("%.2fx (%+.0f%%)", r.Ratio, r.Overhead)
	case r.Ratio > 0:
		ratio = fmt.Sprintf("%.2fx", r.Ratio)
	}
	if !r.ok() {
		return []string{r.Scenario, r.Runtime, r.Status, "", "", "", "", ratio}
	}
	cpu := "-"
	if r.CPUMedian > 0 {
		cpu = fmtVal(r.CPUMedian, "s")
	}
	return []string{r.Scenario, r.Runtime, fmtVal(r.Median, r.Unit), cpu, fmtVal(r.Min, r.Unit), fmtVal(r.Max, r.Unit),
		fmt.Sprint(len(r.Samples)), ratio}
}

const legend = "skiff/peer = median of the scenario's first row / median of this row (2.00x: skiff takes twice as long\n" +
	"or uses twice the memory; run-big and first-run-big: the big image / busybox; kvm-boot*: skiff's kvm pod /\n" +
	"the bare QEMU boot, with skiff's overhead in %). cpu = median CPU time (user+sys of the command and of\n" +
	"the descendants reaped below it). Timings are never asserted."

var header = []string{"scenario", "runtime", "median", "cpu", "min", "max", "n", "skiff/peer"}

// printTable writes the aligned text table (long FAILED messages are cut; the JSON has them whole).
func printTable(w io.Writer, m Machine, results []*Result) {
	fmt.Fprintln(w, m)
	rows := [][]string{header}
	for _, r := range results {
		c := row(r)
		if len(c[2]) > 60 {
			c[2] = c[2][:60] + "…"
		}
		rows = append(rows, c)
	}
	width := make([]int, len(header))
	for _, c := range rows {
		for i, s := range c {
			if i < 2 || c[3] != "" { // a status message (n/a, FAILED) spans the value columns
				width[i] = max(width[i], utf8.RuneCountInString(s))
			}
		}
	}
	for k, c := range rows {
		if k > 1 && c[0] != rows[k-1][0] {
			fmt.Fprintln(w)
		}
		var line strings.Builder
		for i, s := range c {
			pad := strings.Repeat(" ", max(0, width[i]-utf8.RuneCountInString(s)))
			switch {
			case i < 2: // names: left-aligned
				line.WriteString(s + pad + "  ")
			case c[3] == "": // n/a or FAILED: the status, then nothing
				line.WriteString(s)
			default:
				line.WriteString(pad + s + "  ")
			}
			if i >= 2 && c[3] == "" {
				break
			}
		}
		fmt.Fprintln(w, strings.TrimRight(line.String(), " "))
	}
	fmt.Fprintln(w, "\n"+legend)
	for _, r := range results {
		if strings.HasPrefix(r.Status, "FAILED") && len(r.Status) > 60 {
			fmt.Fprintf(w, "%s/%s: %s\n", r.Scenario, r.Runtime, r.Status)
		}
	}
}

func markdown(m Machine, results []*Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# skiff bench\n\n%s\n\n", m)
	for _, k := range []string{"skiff", "runc", "crun", "podman", "systemd-nspawn"} {
		fmt.Fprintf(&b, "- %s: %s\n", k, m.Versions[k])
	}
	b.WriteString("\n| " + strings.Join(header, " | ") + " | note |\n|" + strings.Repeat("---|", len(header)+1) + "\n")
	for _, r := range results {
		c := row(r)
		for i := range c {
			c[i] = strings.ReplaceAll(c[i], "|", "\\|")
		}
		fmt.Fprintf(&b, "| %s | %s |\n", strings.Join(c, " | "), r.Note)
	}
	b.WriteString("\n" + legend + "\n")
	return b.String()
}

// writeResults writes STAMP.{json,md,png} under dir and copies them to latest.*.
func writeResults(dir string, m Machine, results []*Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stamp := time.Now().Format("20060102-150405")
	js, _ := json.MarshalIndent(struct {
		Machine Machine   `json:"machine"`
		Results []*Result `json:"results"`
	}{m, results}, "", "  ")
	files := map[string][]byte{"json": append(js, '\n'), "md": []byte(markdown(m, results))}
	if png, err := chart(dir, m, results); err != nil {
		logf("chart: %v", err)
	} else {
		files["png"] = png
	}
	var written []string
	for _, ext := range []string{"json", "md", "png"} {
		b, ok := files[ext]
		if !ok {
			continue
		}
		for _, name := range []string{stamp + "." + ext, "latest." + ext} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return written, err
			}
			written = append(written, p)
		}
	}
	return written, nil
}

// chart draws the skiff/peer ratios as a bar chart (log scale) with gnuplot.
func chart(dir string, m Machine, results []*Result) ([]byte, error) {
	tmp, err := os.MkdirTemp(dir, ".chart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var data strings.Builder
	n, lo, hi := 0, 1.0, 1.0
	for _, r := range results {
		if r.Ratio > 0 {
			fmt.Fprintf(&data, "%q %.4f\n", r.Scenario+": "+r.Baseline+" / "+r.Runtime, r.Ratio)
			n++
			lo, hi = min(lo, r.Ratio), max(hi, r.Ratio)
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no ratios to draw")
	}
	dat, png := filepath.Join(tmp, "ratios.dat"), filepath.Join(tmp, "ratios.png")
	if err := os.WriteFile(dat, []byte(data.String()), 0o644); err != nil {
		return nil, err
	}
	script := fmt.Sprintf(`set terminal png size 1100,%d
set output %q
set title %q noenhanced font ",10"
set style fill solid 0.7
set boxwidth 0.7
set logscale x 2
set xrange [%g:%g]
set rmargin 4
set xlabel "ratio (median, log scale): >1 means skiff is slower / larger"
set ytics nomirror noenhanced
set yrange [%d-0.5:-0.5]
set grid xtics
unset key
plot %q using 2:0:(1):2:($0-0.35):($0+0.35):ytic(1) with boxxyerrorbars lc rgb "#4477aa", \
     '' using ($2>1?$2:1):0:(sprintf("%%.2fx", $2)) with labels left offset 0.5,0 noenhanced
`, 120+n*36, png, fmt.Sprintf("skiff / peer by median\n%s, %d CPUs, kernel %s", m.Date, m.CPUs, m.Kernel),
		lo/1.25, chartRight(lo, hi), n, dat)
	cmd := exec.Command("gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gnuplot: %v: %s", err, out)
	}
	return os.ReadFile(png)
}

// chartRight is the right end of the chart's log2 x axis: past the largest
// ratio by room for its label ("12.34x", about a sixth of the plot's width),
// so that no label is clipped at the image's edge.
func chartRight(lo, hi float64) float64 {
	left := math.Log2(lo / 1.25)
	span := math.Log2(hi) - left
	return math.Exp2(math.Log2(hi) + max(span/5, 0.5))
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
