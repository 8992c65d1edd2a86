package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage1/abi"
)

type logsFlags struct {
	follow     bool
	app        string
	timestamps bool
	tail       int
	since      string
}

// parseSince reads --since: a duration back from now ("10m") or a time
// (RFC 3339, "2006-01-02 15:04:05" or a date, in the local time zone).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since=%s: want a duration back from now (10m, 2h) or a time (2006-01-02T15:04:05Z07:00, 2006-01-02 15:04:05, 2006-01-02)", s)
}

func newLogsCmd(g *globals) *cobra.Command {
	var f logsFlags
	c := &cobra.Command{
		Use:   "logs [--follow] [--app=NAME] [--timestamps] [--tail=N] [--since=WHEN] UUID",
		Short: "Print the output of a pod's apps, while it runs and after it exited (until gc)",
		Long: `logs prints what the pod's apps wrote to stdout (on stdout) and stderr (on
stderr), from the log stage1 keeps in the pod directory (size-capped: the
newest two files of 8 MiB). Output that went to a terminal is not in the log:
a pod run on a terminal gets the terminal itself; redirect skiff's output, or
run the pod as a unit ('skiff generate unit'), to keep it (the kvm flavor logs
it, as stdout when both streams went to the terminal). Each line keeps its
stream, also when skiff's stdout and stderr were one file ('>f 2>&1', one
journal stream): 'skiff logs UUID 2>/dev/null' prints only what the apps wrote
to stdout, '>/dev/null' only their stderr. Lines of one stream are in the
order the app wrote them; between the two streams, in the order skiff read
them, as with podman: a burst written faster than skiff reads comes out one
stream's part, then the other's (on a terminal, the screen has the app's
order). With several apps and no --app, each line starts with "APP| ".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			since, err := parseSince(f.since, time.Now())
			if err != nil {
				return err
			}
			if f.tail < -1 {
				return fmt.Errorf("--tail=%d: want a number of lines (-1: all)", f.tail)
			}
			p, err := pod.Load(g.dir, args[0])
			if err != nil {
				return err
			}
			defer p.Close()
			m, err := p.Manifest()
			if err != nil {
				return fmt.Errorf("pod %s: %w", p.UUID, err)
			}
			if f.app != "" && !hasAppNamed(m, f.app) {
				return fmt.Errorf("pod %s has no app %q", p.UUID, f.app)
			}
			// A first pass counts the lines, for --tail, and tells an empty log.
			count := &logPrinter{f: f, since: since, countOnly: true}
			if err := count.printFiles(p.Dir); err != nil {
				return err
			}
			pr := &logPrinter{f: f, prefix: f.app == "" && len(m.Apps) > 1, since: since,
				out: bufio.NewWriter(cmd.OutOrStdout()), errw: bufio.NewWriter(cmd.ErrOrStderr())}
			if f.tail >= 0 && count.lines > f.tail {
				pr.skipLines = count.lines - f.tail
			}
			if count.entries == 0 && !f.follow {
				what := "its apps"
				if f.app != "" {
					what = "app " + f.app
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "skiff: pod %s has no logged output: %s wrote none, or wrote to the terminal skiff ran on, which is not logged (redirect skiff's output, or run the pod as a unit, to log it)\n", p.UUID, what)
				return nil
			}
			defer pr.flush()
			if !f.follow {
				return pr.printFiles(p.Dir)
			}
			return followLog(g, p, pr)
		},
	}
	c.Flags().BoolVarP(&f.follow, "follow", "f", false, "keep printing new output until the pod exits")
	c.Flags().StringVar(&f.app, "app", "", "only this app's output")
	c.Flags().BoolVar(&f.timestamps, "timestamps", false, "start each line with its time (RFC 3339)")
	c.Flags().IntVar(&f.tail, "tail", -1, "print only the last N lines (-1: all); with --follow, then what follows")
	c.Flags().StringVar(&f.since, "since", "", "print only lines written since WHEN: a duration back from now (10m) or a time (RFC 3339, or 2006-01-02 15:04:05 local)")
	return c
}

func hasAppNamed(m *abi.PodManifest, name string) bool {
	for _, a := range m.Apps {
		if a.Name == name {
			return true
		}
	}
	return false
}

// logPrinter turns log entries back into the apps' output.
type logPrinter struct {
	f         logsFlags
	prefix    bool
	out, errw *bufio.Writer
	inLine    map[string]bool // app/stream: the last entry was a part of a line
	skipping  bool            // dropping the rest of an overlong line
	since     time.Time       // --since: entries before it are not printed
	skipLines int             // --tail: lines (ends of lines) still to skip
	// countOnly counts instead of printing: entries of the app at all, and
	// lines (ends of lines) --since would print.
	countOnly      bool
	entries, lines int
}

// maxLogLine bounds a line of the log: stage1 writes entries of at most
// 16 KiB of text plus a short header, so anything longer is not skiff's and
// is dropped, never buffered without end.
const maxLogLine = 64 << 10

// openLog opens a log file of the pod directory as hostile input (the pod
// directory is partly writable from inside some pods): no symbolic links,
// regular files only.
func openLog(dir, name string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return abi.OpenFileAt(d, name)
}

func (pr *logPrinter) flush() {
	pr.out.Flush()
	pr.errw.Flush()
}

// line prints one log line (without its newline).
func (pr *logPrinter) line(b []byte) {
	e, err := abi.ParseLogEntry(b)
	if err != nil || (pr.f.app != "" && e.App != pr.f.app) {
		return
	}
	if pr.countOnly {
		pr.entries++
		if !e.Partial && !e.Time.Before(pr.since) {
			pr.lines++
		}
		return
	}
	if e.Time.Before(pr.since) {
		return
	}
	if pr.skipLines > 0 {
		if !e.Partial {
			pr.skipLines--
		}
		return
	}
	if pr.inLine == nil {
		pr.inLine = map[string]bool{}
	}
	w := pr.out
	if e.Stream == abi.StreamStderr {
		w = pr.errw
	}
	key := e.App + "/" + e.Stream
	if !pr.inLine[key] {
		if pr.f.timestamps {
			w.WriteString(e.Time.Format(time.RFC3339Nano) + " ")
		}
		if pr.prefix {
			w.WriteString(e.App + "| ")
		}
	}
	w.Write(e.Text)
	if !e.Partial {
		w.WriteByte('\n')
	}
	pr.inLine[key] = e.Partial
}

// printFiles prints the rotated log, then the current one.
func (pr *logPrinter) printFiles(dir string) error {
	for _, name := range []string{abi.LogFileRotated, abi.LogFile} {
		f, err := openLog(dir, name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		pr.skipping = false
		_, err = pr.copyLines(f, nil)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// copyLines prints the complete lines f has from its offset on; rest is an
// incomplete line kept from before. It returns the incomplete tail. A line
// longer than maxLogLine is dropped whole.
func (pr *logPrinter) copyLines(f *os.File, rest []byte) ([]byte, error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		data := append(rest, buf[:n]...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			if !pr.skipping {
				pr.line(data[:i])
			}
			pr.skipping = false
			data = data[i+1:]
		}
		if pr.skipping || len(data) > maxLogLine {
			pr.skipping, data = true, nil
		}
		rest = append([]byte(nil), data...)
		if err == io.EOF || n == 0 {
			return rest, nil
		}
		if err != nil {
			return rest, err
		}
	}
}

// followLog prints the log and what is appended to it (following rotation)
// until the pod has exited and everything it wrote is printed.
func followLog(g *globals, p *pod.Pod, pr *logPrinter) error {
	w, err := pod.Load(g.dir, p.UUID) // its own handle: WaitExit updates it
	if err != nil {
		return err
	}
	defer w.Close()
	exited := make(chan struct{})
	go func() {
		_ = w.WaitExit(context.Background())
		close(exited)
	}()
	path := filepath.Join(p.Dir, abi.LogFile)
	if f, err := openLog(p.Dir, abi.LogFileRotated); err == nil {
		_, _ = pr.copyLines(f, nil)
		f.Close()
	}
	var f *os.File
	var rest []byte
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		done := false
		select {
		case <-exited:
			done = true // one more pass reads what was written before the exit
		default:
		}
		if f == nil {
			if f, err = openLog(p.Dir, abi.LogFile); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			pr.skipping = false
		}
		if f != nil {
			if rest, err = pr.copyLines(f, rest); err != nil {
				return err
			}
			if rotated(f, path) { // finish the old file, then go on with the new one
				if rest, err = pr.copyLines(f, rest); err != nil {
					return err
				}
				f.Close()
				f, rest, err = nil, nil, nil
				continue
			}
		}
		pr.flush()
		if done {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rotated tells whether path no longer names the open file f.
func rotated(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && !os.SameFile(a, b)
}
