package layer

import "io"

// Read-ahead of a decompressor: while the extractor parses the tar, hashes
// it and writes its files (a third of its time is the kernel's), the next
// chunks are decompressed on a goroutine of their own, so that a layer's
// extraction uses two cores instead of one. A single-layer image (Debian's
// nginx: 51 MB of gzip, 121 MB of tar) spent half its extraction in gzip.
const (
	aheadChunk  = 256 << 10
	aheadChunks = 4 // at most this many chunks decompressed and not yet read
)

// aheadReader reads what a producer goroutine reads from r, up to
// aheadChunks chunks ahead. The producer owns r: it calls closeR when it
// stops, at r's end or error, or once stop is called (a reader that is never
// read to its end leaves a producer blocked in r's Read until r returns;
// Extract's callers' readers do: a file, or a pipe that they close).
type aheadReader struct {
	ch   chan aheadChunkRead // chunks in order; the last one carries r's error
	free chan []byte         // buffers the consumer is done with
	done chan struct{}       // closed by stop
	cur  []byte              // the unread rest of the current chunk
	buf  []byte              // the current chunk's buffer
	err  error               // r's error, once its chunk is read
}

type aheadChunkRead struct {
	b   []byte
	err error
}

// readAhead starts reading r ahead and returns the reader of its content and
// the function that stops the read-ahead (and makes it call closeR).
func readAhead(r io.Reader, closeR func()) (io.Reader, func()) {
	a := &aheadReader{
		ch:   make(chan aheadChunkRead, aheadChunks),
		free: make(chan []byte, aheadChunks+1),
		done: make(chan struct{}),
	}
	go a.produce(r, closeR)
	stopped := false
	return a, func() {
		if !stopped {
			stopped = true
			close(a.done)
		}
	}
}

func (a *aheadReader) produce(r io.Reader, closeR func()) {
	defer closeR()
	for {
		var buf []byte
		select {
		case buf = <-a.free:
		default:
			buf = make([]byte, aheadChunk)
		}
		n, err := fill(r, buf)
		select {
		case a.ch <- aheadChunkRead{buf[:n], err}:
		case <-a.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (a *aheadReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)] // never blocks: at most aheadChunks+1 buffers exist
			a.buf = nil
		}
		c := <-a.ch
		a.cur, a.buf, a.err = c.b, c.b, c.err
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// fill reads from r until buf is full or r fails, and returns r's error as
// it is (io.ReadFull would turn a decompressor's io.EOF into
// io.ErrUnexpectedEOF, and hide its io.ErrUnexpectedEOF among those).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
