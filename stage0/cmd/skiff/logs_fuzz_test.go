package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
)

// FuzzLogPrinter: `skiff logs` reads the pod's log, which a pod may have
// written itself. Whatever the file holds, printing it never panics, never
// prints more than the file holds, drops a line longer than maxLogLine
// whole, and prints the text of well-formed entries back as the app wrote
// it. The file is chunk repeated 1+n%4096 times (long lines from short
// inputs); with wellFormed, chunk's lines are first made entries.
// Seeds: testdata/fuzz/FuzzLogPrinter.
func FuzzLogPrinter(f *testing.F) {
	f.Add([]byte("2026-01-02T03:04:05Z web stdout F hello\n"), uint16(0), false)
	f.Add([]byte("one\ntwo"), uint16(2), true)
	f.Add([]byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), uint16(3000), false) // a line past maxLogLine
	f.Add([]byte("2026-01-02T03:04:05Z web stderr P part\n"), uint16(1), false)
	file := filepath.Join(f.TempDir(), "pod.log")
	f.Fuzz(func(t *testing.T, chunk []byte, n uint16, wellFormed bool) {
		if len(chunk) > 64 {
			return
		}
		var want []byte
		if wellFormed {
			var entries []byte
			for _, line := range bytes.SplitAfter(chunk, []byte("\n")) {
				text, full := bytes.CutSuffix(line, []byte("\n"))
				if len(line) == 0 {
					continue
				}
				e := abi.LogEntry{Time: time.Unix(0, 0), App: "web", Stream: abi.StreamStdout, Partial: !full, Text: text}
				entries = e.Append(entries)
				want = append(want, line...)
			}
			chunk = entries
			want = bytes.Repeat(want, 1+int(n%4096))
		}
		in := bytes.Repeat(chunk, 1+int(n%4096))
		if err := os.WriteFile(file, in, 0o600); err != nil {
			t.Fatal(err)
		}
		fd, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		var out, errw bytes.Buffer
		pr := &logPrinter{out: bufio.NewWriter(&out), errw: bufio.NewWriter(&errw)}
		if _, err := pr.copyLines(fd, nil); err != nil {
			t.Fatal(err)
		}
		pr.flush()
		if out.Len()+errw.Len() > len(in) {
			t.Fatalf("printed %d bytes from a log of %d", out.Len()+errw.Len(), len(in))
		}
		if wellFormed && len(chunk) <= maxLogLine && !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("printed %.80q, the app wrote %.80q", out.Bytes(), want)
		}
	})
}
