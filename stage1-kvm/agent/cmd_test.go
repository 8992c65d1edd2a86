package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// syncBuffer is a bytes.Buffer safe for the writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func sh(script string) *exec.Cmd { return exec.Command("/bin/sh", "-c", script) }

func TestRunCmdPipes(t *testing.T) {
	var out, errOut bytes.Buffer
	code, err := RunCmd(context.Background(), sh(`cat; echo err >&2; exit 4`), ExecRequest{},
		Stdio{Stdin: strings.NewReader("in\n"), Stdout: &out, Stderr: &errOut}, CmdOptions{})
	if err != nil || code != 4 || out.String() != "in\n" || errOut.String() != "err\n" {
		t.Fatalf("code %d, %v, stdout %q, stderr %q", code, err, out.String(), errOut.String())
	}
	// No stdin is an empty one; no writers drop the output.
	if code, err := RunCmd(context.Background(), sh(`cat; echo dropped`), ExecRequest{}, Stdio{}, CmdOptions{}); err != nil || code != 0 {
		t.Fatalf("nil stdio: code %d, %v", code, err)
	}
	if code, _ := RunCmd(context.Background(), sh(`kill -TERM $$`), ExecRequest{}, Stdio{}, CmdOptions{}); code != 143 {
		t.Fatalf("killed by SIGTERM: code %d, want 143", code)
	}
}

func TestRunCmdStartFailure(t *testing.T) {
	for path, want := range map[string]int{"/no/such/command": 127, "/etc": 126} {
		code, err := RunCmd(context.Background(), &exec.Cmd{Path: path, Args: []string{path}}, ExecRequest{}, Stdio{}, CmdOptions{})
		if code != want || err == nil {
			t.Errorf("%s: code %d, %v; want %d and an error", path, code, err, want)
		}
	}
	cmd := sh("true")
	cmd.Stdout = os.Stdout
	if _, err := RunCmd(context.Background(), cmd, ExecRequest{}, Stdio{}, CmdOptions{}); err == nil {
		t.Error("a cmd with its own Stdout was accepted")
	}
}

// A process left in the background holding the output does not hold up the
// exit; what the command itself wrote is all there.
func TestRunCmdBackgroundHoldsOutput(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var out bytes.Buffer
		start := time.Now()
		code, err := RunCmd(context.Background(), sh(`sleep 3 & i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done`),
			ExecRequest{TTY: tty}, Stdio{Stdout: &out}, CmdOptions{})
		if err != nil || code != 0 {
			t.Fatalf("tty %v: code %d, %v", tty, code, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("tty %v: took %v: waited for the background process", tty, d)
		}
		if !strings.HasSuffix(strings.ReplaceAll(out.String(), "\r\n", "\n"), "line 1999\n") || strings.Count(out.String(), "line") != 2000 {
			t.Errorf("tty %v: %d lines, ending %q", tty, strings.Count(out.String(), "line"), out.String()[max(0, out.Len()-20):])
		}
	}
}

func TestRunCmdTTY(t *testing.T) {
	var out, errOut bytes.Buffer
	code, err := RunCmd(context.Background(), sh(`tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo all-ttys; exit 3`),
		ExecRequest{TTY: true, Window: Winsize{Rows: 12, Cols: 34}}, Stdio{Stdout: &out, Stderr: &errOut}, CmdOptions{})
	if err != nil || code != 3 {
		t.Fatalf("code %d, %v", code, err)
	}
	if !regexp.MustCompile(`^/dev/pts/\d+\r\n12 34\r\nall-ttys\r\n$`).MatchString(out.String()) || errOut.Len() != 0 {
		t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
	}
	// The pty is the controlling terminal: /dev/tty opens.
	out.Reset()
	if code, err := RunCmd(context.Background(), sh(`echo ok > /dev/tty`), ExecRequest{TTY: true}, Stdio{Stdout: &out}, CmdOptions{}); err != nil || code != 0 || out.String() != "ok\r\n" {
		t.Fatalf("/dev/tty: code %d, %v, %q", code, err, out.String())
	}
}

// A command run as another user owns its terminal.
func TestRunCmdTTYOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a command as another user")
	}
	cmd := sh(`id -u; stat -c %u "$(tty)"`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	if code, err := RunCmd(context.Background(), cmd, ExecRequest{TTY: true}, Stdio{Stdout: &out}, CmdOptions{}); err != nil || code != 0 || out.String() != "65534\r\n65534\r\n" {
		t.Fatalf("code %d, %v, %q", code, err, out.String())
	}
}

