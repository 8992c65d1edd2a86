package agent

import (
	"fmt"
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Terminal is the host's terminal during an Exec with TTY: in raw mode (the
// guest's pty does the line editing and the echo), its size followed.
type Terminal struct {
	fd     int
	state  *term.State
	sigs   chan os.Signal
	resize chan Winsize
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// MakeRaw puts the terminal f (normally os.Stdin) in raw mode and starts
// following its size (SIGWINCH). Use it as:
//
//	t, err := agent.MakeRaw(os.Stdin)
//	defer t.Restore()
//	req.TTY, req.Window, stdio.Resize = true, t.Size(), t.Resize()
//
// Restore before printing anything of the host's own (raw mode has no
// newline translation).
func MakeRaw(f *os.File) (*Terminal, error) {
	fd := int(f.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("%s is not a terminal", f.Name())
	}
	st, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("make %s raw: %w", f.Name(), err)
	}
	t := &Terminal{fd: fd, state: st, sigs: make(chan os.Signal, 1), resize: make(chan Winsize, 1), stop: make(chan struct{})}
	signal.Notify(t.sigs, unix.SIGWINCH)
	t.wg.Go(t.follow)
	return t, nil
}

// Size is the terminal's size now (zero when it cannot be read).
func (t *Terminal) Size() Winsize {
	ws, err := unix.IoctlGetWinsize(t.fd, unix.TIOCGWINSZ)
	if err != nil {
		return Winsize{}
	}
	return Winsize{Rows: ws.Row, Cols: ws.Col}
}

// Resize delivers the terminal's new size after each change (the latest one
// when several come at once); it is never closed.
func (t *Terminal) Resize() <-chan Winsize { return t.resize }

func (t *Terminal) follow() {
	for {
		select {
		case <-t.sigs:
			ws := t.Size()
			select { // keep the latest size only
			case <-t.resize:
			default:
			}
			t.resize <- ws
		case <-t.stop:
			return
		}
	}
}

// Restore stops following the size and puts the terminal back in the mode
// MakeRaw found it in. It may be called more than once.
func (t *Terminal) Restore() error {
	var err error
	t.once.Do(func() {
		signal.Stop(t.sigs)
		close(t.stop)
		t.wg.Wait()
		err = term.Restore(t.fd, t.state)
	})
	return err
}
