package layer

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

// The read-ahead hands over r's content unchanged, whatever its size against
// the chunks and however the consumer reads it.
func TestReadAheadContent(t *testing.T) {
	for _, n := range []int{0, 1, aheadChunk - 1, aheadChunk, aheadChunk + 1, (aheadChunks+3)*aheadChunk + 17} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + i/aheadChunk)
		}
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"whole":    func(r io.Reader) io.Reader { return r },
			"one byte": iotest.OneByteReader,
			"half":     iotest.HalfReader,
		} {
			closed := make(chan struct{})
			r, stop := readAhead(wrap(bytes.NewReader(data)), func() { close(closed) })
			got, err := io.ReadAll(iotest.HalfReader(r))
			stop()
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%d bytes read %s: got %d bytes, %v; want them unchanged", n, name, len(got), err)
			}
			waitClosed(t, closed)
		}
	}
}

// r's error comes after all that r read before it, and keeps coming.
func TestReadAheadError(t *testing.T) {
	boom := errors.New("boom")
	data := bytes.Repeat([]byte("x"), 3*aheadChunk+5)
	r, stop := readAhead(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), func() {})
	defer stop()
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, %v; want %d, then %v", len(got), err, len(data), boom)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, boom) {
		t.Errorf("read after the error: %d, %v", n, err)
	}
	// io.ErrUnexpectedEOF (a truncated stream) stays what it is.
	r2, stop2 := readAhead(iotest.ErrReader(io.ErrUnexpectedEOF), func() {})
	defer stop2()
	if _, err := io.ReadAll(r2); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated stream: %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

// A consumer that stops early (an extraction that failed) stops the
// producer, which reads no further ahead than its chunks and closes r.
func TestReadAheadStop(t *testing.T) {
	src := &countingReader{r: bytes.NewReader(make([]byte, 100*aheadChunk))}
	closed := make(chan struct{})
	r, stop := readAhead(src, func() { close(closed) })
	if _, err := io.ReadFull(r, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // twice is fine
	waitClosed(t, closed)
	if max := int64((aheadChunks + 2) * aheadChunk); src.n > max {
		t.Errorf("the producer read %d bytes ahead, more than %d", src.n, max)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func waitClosed(t *testing.T, closed <-chan struct{}) {
	t.Helper()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the producer did not close its reader")
	}
}
