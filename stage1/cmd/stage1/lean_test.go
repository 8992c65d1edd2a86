package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMemProfilingOff: every command of the binary runs without the
// allocation sampling (see the init in lean.go).
func TestMemProfilingOff(t *testing.T) {
	if runtime.MemProfileRate != 0 {
		t.Fatalf("runtime.MemProfileRate = %d, want 0: the supervisor's sampled allocations map back pages of the binary", runtime.MemProfileRate)
	}
}

func TestReadOnlyFileMappings(t *testing.T) {
	maps := strings.Join([]string{
		"55d0c0000000-55d0c0002000 r--p 00000000 fd:01 131 /usr/bin/sleep",
		"55d0c0002000-55d0c0006000 r-xp 00002000 fd:01 131 /usr/bin/sleep",
		"55d0c0009000-55d0c000a000 rw-p 00008000 fd:01 131 /usr/bin/sleep", // writable
		"55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]",           // anonymous
		"7f0000000000-7f0000001000 r--s 00000000 00:05 77 /dev/shm/x",      // shared
		"7f0000002000-7f0000003000 r--p 00000000 00:00 0 ",                 // inode 0
		"7f0000004000-7f0000005000 r-xp 00000000 fd:01 99 /a path\nwith a newline",
		"7f0000006000-7f0000006000 r--p 00000000 fd:01 99 /empty",            // empty range
		"zz-7f0000008000 r--p 00000000 fd:01 99 /bad",                        // not hex
		"7f000000a000 r--p 00000000 fd:01 99 /no-dash",                       // no range
		"7f000000c000-7f000000d000 r--p",                                     // short
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]", // special
	}, "\n")
	got := readOnlyFileMappings([]byte(maps))
	want := []mapSpan{{0x55d0c0000000, 0x55d0c0002000}, {0x55d0c0002000, 0x55d0c0006000}, {0x7f0000004000, 0x7f0000005000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %x, want %x", got, want)
		}
	}
}

func FuzzReadOnlyFileMappings(f *testing.F) {
	f.Add([]byte("55d0c0000000-55d0c0002000 r--p 00000000 fd:01 131 /usr/bin/sleep\n"))
	f.Add([]byte("7f0000000000-7f0000001000 r--s 00000000 00:05 77 /dev/shm/x\n-\n \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range readOnlyFileMappings(b) {
			if s.end <= s.start {
				t.Fatalf("empty or inverted span %x", s)
			}
		}
	})
}

// readOnlyRss is the resident size (kB) of the file pages of pid's read-only
// mappings of path (Rss less Anonymous: a relocation's copy on write is
// anonymous memory in a read-only mapping).
func readOnlyRss(t *testing.T, pid int, path string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	rss, in := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			in = len(f) >= 6 && f[5] == path && f[1][1] == '-'
		case in && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			rss += n
		case in && len(f) >= 2 && f[0] == "Anonymous:":
			n, _ := strconv.Atoi(f[1])
			rss -= n
		}
	}
	return rss
}

// sleeping tells whether pid waits in nanosleep or clock_nanosleep.
func sleeping(pid int) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
	nr, _, _ := strings.Cut(string(b), " ")
	return nr == strconv.Itoa(unix.SYS_NANOSLEEP) || nr == strconv.Itoa(unix.SYS_CLOCK_NANOSLEEP)
}

// pageOutFiles leaves none of a process's read-only file pages mapped (the
// binary here is a private copy: no other process shares its pages, which
// the kernel would keep), and advises nothing once the process is gone.
func TestPageOutFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("process_madvise needs CAP_SYS_NICE")
	}
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	bin := filepath.Join(t.TempDir(), "sleep-copy")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err == nil {
		_, err = io.Copy(out, in)
		if err == nil {
			err = out.Sync() // dirty pages are written back, not paged out
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	in.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	// Until it sleeps, it may still fault pages in.
	deadline := time.Now().Add(10 * time.Second)
	for !sleeping(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never got to its sleep", bin)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := readOnlyRss(t, pid, bin)
	if before == 0 {
		t.Fatalf("%s: no read-only page of its binary mapped", bin)
	}
	n, err := pageOutFiles(pidfd, pid)
	if err != nil || n == 0 {
		t.Fatalf("pageOutFiles = %d, %v", n, err)
	}
	if after := readOnlyRss(t, pid, bin); after != 0 {
		t.Fatalf("%s: %d kB of its read-only pages still mapped after pageOutFiles (was %d kB)", bin, after, before)
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if n, err := pageOutFiles(pidfd, pid); err == nil || n != 0 {
		t.Fatalf("pageOutFiles of a reaped process = %d, %v; want an error", n, err)
	}
}
