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
}

func newLogsCmd(g *globals) *cobra.Command {
	var f logsFlags
	c := &cobra.Command{
		Use:   "logs [--follow] [--app=NAME] [--timestamps] UUID",
		Short: "Print the output of a pod's apps, while it runs and after it exited (until gc)",
		Long: `logs prints what the pod's apps wrote to stdout (on stdout) and stderr (on
stderr), from the log stage1 keeps in the pod directory (size-capped: the
newest two files of 8 MiB). Output that went to a terminal is not in the log.
With several apps and no --app, each line starts with "APP| ".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			pr := &logPrinter{f: f, prefix: f.app == "" && len(m.Apps) > 1,
				out: bufio.NewWriter(cmd.OutOrStdout()), errw: bufio.NewWriter(cmd.ErrOrStderr())}
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
