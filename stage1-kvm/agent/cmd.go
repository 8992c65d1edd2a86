package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// drainGrace is how long RunCmd waits, once the command has exited, for its
// output to reach its end; after that it takes what is buffered and stops
// (a background process may hold the output open for ever).
const drainGrace = 250 * time.Millisecond

// maxDrain bounds what is taken from the buffers after drainGrace.
const maxDrain = 1 << 20

// CmdOptions tune RunCmd. The zero value behaves as sshd does.
type CmdOptions struct {
	// KillAfterHangup, when positive, SIGKILLs the command's process
	// group once the command has exited after a hangup (what it left
	// behind in its group), or that long after the hangup if it has not.
	// Zero: SIGHUP only; a command that ignores it (nohup) goes on running.
	KillAfterHangup time.Duration
	// KillAfterSignal is how long after the first SIGTERM, SIGHUP or
	// SIGINT from stdio.Signals the command's process group is SIGKILLed
	// if the command has not exited (zero: DefaultKillAfterSignal).
	KillAfterSignal time.Duration
	// Reaper, when not nil, is the write end of a pipe whose read end
	// only the command holds: the command is a reaper (app-exec
	// --reap-fd) that SIGKILLs all it started once the pipe ends. RunCmd
	// then kills by closing it (not by SIGKILL to the command's group:
	// what the command started may have left it), closes it when it
	// returns (a hangup: nothing outlives the stream), and with a tty
	// leaves the terminal to the reaper's child to make its controlling
	// terminal (Setsid only: the reaper must not hold the session whose
	// foreground group gets the terminal's signals).
	Reaper *os.File
	// Console, when not nil, makes a request's terminal the command's
	// own: the command makes the pty in the devpts it sees (an app's
	// /dev/pts: app-exec --console-fd) and sends its master over the
	// console socket, whose Peer it holds (in cmd.ExtraFiles); RunCmd
	// closes Peer once the command has started. Without it the pty is
	// the agent's, a device of the guest's devpts that the app's
	// /dev/pts does not show (ttyname fails in there).
	Console *Console
}

// DefaultKillAfterSignal is CmdOptions.KillAfterSignal's default, the
// default flavor's enter's wait (stage1's enterKillWait).
const DefaultKillAfterSignal = 10 * time.Second

