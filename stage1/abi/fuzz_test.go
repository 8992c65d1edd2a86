package abi

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The exit records are what a pod writes and the host reads back: whatever
// they hold, decoding must not panic, and what passes validation is within
// what skiff itself writes. Seeds: testdata/fuzz/FuzzDecodeAppExit.
func FuzzDecodeAppExit(f *testing.F) {
	f.Add([]byte(`{"app":"web","code":137,"signal":"SIGKILL","exitedAt":"2026-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeAppExit(b)
		if err != nil {
			return
		}
		if x.Code < 0 || x.Code > 255 || (x.Signal != "" && !signalRE.MatchString(x.Signal)) {
			t.Fatalf("accepted %+v", x)
		}
	})
}

func FuzzDecodePodExit(f *testing.F) {
	f.Add([]byte(`{"code":0,"exitedAt":"2026-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if x, err := DecodePodExit(b); err == nil && (x.Code < 0 || x.Code > 255) {
			t.Fatalf("accepted %+v", x)
		}
	})
}

// A log line the pod's log holds (in the kvm flavor the host writes every
// line itself, but the file sits in the pod directory): parsing never
// panics, and what parses renders back to the same line.
func FuzzParseLogEntry(f *testing.F) {
	f.Add([]byte("2026-01-02T03:04:05.123456789Z web stdout F hello"))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseLogEntry(line)
		if err != nil {
			return
		}
		if e.Text == nil {
			e.Text = []byte{}
		}
		again, err := ParseLogEntry(bytes.TrimSuffix(e.Append(nil), []byte("\n")))
		if err != nil || again.App != e.App || again.Stream != e.Stream || again.Partial != e.Partial ||
			!bytes.Equal(again.Text, e.Text) || !again.Time.Equal(e.Time) {
			t.Fatalf("%q parsed as %+v, rendered and parsed again as %+v (%v)", line, e, again, err)
		}
	})
}

// FuzzReadFileAt: whatever path a pod's files make the host read (an app
// name from pod.json lands in one), in hostilePodDir, the readers never
// reach the secret beside the pod or the file behind a link, never block on
// a FIFO and never read a device. Both the openat2 path and the fallback
// walk are fuzzed. Seeds: testdata/fuzz/FuzzReadFileAt.
func FuzzReadFileAt(f *testing.F) {
	for _, rel := range []string{"apps/good/exit.json", "apps/link-dir/exit.json", "apps/link-relative/exit.json",
		"../secret.json", "apps/good/../../../secret.json", "apps//good/./exit.json", "", "/", ".", "apps/fifo/exit.json", "apps/zero"} {
		f.Add(rel)
	}
	pod, secret := hostilePodDir(f)
	d, err := os.Open(pod)
	must(f, err)
	defer d.Close()
	var forbidden []unix.Stat_t
	for _, p := range []string{secret, filepath.Join(filepath.Dir(pod), "outside/exit.json"), filepath.Join(filepath.Dir(pod), "outside"), filepath.Dir(pod)} {
		var st unix.Stat_t
		must(f, unix.Stat(p, &st))
		forbidden = append(forbidden, st)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		if b, err := ReadFileAt(d, rel, MaxFileSize); err == nil && bytes.Contains(b, []byte("42")) {
			t.Fatalf("ReadFileAt(%q) read %q", rel, b)
		}
		fd, err := walkBeneath(int(d.Fd()), rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR {
			t.Fatalf("walkBeneath(%q) opened a device", rel)
		}
		for _, no := range forbidden {
			if st.Dev == no.Dev && st.Ino == no.Ino {
				t.Fatalf("walkBeneath(%q) opened something outside the pod directory", rel)
			}
		}
	})
}
