package stdio

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/skiff-project/skiff/stage1/abi"
)

// FuzzLogCopy: whatever an app writes, the pod's log holds lines the host
// parses back (skiff logs reads them) into exactly what the app wrote, each
// entry within maxLine bytes, all of the app and stream the log was told.
// The app's output is chunk (at most 64 bytes) repeated 1+n%1024 times (long lines without long
// inputs: the fuzzer's minimization is quadratic in an input's length); it
// is read from a regular file so that every run reads the same chunks.
// Seeds: testdata/fuzz/FuzzLogCopy.
func FuzzLogCopy(f *testing.F) {
	f.Add([]byte("one\ntwo\n"), uint16(0))
	f.Add([]byte("no newline at the end"), uint16(3))
	f.Add(bytes.Repeat([]byte("x"), 64), uint16(300)) // a line past maxLine
	f.Add([]byte("\x1b[2J\r\x00 F P \n"), uint16(1))
	dir := f.TempDir()
	l, err := OpenLog(filepath.Join(dir, "logs", "pod.log"), 1<<30)
	if err != nil {
		f.Fatal(err)
	}
	in, err := os.Create(filepath.Join(dir, "app-output"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, chunk []byte, n uint16) {
		if len(chunk) > 64 {
			return
		}
		out := bytes.Repeat(chunk, 1+int(n%1024))
		if err := in.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := in.WriteAt(out, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		if err := l.f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		l.size = 0
		l.copy(in, nil, &sync.Mutex{}, "web", abi.StreamStderr)
		logged, err := os.ReadFile(filepath.Join(dir, "logs", "pod.log"))
		if err != nil {
			t.Fatal(err)
		}
		var back []byte
		for len(logged) > 0 {
			line, rest, ok := bytes.Cut(logged, []byte("\n"))
			if !ok {
				t.Fatalf("log ends without a newline: %.80q", line)
			}
			logged = rest
			e, err := abi.ParseLogEntry(line)
			if err != nil || e.App != "web" || e.Stream != abi.StreamStderr || len(e.Text) > maxLine {
				t.Fatalf("log line %.80q: %+v, %v", line, e, err)
			}
			back = append(back, e.Text...)
			if !e.Partial {
				back = append(back, '\n')
			}
		}
		if !bytes.Equal(back, out) {
			t.Fatalf("the log gives back %.80q, the app wrote %.80q", back, out)
		}
	})
}
