package appc

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"

	"github.com/skiff-project/skiff/image/layer"
)

// ErrNoManifest is returned for an archive without a manifest file.
var ErrNoManifest = errors.New("no manifest in the image archive")

// decompress detects gzip, bzip2 and xz by their magic numbers; anything else
// is read as a plain tar.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return bufio.NewReaderSize(zr, 1<<16), nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bufio.NewReaderSize(bzip2.NewReader(br), 1<<16), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return bufio.NewReaderSize(xr, 1<<16), nil
	}
	return br, nil
}

// entryKind sorts an ACI's tar entries: the manifest, the rootfs directory
// itself, an entry under rootfs/ (rel is its path inside), or the root.
type entryKind int

const (
	entryRoot entryKind = iota
	entryManifest
	entryRootfsDir
	entryRootfs
)

func classify(name string) (kind entryKind, rel string, err error) {
	clean := path.Clean("/" + name)
	switch {
	case clean == "/":
		return entryRoot, "", nil
	case clean == "/manifest":
		return entryManifest, "", nil
	case clean == "/rootfs":
		return entryRootfsDir, "", nil
	case strings.HasPrefix(clean, "/rootfs/"):
		return entryRootfs, clean[len("/rootfs/"):], nil
	}
	return 0, "", fmt.Errorf("entry %q is outside manifest and rootfs/", name)
}

// readManifest returns the manifest file of the ACI read from r, reading only
// as far as the manifest.
func readManifest(r io.Reader) ([]byte, error) {
	dr, err := decompress(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(dr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, ErrNoManifest
		}
		if err != nil {
			return nil, fmt.Errorf("reading image archive: %w", err)
		}
		if kind, _, err := classify(hdr.Name); err != nil {
			return nil, err
		} else if kind == entryManifest {
			return readManifestEntry(hdr, tr)
		}
	}
}

func readManifestEntry(hdr *tar.Header, r io.Reader) ([]byte, error) {
	if hdr.Typeflag != tar.TypeReg {
		return nil, errors.New("manifest is not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if len(data) > maxManifest {
		return nil, fmt.Errorf("manifest larger than %d bytes", maxManifest)
	}
	return data, nil
}

// paxPathKeys are the PAX records archive/tar derives header fields from;
// they are dropped when an entry is renamed so the new name wins.
var paxPathKeys = []string{"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime"}

// converted is what one pass over an ACI found.
type converted struct {
	manifest  []byte        // the manifest file
	aci       digest.Digest // sha256 of the ACI file as read (compressed)
	diffID    digest.Digest // sha256 of the layer tar written
	layerSize int64
}

// convert reads the ACI file at file and writes to w a tar of its rootfs/
// entries re-rooted at "/" (names and hardlink targets lose "rootfs/"; every
// other property is kept). The output depends only on the file's bytes, so
// two passes over the same file write the same layer.
func convert(ctx context.Context, file string, w io.Writer) (converted, error) {
	var c converted
	f, err := os.Open(file)
	if err != nil {
		return c, err
	}
	defer f.Close()
	fileHash, layerHash := sha256.New(), sha256.New()
	raw := io.TeeReader(f, fileHash)
	dr, err := decompress(raw)
	if err != nil {
		return c, err
	}
	lim := layer.CurrentLimits()
	dr = &capped{r: dr, lim: lim}
	// The first pass (to io.Discard) refuses a layer over the limits before
	// the second writes anything to the store.
	counter := &countWriter{}
	tw := tar.NewWriter(io.MultiWriter(w, layerHash, counter))
	tr := tar.NewReader(dr)
	for entries := int64(0); ; entries++ {
		if err := ctx.Err(); err != nil {
			return c, err
		}
		if err := lim.CheckSize(counter.n); err != nil {
			return c, fmt.Errorf("image archive: %w", err)
		}
		if entries > lim.MaxEntries {
			return c, fmt.Errorf("image archive: %w: it has more than %d entries (the limit; raise it with skiff --max-layer-entries)", layer.ErrTooLarge, lim.MaxEntries)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return c, fmt.Errorf("reading image archive: %w", err)
		}
		kind, rel, err := classify(hdr.Name)
		if err != nil {
			return c, err
		}
		switch kind {
		case entryManifest:
			if c.manifest != nil {
				return c, errors.New("two manifest entries")
			}
			if c.manifest, err = readManifestEntry(hdr, tr); err != nil {
				return c, err
			}
		case entryRootfs:
			if err := copyEntry(tw, hdr, rel, tr); err != nil {
				return c, fmt.Errorf("rootfs entry %q: %w", hdr.Name, err)
			}
		}
	}
	if c.manifest == nil {
		return c, ErrNoManifest
	}
	if err := tw.Close(); err != nil {
		return c, err
	}
	if err := lim.CheckSize(counter.n); err != nil {
		return c, fmt.Errorf("image archive: %w", err)
	}
	if _, err := io.Copy(io.Discard, raw); err != nil { // hash the whole file
		return c, err
	}
	c.aci = digestOf(fileHash)
	c.diffID = digestOf(layerHash)
	c.layerSize = counter.n
	return c, nil
}

func copyEntry(tw *tar.Writer, hdr *tar.Header, rel string, r io.Reader) error {
	out := *hdr
	out.Name = rel
	if hdr.Typeflag == tar.TypeDir {
		out.Name += "/"
	}
	if hdr.Typeflag == tar.TypeLink {
		kind, target, err := classify(hdr.Linkname)
		if err != nil || kind != entryRootfs {
			return fmt.Errorf("hard link to %q, outside rootfs/", hdr.Linkname)
		}
		out.Linkname = target
	}
	if len(hdr.PAXRecords) > 0 {
		out.PAXRecords = map[string]string{}
		for k, v := range hdr.PAXRecords {
			out.PAXRecords[k] = v
		}
		for _, k := range paxPathKeys {
			delete(out.PAXRecords, k)
		}
	}
	out.Format = tar.FormatUnknown
	if err := tw.WriteHeader(&out); err != nil {
		return err
	}
	if out.Typeflag == tar.TypeReg {
		_, err := io.Copy(tw, r)
		return err
	}
	return nil
}

func digestOf(h hash.Hash) digest.Digest { return digest.NewDigest(digest.SHA256, h) }

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// capped fails once more than lim.MaxSize bytes were read: the uncompressed
// archive, of which the layer is nearly all.
type capped struct {
	r   io.Reader
	n   int64
	lim layer.Limits
}

func (c *capped) Read(p []byte) (int, error) {
	if err := c.lim.CheckSize(c.n); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err := c.lim.CheckSize(c.n); err != nil {
		return n, err
	}
	return n, err
}
