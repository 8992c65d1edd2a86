package stdio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// The pod's log. An app's stdout and stderr are two pipes, always (as podman's
// conmon makes them), whose readers, Tees in stage1's run process, write every
// chunk unaltered to skiff's own stdout or stderr as soon as it arrives and
// append it, line by line with the time, the app and the stream, to
// abi.LogFile. Order is exact within each stream; between the two it is the
// order in which run read them: the app's for writes with pauses between
// them, but a burst written faster than run wakes comes out one stream's
// part, then the other's. When skiff's stdout and stderr are one file
// ('>f 2>&1', one journal stream), the tees writing to it take turns, a chunk
// at a time, so neither splits the other's chunk. A terminal is handed over
// directly and not logged: the app needs it as its terminal.

// DefaultLogMax is the size at which the log is rotated (one old file kept).
const DefaultLogMax = 8 << 20

// maxLine is the longest line kept as one entry; longer ones are split into
// parts (tag "P").
const maxLine = 16 << 10

// Log is the pod's log file, shared by all its tees.
//
// The log directory is in the pod directory, which a pod may be able to
// write in part: the log is opened and rotated through a descriptor of its
// directory, reached without following a symbolic link, and never through a
// link or into anything but a regular file, so a link planted where the log
// goes cannot make stage1 write or truncate a file elsewhere.
type Log struct {
	mu   sync.Mutex
	dir  *os.File // the log's directory
	name string
	max  int64
	f    *os.File
	size int64
	outs map[fileID]*sync.Mutex // per output file (of every tee): whose turn it is to write
}

// fileID is an open file's identity: skiff's stdout and stderr are one file
// after '>f 2>&1', though two descriptors.
type fileID struct{ dev, ino uint64 }

// OpenLog opens (appending) the log at path, rotating it to path.1 when it
// grows beyond max bytes. A relative path is resolved beneath the working
// directory (the pod directory) with no symbolic link on the way; for an
// absolute one, the log's own directory must not be a link.
func OpenLog(path string, max int64) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	parent, rel := ".", filepath.Dir(path)
	if filepath.IsAbs(path) {
		parent, rel = filepath.Dir(rel), filepath.Base(rel)
	}
	p, err := os.Open(parent)
	if err != nil {
		return nil, err
	}
	dir, err := abi.OpenDirAt(p, rel)
	p.Close()
	if err != nil {
		return nil, fmt.Errorf("open pod log: %w", err)
	}
	l := &Log{dir: dir, name: filepath.Base(path), max: max}
	if l.f, err = l.open(0); err != nil {
		dir.Close()
		return nil, fmt.Errorf("open pod log: %w", err)
	}
	st, err := l.f.Stat()
	if err != nil {
		l.Close()
		return nil, err
	}
	l.size = st.Size()
	return l, nil
}

// open opens the log file in its directory for appending, never through a
// link, and only a regular file.
func (l *Log) open(extra int) (*os.File, error) {
	fd, err := unix.Openat(int(l.dir.Fd()), l.name,
		unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|extra, 0o640)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(l.dir.Name(), l.name), Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: filepath.Join(l.dir.Name(), l.name), Err: abi.ErrNotRegular}
	}
	return os.NewFile(uintptr(fd), filepath.Join(l.dir.Name(), l.name)), nil
}

// append writes b (whole entries) with one write; it rotates first when b
// would take the file beyond its cap. Errors are dropped: the log never stops
// the app's output.
func (l *Log) append(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if l.size > 0 && l.size+int64(len(b)) > l.max {
		l.rotate()
	}
	n, _ := l.f.Write(b)
	l.size += int64(n)
}

// rotate moves the log to NAME.1 and starts a new one; when either step
// fails (something planted in the way), it empties the current file instead,
// so the log stays within its cap whatever happens.
func (l *Log) rotate() {
	d := int(l.dir.Fd())
	if unix.Renameat(d, l.name, d, l.name+".1") == nil {
		if f, err := l.open(unix.O_EXCL | unix.O_TRUNC); err == nil {
			l.f.Close()
			l.f, l.size = f, 0
			return
		}
	}
	if l.f.Truncate(0) == nil {
		l.size = 0
	}
}

// Close closes the log file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.dir.Close()
	l.f = nil
	return err
}

// Tee is one pipe an app writes to.
type Tee struct {
	w    *os.File // the app's end
	done chan struct{}
}

// Tee makes a pipe whose reader copies to out (nil: nowhere) and logs lines
// as app's stream. Give W to the app; call CloseWriter once no new app process
// can get it, then Wait.
func (l *Log) Tee(app, stream string, out *os.File) (*Tee, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	t := &Tee{w: w, done: make(chan struct{})}
	turn := l.outLock(out)
	go func() {
		defer close(t.done)
		defer r.Close()
		l.copy(r, out, turn, app, stream)
	}()
	return t, nil
}

// outLock is the lock of out's file, shared by every tee that writes to it.
func (l *Log) outLock(out *os.File) *sync.Mutex {
	if out == nil {
		return &sync.Mutex{}
	}
	var st unix.Stat_t
	if unix.Fstat(int(out.Fd()), &st) != nil {
		return &sync.Mutex{}
	}
	id := fileID{uint64(st.Dev), st.Ino}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.outs == nil {
		l.outs = map[fileID]*sync.Mutex{}
	}
	if l.outs[id] == nil {
		l.outs[id] = &sync.Mutex{}
	}
	return l.outs[id]
}

// W is the pipe's write end, for the app.
func (t *Tee) W() *os.File { return t.w }

// CloseWriter closes this process's copy of the write end: the tee ends when
// every app process holding it has ended too.
func (t *Tee) CloseWriter() { t.w.Close() }

// Wait waits for the tee to have copied everything, at most timeout.
func (t *Tee) Wait(timeout time.Duration) bool {
	select {
	case <-t.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (l *Log) copy(r, out *os.File, turn *sync.Mutex, app, stream string) {
	buf := make([]byte, 64<<10)
	var line, entries []byte
	entry := abi.LogEntry{App: app, Stream: stream}
	emit := func(text []byte, partial bool) {
		for len(text) > maxLine || (partial && len(text) == maxLine) {
			entry.Text, entry.Partial = text[:maxLine], true
			entries = entry.Append(entries)
			text = text[maxLine:]
		}
		if len(text) > 0 || !partial {
			entry.Text, entry.Partial = text, partial
			entries = entry.Append(entries)
		}
	}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if out != nil {
				turn.Lock()
				_, werr := out.Write(chunk)
				turn.Unlock()
				if errors.Is(werr, syscall.EPIPE) {
					out = nil // the reader went away: so does our end, and the app gets EPIPE
					err = werr
				}
			}
			entry.Time = time.Now()
			entries = entries[:0]
			for len(chunk) > 0 {
				i := bytes.IndexByte(chunk, '\n')
				if i < 0 {
					line = append(line, chunk...)
					break
				}
				line = append(line, chunk[:i]...)
				chunk = chunk[i+1:]
				emit(line, false)
				line = line[:0]
			}
			if len(line) >= maxLine { // the whole parts of a long unfinished line
				n := len(line) - len(line)%maxLine
				emit(line[:n], true)
				line = append(line[:0], line[n:]...)
			}
			if len(entries) > 0 {
				l.append(entries)
			}
		}
		if err != nil {
			break
		}
	}
	if len(line) > 0 { // output that ended without a newline
		entries = entries[:0]
		entry.Time = time.Now()
		emit(line, true)
		l.append(entries)
	}
}
