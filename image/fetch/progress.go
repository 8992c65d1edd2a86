package fetch

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// progress reports layer downloads: on a terminal, one bar per layer redrawn
// in place; elsewhere one line per layer when it is done. A nil *progress
// reports nothing.
type progress struct {
	w     io.Writer
	image string
	bars  bool
	mu    sync.Mutex
	items []*progressItem
	drawn int // lines drawn last time (bars)
	quit  chan struct{}
	done  chan struct{}
}

type progressItem struct {
	p     *progress
	id    string
	size  int64
	n     atomic.Int64
	start time.Time
	state atomic.Value // string: "" while downloading, then the final word
}

func newProgress(opts Options, image string) *progress {
	if opts.Progress == nil {
		return nil
	}
	p := &progress{w: opts.Progress, image: image, bars: opts.ProgressBars}
	if p.bars {
		p.quit, p.done = make(chan struct{}), make(chan struct{})
		go p.loop()
	}
	return p
}

func (p *progress) add(d digest.Digest, size int64) *progressItem {
	if p == nil {
		return nil
	}
	it := &progressItem{p: p, id: shortID(d), size: size, start: time.Now()}
	it.state.Store("")
	p.mu.Lock()
	p.items = append(p.items, it)
	p.mu.Unlock()
	return it
}

func shortID(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

// reader counts what passes through r.
func (it *progressItem) reader(r io.Reader) io.Reader {
	if it == nil {
		return r
	}
	return &countingReader{r: r, n: &it.n}
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// finish marks the layer done (note says how, when it was not downloaded).
func (it *progressItem) finish(note string, err error) {
	if it == nil {
		return
	}
	switch {
	case err != nil:
		note = "failed"
	case note == "":
		secs := time.Since(it.start).Seconds()
		note = fmt.Sprintf("fetched %s in %.1fs", mb(it.n.Load()), secs)
	}
	it.state.Store(note)
	if !it.p.bars {
		it.p.mu.Lock()
		fmt.Fprintf(it.p.w, "%s: layer %s: %s\n", it.p.image, it.id, note)
		it.p.mu.Unlock()
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			p.draw()
			return
		case <-t.C:
			p.draw()
		}
	}
}

// draw redraws every bar: up over the previous drawing, then one line each.
func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for _, it := range p.items {
		n, state := it.n.Load(), it.state.Load().(string)
		frac := 1.0
		if it.size > 0 && state == "" {
			frac = min(float64(n)/float64(it.size), 1)
		}
		const width = 30
		fill := int(frac * width)
		rate := float64(n) / max(time.Since(it.start).Seconds(), 0.001) / 1e6
		fmt.Fprintf(&b, "\x1b[2K%s [%s%s] %s / %s  %.1f MB/s %s\n", it.id, strings.Repeat("=", fill),
			strings.Repeat(" ", width-fill), mb(n), mb(it.size), rate, state)
	}
	p.drawn = len(p.items)
	io.WriteString(p.w, b.String())
}

// stop draws the final state and stops redrawing.
func (p *progress) stop() {
	if p == nil || !p.bars {
		return
	}
	close(p.quit)
	<-p.done
}