// RunCmd runs cmd for an exec request with stdio: on pipes, or on a new
// pseudo-terminal when req.TTY (sized req.Window, resized from stdio.Resize,
// made the command's controlling terminal: Setsid and Setctty, unless
// opts.Reaper; the command's
// stdout and stderr both go to stdio.Stdout). The caller sets everything else
// in cmd (Path, Args, Env, Dir, SysProcAttr such as Chroot and Credential);
// RunCmd sets Stdin, Stdout, Stderr (which must be nil) and, in a copy of
// SysProcAttr, Setsid/Setctty or Setpgid.
//
// It returns the command's exit code (128+N when signal N killed it) once
// the command has exited and its output has been sent: all of it, unless a
// process it left behind still holds the output open after a short grace,
// in which case what was buffered is sent and the rest dropped. The end of
// stdio.Stdin closes the command's stdin; with a tty, it writes the
// terminal's EOF character (^D) when the terminal is in canonical mode,
// nothing in raw mode.
//
// RunCmd reaps the command with cmd.Wait: a PID 1 that also reaps with
// wait4(-1) must leave the command's pid alone (or the code is lost).
//
// A command that cannot be started gives 127 (not found) or 126 and the
// error. Each signal from stdio.Signals goes to the command, as a
// terminal's do: SIGINT, SIGQUIT and SIGHUP to its process group (it leads
// one), others to the command itself. After the first SIGTERM, SIGHUP or
// SIGINT (the caller was told to end), the group is SIGKILLed once the
// command exits (what it started and left behind goes with it), or
// opts.KillAfterSignal later if it has not.
//
// When ctx ends first (the host hung up), RunCmd sends SIGHUP to the
// command's process group, closes its own ends of the stdio (a pty's
// hangup), and returns ErrHangup at once; a goroutine keeps waiting for the
// command to reap it (and, with opts.KillAfterHangup, SIGKILLs its group
// once it has exited, or that long after the hangup).
func RunCmd(ctx context.Context, cmd *exec.Cmd, req ExecRequest, stdio Stdio, opts CmdOptions) (int, error) {
	if opts.Reaper != nil {
		defer opts.Reaper.Close()
	}
	if cmd.Stdin != nil || cmd.Stdout != nil || cmd.Stderr != nil {
		return abi.ExitSkiffFailure, errors.New("RunCmd: cmd's Stdin, Stdout and Stderr must be nil")
	}
	attr := &syscall.SysProcAttr{}
	if cmd.SysProcAttr != nil {
		a := *cmd.SysProcAttr
		attr = &a
	}
	cmd.SysProcAttr = attr
	var r *running
	var err error
	switch {
	case req.TTY && opts.Console != nil:
		r, err = startConsole(ctx, cmd, req.Window, stdio, opts.Console)
	case req.TTY:
		r, err = startPty(cmd, req.Window, stdio, opts.Reaper == nil)
	default:
		r, err = startPipes(cmd, stdio)
	}
	if err != nil {
		code := abi.ExitCannotExec
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
			code = abi.ExitNotFound
		}
		return code, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	pid := cmd.Process.Pid
	kill := func() { _ = unix.Kill(-pid, unix.SIGKILL) }
	if opts.Reaper != nil {
		kill = func() { _ = opts.Reaper.Close() }
	}
	told := false
	var killAt <-chan time.Time
	for {
		select {
		case s := <-stdio.Signals:
			sig, ok := s.(syscall.Signal)
			if !ok {
				break
			}
			if sig == unix.SIGINT || sig == unix.SIGQUIT || sig == unix.SIGHUP {
				_ = unix.Kill(-pid, sig)
			} else {
				_ = cmd.Process.Signal(sig)
			}
			if !told && (sig == unix.SIGTERM || sig == unix.SIGHUP || sig == unix.SIGINT) {
				told = true
				wait := opts.KillAfterSignal
				if wait <= 0 {
					wait = DefaultKillAfterSignal
				}
				killAt = time.After(wait)
			}
		case <-killAt:
			kill()
		case <-exited:
			if told {
				kill()
			}
			r.finish()
			return exitCode(cmd.ProcessState), nil
		case <-ctx.Done():
			_ = unix.Kill(-pid, unix.SIGHUP)
			r.abandon()
			if opts.KillAfterHangup > 0 {
				go func() {
					select {
					case <-exited: // what it left behind goes with it
					case <-time.After(opts.KillAfterHangup):
					}
					_ = unix.Kill(-pid, unix.SIGKILL)
				}()
			}
			return abi.ExitSkiffFailure, ErrHangup
		}
	}
}

// running is a started command's side of its stdio: the copies from its
// output ends and the end of its input.
type running struct {
	outputs []*os.File      // read ends: stdout and stderr pipes, or the pty master
	copied  []chan struct{} // closed when each output has been copied to its end
	input   *os.File        // write end of the stdin pipe, or the pty master (nil: none)
	stop    chan struct{}   // ends the resize loop
}

func startPipes(cmd *exec.Cmd, stdio Stdio) (*running, error) {
	if !cmd.SysProcAttr.Setsid {
		cmd.SysProcAttr.Setpgid = true // a group of its own, to signal on hangup
	}
	var child, parent []*os.File
	defer func() { closeAll(child) }() // the command has its own copies
	for i := 0; i < 3; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(parent)
			return nil, err
		}
		if i == 0 {
			child, parent = append(child, r), append(parent, w)
		} else {
			child, parent = append(child, w), append(parent, r)
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = child[0], child[1], child[2]
	if err := cmd.Start(); err != nil {
		closeAll(parent)
		return nil, err
	}
	r := &running{outputs: parent[1:], input: parent[0], stop: make(chan struct{})}
	go func() {
		copyInput(r.input, stdio.Stdin)
		r.input.Close()
	}()
	r.copyOutputs(stdio.Stdout, stdio.Stderr)
	return r, nil
}

