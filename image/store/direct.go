package store

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// directChunk is the size of a direct write, and the least blob size written
// that way: manifests and configs are read back at once, a layer's blob
// rarely (re-extraction, export, verify).
const directChunk = 1 << 20

// directWriter writes a blob's file around the page cache (O_DIRECT), a
// chunk at a time from a page-aligned buffer, and its last partial chunk
// through the page cache. A fetch also extracts every layer it stores, so
// through the page cache it wrote each layer's bytes into memory twice, and
// the blob's copy, which is fsynced before its rename anyway, is the one
// nothing reads soon. On a filesystem that refuses direct I/O (EINVAL when
// it is turned on or at a write) it writes through the page cache.
type directWriter struct {
	f      *os.File
	buf    []byte // page-aligned, directChunk bytes (anonymous mmap)
	n      int    // bytes of buf filled
	direct bool
}

// newDirectWriter returns a writer to f, direct when f's filesystem allows
// it. Finish must be called once all is written, before f is synced;
// release frees the buffer of a writer given up on.
func newDirectWriter(f *os.File) *directWriter {
	w := &directWriter{f: f}
	buf, err := unix.Mmap(-1, 0, directChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return w // buf nil: Write writes through
	}
	w.buf = buf
	w.direct = setDirect(f, true) == nil
	return w
}

func (w *directWriter) Write(p []byte) (int, error) {
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

// flush writes the filled part of buf: a whole chunk, or the tail once
// direct I/O is off.
func (w *directWriter) flush() error {
	n, err := w.f.Write(w.buf[:w.n])
	if err != nil && w.direct && errors.Is(err, unix.EINVAL) {
		// Refused for this file after all: the rest through the page cache.
		w.direct = false
		if err = setDirect(w.f, false); err == nil {
			_, err = w.f.Write(w.buf[n:w.n])
		}
	}
	w.n = 0
	return err
}

// Finish writes what is buffered (through the page cache: a direct write
// must be whole blocks) and releases the buffer; f stays open.
func (w *directWriter) Finish() error {
	if w.buf == nil {
		return nil
	}
	var err error
	if w.direct {
		w.direct = false
		err = setDirect(w.f, false)
	}
	if err == nil && w.n > 0 {
		err = w.flush()
	}
	if uerr := w.release(); err == nil {
		err = uerr
	}
	return err
}

// release frees the buffer, dropping what it holds; a no-op after Finish.
func (w *directWriter) release() error {
	if w.buf == nil {
		return nil
	}
	err := unix.Munmap(w.buf)
	w.buf = nil
	return err
}

// setDirect turns O_DIRECT on or off for f's open file.
func setDirect(f *os.File, on bool) error {
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

var _ io.Writer = (*directWriter)(nil)
