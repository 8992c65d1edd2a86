// Package directio writes files around the page cache (O_DIRECT): the store's
// layer blobs and the large files of the layers it extracts. A fetch writes
// each layer twice, its blob and its files, syncs both before their renames
// anyway and reads few of those bytes back soon; through the page cache it
// would also fill the host's memory with them (on a VM, pages it has not used
// lately cost it more to write than the disk does: bench/README.md,
// fetch-big).
package directio

import (
	"errors"
	"io"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Chunk is the size of a direct write: a file gets direct writes once it has
// a whole chunk to write, so files under Chunk go through the page cache.
const Chunk = 1 << 20

// Writer writes a file a chunk at a time from a page-aligned buffer, around
// the page cache once the first whole chunk is there, and its last partial
// chunk through the page cache (a direct write must be whole blocks). On a
// filesystem that refuses direct I/O (EINVAL when it is turned on or at a
// write) it writes through the page cache.
type Writer struct {
	f      *os.File
	buf    []byte // page-aligned, Chunk bytes (anonymous mmap); nil: writes go straight to f
	n      int    // bytes of buf filled
	direct bool   // O_DIRECT is on for f
	tried  bool   // turning it on was tried
}

// NewWriter returns a writer to f. Finish must be called once all is
// written, before f is synced; Release frees the buffer of a writer given up
// on.
func NewWriter(f *os.File) *Writer {
	return &Writer{f: f, buf: getBuf()}
}

func (w *Writer) Write(p []byte) (int, error) {
	if w.buf == nil {
		return w.f.Write(p)
	}
	total := 0
	for len(p) > 0 {
		c := copy(w.buf[w.n:], p)
		w.n += c
		p = p[c:]
		total += c
		if w.n == len(w.buf) {
			if err := w.flush(); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// ReadFrom reads r to its end straight into the buffer (io.Copy uses it: no
// copy of each chunk from io.Copy's buffer into ours).
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.buf == nil {
		return io.Copy(struct{ io.Writer }{w.f}, r)
	}
	var total int64
	for {
		// Read, not io.ReadFull: r's own io.ErrUnexpectedEOF (a tar
		// whose file ends early) must stay an error.
		n, err := r.Read(w.buf[w.n:])
		w.n += n
		total += int64(n)
		if w.n == len(w.buf) {
			if ferr := w.flush(); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// flush writes the filled part of buf: a whole chunk (direct from the first
// one on), or the tail once direct I/O is off.
func (w *Writer) flush() error {
	if !w.tried && w.n == len(w.buf) {
		w.tried = true
		w.direct = Set(w.f, true) == nil
	}
	n, err := w.f.Write(w.buf[:w.n])
	if err != nil && w.direct && errors.Is(err, unix.EINVAL) {
		// Refused for this file after all: the rest through the page cache.
		w.direct = false
		if err = Set(w.f, false); err == nil {
			_, err = w.f.Write(w.buf[n:w.n])
		}
	}
	w.n = 0
	return err
}

// Finish writes what is buffered (through the page cache) and releases the
// buffer; f stays open, without O_DIRECT.
func (w *Writer) Finish() error {
	if w.buf == nil {
		return nil
	}
	var err error
	if w.direct {
		w.direct = false
		err = Set(w.f, false)
	}
	w.tried = true // the tail is never direct
	if err == nil && w.n > 0 {
		err = w.flush()
	}
	w.Release()
	return err
}

// Release frees the buffer, dropping what it holds; a no-op after Finish.
func (w *Writer) Release() {
	if w.buf != nil {
		putBuf(w.buf)
		w.buf = nil
	}
}

// free keeps buffers for the next files, one per CPU (a fetch extracts a
// layer per CPU at once, and all its files but programs and libraries go
// through a Writer): a new mapping costs an mmap, a munmap and its pages'
// faults on their first write.
var free = make(chan []byte, max(4, runtime.GOMAXPROCS(0)))

func getBuf() []byte {
	select {
	case b := <-free:
		return b
	default:
	}
	b, err := unix.Mmap(-1, 0, Chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	return b
}

func putBuf(b []byte) {
	select {
	case free <- b:
	default:
		_ = unix.Munmap(b)
	}
}

// Set turns O_DIRECT on or off for f's open file.
func Set(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			serr = err
			return
		}
		if on {
			fl |= unix.O_DIRECT
		} else {
			fl &^= unix.O_DIRECT
		}
		_, serr = unix.FcntlInt(fd, unix.F_SETFL, fl)
	})
	if err != nil {
		return err
	}
	return serr
}

var (
	_ io.Writer     = (*Writer)(nil)
	_ io.ReaderFrom = (*Writer)(nil)
)