// startConsole starts cmd, which makes its pty itself and sends the master
// over c (runc's console socket protocol), as the leader of a session of its
// own. Until then, and if it fails first, the command's stdout and stderr are
// a pipe whose output goes to stdio.Stdout too (it says there why it failed).
func startConsole(ctx context.Context, cmd *exec.Cmd, ws Winsize, stdio Stdio, c *Console) (*running, error) {
	defer c.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Setpgid = true, false, false
	err = cmd.Start()
	pw.Close()
	c.Peer.Close() // the command has its copy: the socket ends with the command
	if err != nil {
		pr.Close()
		return nil, err
	}
	r := &running{outputs: []*os.File{pr}, stop: make(chan struct{})}
	master, err := c.receive(ctx)
	if err != nil { // no terminal: the command ended (or hung) before making it
		r.copyOutputs(stdio.Stdout)
		return r, nil
	}
	if ws != (Winsize{}) {
		_ = setWinsize(master, ws)
	}
	r.outputs, r.input = append(r.outputs, master), master
	r.startTerminal(stdio)
	r.copyOutputs(stdio.Stdout, stdio.Stdout)
	return r, nil
}

func startPty(cmd *exec.Cmd, ws Winsize, stdio Stdio, ctty bool) (*running, error) {
	master, slave, err := openPty(ws)
	if err != nil {
		return nil, err
	}
	defer slave.Close()
	if c := cmd.SysProcAttr.Credential; c != nil {
		// The user's own terminal, as login and sshd make it.
		if err := slave.Chown(int(c.Uid), -1); err != nil {
			master.Close()
			return nil, err
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, ctty, 0
	cmd.SysProcAttr.Setpgid = false
	if err := cmd.Start(); err != nil {
		master.Close()
		return nil, err
	}
	r := &running{outputs: []*os.File{master}, input: master, stop: make(chan struct{})}
	r.startTerminal(stdio)
	r.copyOutputs(stdio.Stdout)
	return r, nil
}

// startTerminal copies stdio.Stdin to the pty master r.input (then its EOF
// character) and applies stdio.Resize to it until r stops.
func (r *running) startTerminal(stdio Stdio) {
	master := r.input
	go func() {
		if copyInput(master, stdio.Stdin) == nil {
			sendEOF(master)
		}
	}()
	go func() {
		for {
			select {
			case ws := <-stdio.Resize:
				_ = setWinsize(master, ws)
			case <-r.stop:
				return
			}
		}
	}()
}

// copyInput copies src to the command's input; nil means src ended (EOF).
// A nil src is an empty one.
func copyInput(dst io.Writer, src io.Reader) error {
	if src == nil {
		return nil
	}
	_, err := io.Copy(dst, src)
	return err
}

func (r *running) copyOutputs(dsts ...io.Writer) {
	for i, f := range r.outputs {
		done := make(chan struct{})
		r.copied = append(r.copied, done)
		go func() {
			defer close(done)
			copyOutput(dsts[i], f)
		}()
	}
}

// finish, once the command has exited, waits for its output to be copied
// (taking only what is buffered after drainGrace) and releases everything.
func (r *running) finish() {
	timer := time.NewTimer(drainGrace)
	defer timer.Stop()
	for i, done := range r.copied {
		select {
		case <-done:
		case <-timer.C:
			// Wake the copy; it then takes what is buffered and stops.
			for _, f := range r.outputs[i:] {
				_ = f.SetReadDeadline(time.Now())
			}
			<-done
		}
	}
	r.abandon()
}

// abandon releases the command's stdio at once (after a hangup, or once
// copied). Closing a pty master hangs its terminal up.
func (r *running) abandon() {
	close(r.stop)
	closeAll(r.outputs)
	if r.input != nil { // nil: a console command that made no terminal
		r.input.Close()
	}
}

// copyOutput copies one output of the command to dst until its end, a pty's
// EIO or a deadline (then what is buffered, at most maxDrain). A dst that
// fails is dropped, and reading goes on so the command never blocks on a
// full pipe.
func copyOutput(dst io.Writer, f *os.File) {
	if dst == nil {
		dst = io.Discard
	}
	buf := make([]byte, chunkSize)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				dst = io.Discard
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			drainBuffered(dst, f, buf)
			return
		}
		if err != nil {
			return // io.EOF, a pty's EIO, or closed
		}
	}
}

// drainBuffered copies what f holds now without waiting for more.
func drainBuffered(dst io.Writer, f *os.File, buf []byte) {
	_ = f.SetReadDeadline(time.Time{})
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	for total := 0; total < maxDrain; {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return true // never wait for readiness
		}); err != nil || rerr != nil || n <= 0 {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
		total += n
	}
}

func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
