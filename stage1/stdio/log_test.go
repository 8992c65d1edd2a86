package stdio

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// Links planted where the log goes (the pod directory is partly writable
// from inside some pods) never make the log write, truncate or rotate a file
// elsewhere, and the log stays within its cap.
func TestLogRefusesPlantedLinks(t *testing.T) {
	root := t.TempDir()
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(root, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Run("the log directory is a link", func(t *testing.T) {
		pod := t.TempDir()
		if err := os.Symlink(elsewhere, filepath.Join(pod, "logs")); err != nil {
			t.Fatal(err)
		}
		t.Chdir(pod)
		if l, err := OpenLog("logs/pod.log", 100); err == nil {
			l.Close()
			t.Error("opened a log through a linked directory")
		}
		if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
			t.Errorf("wrote into the link's target: %v", ents)
		}
	})
	t.Run("the log file is a link", func(t *testing.T) {
		logs := filepath.Join(t.TempDir(), "logs")
		os.Mkdir(logs, 0o755)
		if err := os.Symlink(victim, filepath.Join(logs, "pod.log")); err != nil {
			t.Fatal(err)
		}
		if l, err := OpenLog(filepath.Join(logs, "pod.log"), 100); err == nil {
			l.Close()
			t.Error("opened a log through a link")
		}
	})
	t.Run("links and directories in the rotation's way", func(t *testing.T) {
		logs := filepath.Join(t.TempDir(), "logs")
		path := filepath.Join(logs, "pod.log")
		l, err := OpenLog(path, 200)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		// pod.log.1 a link to the victim: the rotation replaces the link.
		if err := os.Symlink(victim, path+".1"); err != nil {
			t.Fatal(err)
		}
		line := abi.LogEntry{App: "web", Stream: "stdout", Text: []byte(strings.Repeat("x", 60))}.Append(nil)
		for range 10 {
			l.append(line)
		}
		// pod.log.1 a directory: the rotation cannot rename, and empties the log instead.
		os.Remove(path + ".1")
		if err := os.Mkdir(path+".1", 0o755); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			l.append(line)
		}
		if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
			t.Errorf("victim now %q", b)
		}
		if st, err := os.Lstat(path); err != nil || !st.Mode().IsRegular() || st.Size() > 200 {
			t.Errorf("log: %v, %v; want a regular file within its cap", st, err)
		}
	})
}

// TestTeesToOneFileTakeTurns: when skiff's stdout and stderr are one pipe
// ('>f 2>&1' into a reader, a unit's journal stream), the two tees write to
// it through two descriptors; a chunk bigger than the pipe's atomic size is
// written in several parts, and the other tee's chunk must not land between
// them. Each chunk here is one whole line of one letter.
func TestTeesToOneFileTakeTurns(t *testing.T) {
	l, err := OpenLog(filepath.Join(t.TempDir(), "logs", "pod.log"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil { // blocking, as skiff's are
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	dup, err := unix.FcntlInt(uintptr(p[1]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	outR := os.NewFile(uintptr(p[0]), "out-r")
	stdout, stderr := os.NewFile(uintptr(p[1]), "stdout"), os.NewFile(uintptr(dup), "stderr")
	const lines, size = 40, 32 << 10
	var tees []*Tee
	var writers sync.WaitGroup
	for i, out := range []*os.File{stdout, stderr} {
		tee, err := l.Tee("web", []string{abi.StreamStdout, abi.StreamStderr}[i], out)
		if err != nil {
			t.Fatal(err)
		}
		tees = append(tees, tee)
		line := []byte(strings.Repeat(string(rune('a'+i)), size-1) + "\n")
		writers.Add(1)
		go func() {
			defer writers.Done()
			defer tee.CloseWriter()
			for range lines {
				if _, err := tee.W().Write(line); err != nil {
					t.Error(err)
					return
				}
				// One line a chunk: the next when the tee has read this one.
				for n, err := unix.IoctlGetInt(int(tee.W().Fd()), unix.TIOCINQ); err == nil && n > 0; n, err = unix.IoctlGetInt(int(tee.W().Fd()), unix.TIOCINQ) {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	copied := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(outR)
		copied <- b
	}()
	writers.Wait()
	for _, tee := range tees {
		if !tee.Wait(10 * time.Second) {
			t.Fatal("tee did not end")
		}
	}
	stdout.Close()
	stderr.Close()
	b := <-copied
	got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	mixed := 0
	for _, l := range got {
		if len(l) != size-1 || strings.Trim(l, l[:1]) != "" {
			mixed++
		}
	}
	if mixed > 0 || len(got) != 2*lines {
		t.Errorf("%d lines, %d of them mixed from both tees; want %d lines of one letter each", len(got), mixed, 2*lines)
	}
}
