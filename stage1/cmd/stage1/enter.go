package main

import (
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/skiff-project/skiff/stage1/stdio"
)

// What enter does around the entered process (podman exec's behaviour):
// signals to enter reach it, nothing it started outlives enter when enter is
// told to end, and on a terminal it gets a pty of its own.

// enterKillWait is how long a process told to end (a forwarded SIGTERM,
// SIGHUP or SIGINT) has before enter kills it and what it started.
const enterKillWait = 10 * time.Second

// enterSignals forwards enter's signals to the entered process pid. A
// terminating one (SIGTERM, SIGHUP, SIGINT) also notes the process's tree
// (its descendants, by parent pid) so that stop can kill what is left of it,
// and kills the tree if it has not ended within enterKillWait.
type enterSignals struct {
	pid  int
	sigs chan os.Signal
	mu   sync.Mutex
	tree map[int]uint64 // pid -> start time, to not kill a reused pid
	told bool
}

// catchEnterSignals starts catching enter's signals (before the process
// runs: they wait for it); started begins forwarding them.
func catchEnterSignals() *enterSignals {
	s := &enterSignals{sigs: make(chan os.Signal, 8), tree: map[int]uint64{}}
	signal.Notify(s.sigs, unix.SIGTERM, unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	return s
}

func (s *enterSignals) started(pid int, send func(os.Signal) error) {
	s.pid = pid
	go func() {
		for sig := range s.sigs {
			if sig == unix.SIGTERM || sig == unix.SIGHUP || sig == unix.SIGINT {
				s.mu.Lock()
				s.note()
				first := !s.told
				s.told = true
				s.mu.Unlock()
				if first {
					time.AfterFunc(enterKillWait, func() { _ = send(unix.SIGKILL); s.killTree() })
				}
			}
			// A terminal sends SIGINT, SIGQUIT and SIGHUP to the whole
			// foreground group: so does enter, to the process's group (it
			// leads its own session), so that a shell's command gets them too.
			if s := sig.(unix.Signal); s == unix.SIGINT || s == unix.SIGQUIT || s == unix.SIGHUP {
				if pg, err := unix.Getpgid(pid); err == nil && pg == pid && unix.Kill(-pid, s) == nil {
					continue
				}
			}
			_ = send(sig)
		}
	}()
}

// note adds the process and its descendants now to the tree (mu held).
func (s *enterSignals) note() {
	for pid, start := range descendants(s.pid) {
		s.tree[pid] = start
	}
}

// stop ends forwarding once the process has ended; if enter was told to end,
// what the process started and left behind is killed.
func (s *enterSignals) stop() {
	signal.Stop(s.sigs)
	if s.pid == 0 {
		return
	}
	s.mu.Lock()
	told := s.told
	s.mu.Unlock()
	if told {
		s.killTree()
	}
}

func (s *enterSignals) killTree() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, start := range s.tree {
		if st, ok := procStart(pid); ok && st == start {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// descendants lists pid and its descendants (pid -> start time), from the
// host's /proc.
func descendants(root int) map[int]uint64 {
	children := map[int][]int{}
	starts := map[int]uint64{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, start, ok := procStat(pid)
		if !ok {
			continue
		}
		children[ppid] = append(children[ppid], pid)
		starts[pid] = start
	}
	out := map[int]uint64{}
	var walk func(int)
	walk = func(p int) {
		if _, seen := out[p]; seen || len(out) > 100000 {
			return
		}
		start, ok := starts[p]
		if !ok {
			return
		}
		out[p] = start
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(root)
	return out
}

// procStat reads a process's parent pid and start time.
func procStat(pid int) (ppid int, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the name may hold anything but not this last
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	return ppid, start, err1 == nil && err2 == nil
}

func procStart(pid int) (uint64, bool) {
	_, start, ok := procStat(pid)
	return start, ok
}

// enterConsole relays enter's terminal to the entered process's pty, whose
// master app-exec sends over the console socket.
type enterConsole struct {
	sock    *os.File // our end of the console socket
	started bool
	state   *term.State
	done    chan struct{}
	sigs    chan os.Signal
}

// newEnterConsole makes the console socket: peer goes to the process (fd 3).
func newEnterConsole() (c *enterConsole, peer *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return &enterConsole{sock: os.NewFile(uintptr(fds[0]), "console"), done: make(chan struct{})},
		os.NewFile(uintptr(fds[1]), "console-peer"), nil
}

// start receives the pty master (the process holds the socket's other end;
// ours is closed by the caller) and relays until the pty closes.
func (c *enterConsole) start() {
	c.started = true
	go func() {
		defer close(c.done)
		master, err := recvFD(c.sock)
		c.sock.Close()
		if err != nil {
			return // the process failed before its pty: it said why on stderr
		}
		defer master.Close()
		if st, err := term.MakeRaw(0); err == nil {
			c.state = st
		}
		c.resize(master)
		c.sigs = make(chan os.Signal, 1)
		signal.Notify(c.sigs, unix.SIGWINCH)
		go func() {
			for range c.sigs {
				c.resize(master)
			}
		}()
		go func() { _, _ = io.Copy(master, os.Stdin) }()
		_, _ = io.Copy(os.Stdout, master) // ends with EIO once every slave is closed
	}()
}

func (c *enterConsole) resize(master *os.File) {
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
		_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// finish waits, a bounded time, for the rest of the output and puts the
// terminal back as it was.
func (c *enterConsole) finish() {
	if !c.started {
		c.sock.Close()
		return
	}
	select {
	case <-c.done:
	case <-time.After(2 * time.Second): // something in the pod still holds the pty
	}
	if c.sigs != nil {
		signal.Stop(c.sigs)
	}
	if c.state != nil {
		_ = term.Restore(0, c.state)
	}
}

// recvFD receives the pty master over the console socket f: one
// descriptor, a pty master (stdio.PtyMaster), or an error.
func recvFD(f *os.File) (*os.File, error) {
	oob := make([]byte, stdio.ConsoleOOB)
	_, oobn, _, _, err := unix.Recvmsg(int(f.Fd()), make([]byte, 64), oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	fd, err := stdio.PtyMaster(oob[:oobn])
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "pty-master"), nil
}

// termEnv is the TERM the entered process gets on a pty: enter's own, when
// it is a plain terminal name, else xterm.
func termEnv() string {
	t := os.Getenv("TERM")
	if t == "" || len(t) > 64 || strings.Trim(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+") != "" {
		t = "xterm"
	}
	return "TERM=" + t
}
