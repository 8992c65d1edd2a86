package stdio

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
)

func TestTeeCopiesAndLogs(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLog(filepath.Join(dir, "logs", "pod.log"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, _ := os.Pipe()
	tee, err := l.Tee("web", abi.StreamStdout, outW)
	if err != nil {
		t.Fatal(err)
	}
	w := tee.W()
	long := strings.Repeat("x", maxLine+5)
	for _, s := range []string{"one\ntw", "o\n", long + "\n", "tail"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	tee.CloseWriter()
	if !tee.Wait(5 * time.Second) {
		t.Fatal("tee did not end")
	}
	outW.Close()
	copied := new(bytes.Buffer)
	copied.ReadFrom(outR)
	if want := "one\ntwo\n" + long + "\ntail"; copied.String() != want {
		t.Errorf("copied %d bytes, want %d", copied.Len(), len(want))
	}
	l.Close()
	var got []string
	for _, name := range []string{"pod.log"} {
		b, err := os.ReadFile(filepath.Join(dir, "logs", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			e, err := abi.ParseLogEntry([]byte(line))
			if err != nil || e.App != "web" || e.Stream != "stdout" {
				t.Fatalf("entry %q: %+v %v", line, e, err)
			}
			tag := "F"
			if e.Partial {
				tag = "P"
			}
			got = append(got, tag+":"+strings.Replace(string(e.Text), strings.Repeat("x", 5), "x", -1))
		}
	}
	want := []string{"F:one", "F:two", "P:" + strings.Repeat("x", maxLine/5) + strings.Repeat("x", maxLine%5), "F:x", "P:tail"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("entries %.80q, want %.80q", got, want)
	}
}

func TestLogRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod.log")
	l, err := OpenLog(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		l.append([]byte(strings.Repeat(s, 59) + "\n"))
	}
	l.Close()
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != strings.Repeat("b", 59)+"\n" || string(cur) != strings.Repeat("c", 59)+"\n" {
		t.Fatalf("after rotation: %q and %q", old, cur)
	}
}
