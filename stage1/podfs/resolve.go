package podfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLinks is how many symlinks a path may go through, as the kernel's
// MAXSYMLINKS allows (40) with room: more is a loop.
const maxLinks = 255

// entry is what a lookup finds at a path of an app's rootfs.
type entry struct {
	exists bool
	link   string // the target, when it is a symlink
	isLink bool
}

// lookupFunc looks up one path of an app's rootfs (relative, clean, with no
// symlink among its parents).
type lookupFunc func(rel string) (entry, error)

// Resolve is p, a path inside an app whose rootfs is at root, with every
// symlink among its existing components followed inside that rootfs, as if
// root were "/" (an absolute target starts again at root, ".." stops at it),
// the way runc resolves a mount's destination in a container's rootfs. The
// result is absolute in the app's terms and has no symlink component, so a
// mount made at root+result lands in the rootfs, never outside it.
// Components that do not exist are kept as they are.
func Resolve(root, p string) (string, error) {
	return resolve(diskLookup(root), p)
}

// ResolveLayers is Resolve for a rootfs not mounted yet: an overlay of
// layers (the topmost first: its upper directory, then its lower layers),
// looked up as overlayfs would merge them (whiteouts, opaque directories).
func ResolveLayers(layers []string, p string) (string, error) {
	return resolve(layersLookup(layers), p)
}

func resolve(lookup lookupFunc, p string) (string, error) {
	var done []string // resolved components, none a symlink
	rest := p
	links := 0
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, "/")
		switch part {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		next := path.Join(append(done, part)...)
		e, err := lookup(next)
		if err != nil {
			return "", fmt.Errorf("resolve %s in the app's rootfs: %w", p, err)
		}
		if !e.isLink {
			done = append(done, part)
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("resolve %s in the app's rootfs: %w", p, unix.ELOOP)
		}
		if strings.HasPrefix(e.link, "/") {
			done = done[:0]
		}
		rest = e.link + "/" + rest
	}
	return "/" + path.Join(done...), nil
}

// diskLookup looks paths up in a rootfs on disk. Parents are symlink-free by
// construction, so Lstat resolves nothing.
func diskLookup(root string) lookupFunc {
	return func(rel string) (entry, error) {
		p := filepath.Join(root, rel)
		st, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
			return entry{}, nil
		case err != nil:
			return entry{}, err
		case st.Mode()&fs.ModeSymlink == 0:
			return entry{exists: true}, nil
		}
		t, err := os.Readlink(p)
		if err != nil {
			return entry{}, err
		}
		return entry{exists: true, isLink: true, link: t}, nil
	}
}

// layersLookup looks paths up in an overlay's layers, topmost first: the
// first layer that has the path decides, a whiteout (a 0/0 character device)
// hides it, and a parent that is opaque, or not a directory, in a layer hides
// the layers below. A missing layer directory (an upper not made yet) is
// empty.
func layersLookup(layers []string) lookupFunc {
	return func(rel string) (entry, error) {
		dir, name := path.Split(rel)
		for _, l := range layers {
			e, stop, err := layerEntry(l, dir, name)
			if err != nil || e.exists || stop {
				return e, err
			}
		}
		return entry{}, nil
	}
}

// layerEntry looks up name in directory dir of one layer, following no
// symlink on the way (openat O_NOFOLLOW, one component at a time). stop says
// the layers below must not be consulted.
func layerEntry(layer, dir, name string) (e entry, stop bool, err error) {
	lfd, err := unix.Open(layer, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return entry{}, false, nil
	}
	if err != nil {
		return entry{}, true, err
	}
	defer unix.Close(lfd)
	// walk down one directory at a time, following nothing; an opaque
	// directory on the way hides the layers below for all it holds
	dfd, hidden := lfd, false
	for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
		if c == "" {
			continue
		}
		fd, err := unix.Openat(dfd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case errors.Is(err, unix.ENOENT):
			return entry{}, hidden, nil
		case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
			// a file, a whiteout or a symlink here: the directory the
			// path is in comes from a layer above
			return entry{}, true, nil
		case err != nil:
			return entry{}, true, err
		}
		defer unix.Close(fd)
		dfd = fd
		hidden = hidden || opaque(dfd)
	}
	var st unix.Stat_t
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return entry{}, hidden || opaque(dfd), nil
	case err != nil:
		return entry{}, true, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 { // whiteout
			return entry{}, true, nil
		}
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return entry{}, true, err
		}
		return entry{exists: true, isLink: true, link: string(buf[:n])}, true, nil
	}
	return entry{exists: true}, true, nil
}

// opaque says whether the directory dfd (an O_PATH descriptor) is an opaque
// overlay directory.
func opaque(dfd int) bool {
	v := make([]byte, 1)
	n, err := unix.Getxattr(fmt.Sprintf("/proc/self/fd/%d", dfd), "trusted.overlay.opaque", v)
	return err == nil && n == 1 && v[0] == 'y'
}