// stdin's end reaches a command reading the terminal (canonical mode: the
// EOF character).
func TestRunCmdTTYStdinEOF(t *testing.T) {
	var out bytes.Buffer
	done := make(chan struct{})
	var code int
	var err error
	go func() {
		defer close(done)
		code, err = RunCmd(context.Background(), sh(`cat; echo end`), ExecRequest{TTY: true}, Stdio{Stdin: strings.NewReader("abc\n"), Stdout: &out}, CmdOptions{})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("cat did not see the end of stdin")
	}
	// The terminal echoes the input, cat repeats it.
	if err != nil || code != 0 || out.String() != "abc\r\nabc\r\nend\r\n" {
		t.Fatalf("code %d, %v, %q", code, err, out.String())
	}
}

func TestRunCmdHangupKill(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	cmd := sh(`trap '' HUP; echo ready; while :; do sleep 0.05; done`)
	done := make(chan error, 1)
	go func() {
		_, err := RunCmd(ctx, cmd, ExecRequest{}, Stdio{Stdout: out}, CmdOptions{KillAfterHangup: 200 * time.Millisecond})
		done <- err
	}()
	waitFor(t, "ready", func() bool { return out.String() == "ready\n" })
	cancel()
	if err := <-done; !errors.Is(err, ErrHangup) {
		t.Fatalf("after the hangup: %v", err)
	}
	// It ignores SIGHUP; SIGKILL ends it, and it is reaped.
	pid := cmd.Process.Pid
	waitFor(t, "the command's end", func() bool { return unix.Kill(pid, 0) == syscall.ESRCH })
}

// TestRunCmdHangupKillsWhatTheCommandLeft: after a hangup the command ends
// (SIGHUP) but a process it started that ignores SIGHUP is in its group:
// with KillAfterHangup it is killed once the command has exited, not only
// when the (here long) wait is over.
func TestRunCmdHangupKillsWhatTheCommandLeft(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	cmd := sh(`(trap '' HUP; exec sleep 5791) & echo "$!"; echo ready; wait`)
	done := make(chan error, 1)
	go func() {
		_, err := RunCmd(ctx, cmd, ExecRequest{}, Stdio{Stdout: out}, CmdOptions{KillAfterHangup: time.Hour})
		done <- err
	}()
	waitFor(t, "ready", func() bool { return strings.HasSuffix(out.String(), "ready\n") })
	left, err := strconv.Atoi(strings.Fields(out.String())[0])
	if err != nil {
		t.Fatalf("output %q", out.String())
	}
	t.Cleanup(func() { _ = unix.Kill(left, unix.SIGKILL) })
	cancel()
	if err := <-done; !errors.Is(err, ErrHangup) {
		t.Fatalf("after the hangup: %v", err)
	}
	pid := cmd.Process.Pid
	waitFor(t, "the command's end", func() bool { return unix.Kill(pid, 0) == syscall.ESRCH })
	waitFor(t, "the end of the sleep it left", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", left))
		return err != nil || strings.Contains(string(b), ") Z ")
	})
}

// TestRunCmdReaperLeavesTheTerminal: with opts.Reaper, a command on a tty
// leads a session but does not make the pty its controlling terminal (the
// reaper's child does); without, it does.
func TestRunCmdReaperLeavesTheTerminal(t *testing.T) {
	for _, reaper := range []bool{false, true} {
		var opts CmdOptions
		if reaper {
			_, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			opts.Reaper = w
		}
		var out bytes.Buffer
		// Field 7 of stat: tty_nr, 0 without a controlling terminal.
		code, err := RunCmd(context.Background(), sh(`read -r a b c d e f g rest </proc/self/stat; echo "sid=$f self=$$ tty=$g"; test -t 0 && echo on-a-tty`),
			ExecRequest{TTY: true}, Stdio{Stdout: &out}, opts)
		m := regexp.MustCompile(`sid=(\d+) self=(\d+) tty=(\d+)\r\non-a-tty\r\n$`).FindStringSubmatch(out.String())
		if err != nil || code != 0 || m == nil || m[1] != m[2] || (m[3] == "0") != reaper {
			t.Errorf("reaper %v: %d, %v, %q (want a session leader on the pty, its controlling terminal only without a reaper)", reaper, code, err, out.String())
		}
	}
}

// TestRunCmdHangupClosesTheReaper: a hangup closes opts.Reaper at once (the
// reaper then kills all the command started, even outside its group).
func TestRunCmdHangupClosesTheReaper(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	cmd := sh(`trap '' HUP; echo ready; exec sleep 5792`)
	done := make(chan error, 1)
	go func() {
		_, err := RunCmd(ctx, cmd, ExecRequest{}, Stdio{Stdout: out}, CmdOptions{Reaper: w, KillAfterHangup: time.Hour})
		done <- err
	}()
	waitFor(t, "ready", func() bool { return out.String() == "ready\n" })
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	cancel()
	if err := <-done; !errors.Is(err, ErrHangup) {
		t.Fatalf("after the hangup: %v", err)
	}
	ended := make(chan struct{})
	go func() {
		var b [1]byte
		_, _ = r.Read(b[:]) // EOF once the only write end is closed
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(time.Minute):
		t.Fatal("the reaper's pipe still open after the hangup")
	}
}
