package layer

import (
	"bytes"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// memFS is an in-memory fsys for the fuzzer: no syscalls, no random names,
// no pools, so one input always takes the same path through the code (the
// fuzzer's coverage is repeatable and it runs thousands of inputs a second).
// It resolves paths the way the kernel does (symlinks in every component
// but, for the calls that do not follow, the last; ".." climbing, ELOOP
// after 40 links), so what the extractor asks of it lands where it would
// land on a real filesystem. Its tree holds /sandbox/root, the layer root,
// beside /sandbox/outside/sentinel; checkContained fails the test if
// anything outside the root changed.
type memFS struct {
	root     *mnode
	sandbox  *mnode
	lroot    *mnode
	outside  *mnode
	sentinel *mnode
	snapshot map[*mnode]string
}

type mnode struct {
	mode   uint32 // S_IF* | permissions
	kids   map[string]*mnode
	target string // a symlink's
	size   int64
	uid    int
	gid    int
	rdev   int
	nlink  int
	xattrs map[string]string
	atime  unix.Timespec
	mtime  unix.Timespec
	timed  bool // times set by Utimes (the host's would be the creation's)
}

const (
	memRoot    = "/sandbox/root"
	memOutside = "/sandbox/outside"
)

func newMemFS() *memFS {
	m := &memFS{}
	m.root = newNode(unix.S_IFDIR | 0o755)
	m.sandbox = newNode(unix.S_IFDIR | 0o755)
	m.lroot = newNode(unix.S_IFDIR | 0o755)
	m.outside = newNode(unix.S_IFDIR | 0o755)
	m.sentinel = newNode(unix.S_IFREG | 0o644)
	m.sentinel.size = 4
	m.root.kids["sandbox"] = m.sandbox
	m.sandbox.kids["root"] = m.lroot
	m.sandbox.kids["outside"] = m.outside
	m.outside.kids["sentinel"] = m.sentinel
	m.snapshot = map[*mnode]string{}
	for _, n := range []*mnode{m.root, m.sandbox, m.outside, m.sentinel} {
		m.snapshot[n] = n.describe()
	}
	return m
}

func newNode(mode uint32) *mnode {
	n := &mnode{mode: mode, nlink: 1}
	if mode&unix.S_IFMT == unix.S_IFDIR {
		n.kids = map[string]*mnode{}
	}
	return n
}

func (n *mnode) isDir() bool  { return n.mode&unix.S_IFMT == unix.S_IFDIR }
func (n *mnode) isLink() bool { return n.mode&unix.S_IFMT == unix.S_IFLNK }

// describe renders what checkContained compares (a directory's entries by name and identity).
func (n *mnode) describe() string {
	var b strings.Builder
	b.WriteString(strings.Join([]string{
		itoa(int64(n.mode)), n.target, itoa(n.size), itoa(int64(n.uid)), itoa(int64(n.gid)),
		itoa(int64(n.rdev)), itoa(int64(n.nlink)), itoa(n.atime.Nano()), itoa(n.mtime.Nano()),
	}, ","))
	keys := make([]string, 0, len(n.xattrs))
	for k := range n.xattrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(" x:" + k + "=" + n.xattrs[k])
	}
	names := make([]string, 0, len(n.kids))
	for k := range n.kids {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b.WriteString(" k:" + k)
	}
	return b.String()
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// checkContained fails t if anything but the layer root's content changed:
// the nodes above and beside it, the sentinel (its link count too, so a hard
// link to it is caught), and which nodes the names point at.
func (m *memFS) checkContained(t testing.TB) {
	t.Helper()
	for n, was := range m.snapshot {
		if now := n.describe(); now != was {
			t.Fatalf("extraction changed a node outside the layer root: %q, was %q", now, was)
		}
	}
	if m.root.kids["sandbox"] != m.sandbox || m.sandbox.kids["root"] != m.lroot ||
		m.sandbox.kids["outside"] != m.outside || m.outside.kids["sentinel"] != m.sentinel {
		t.Fatal("extraction replaced a node outside the layer root")
	}
}

func errno(op, name string, e syscall.Errno) error { return &os.PathError{Op: op, Path: name, Err: e} }

// resolve walks name like the kernel: it returns the directory holding the
// last component, that component, and the node it names (nil if none).
// follow says whether a symlink as the last component is followed. When
// name ends at a directory reached through "..", "." or "/", base is ".".
func (m *memFS) resolve(op, name string, follow bool) (dir *mnode, base string, n *mnode, err error) {
	if !strings.HasPrefix(name, "/") {
		return nil, "", nil, errno(op, name, unix.EINVAL)
	}
	if len(name) >= unix.PathMax {
		return nil, "", nil, errno(op, name, unix.ENAMETOOLONG)
	}
	comps := splitPath(name)
	stack := []*mnode{m.root}
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		cur := stack[len(stack)-1]
		if !cur.isDir() {
			return nil, "", nil, errno(op, name, unix.ENOTDIR)
		}
		if len(c) > 255 {
			return nil, "", nil, errno(op, name, unix.ENAMETOOLONG)
		}
		if c == ".." {
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		last := len(comps) == 0
		child := cur.kids[c]
		if child != nil && child.isLink() && (!last || follow) {
			if links++; links > 40 {
				return nil, "", nil, errno(op, name, unix.ELOOP)
			}
			if child.target == "" {
				return nil, "", nil, errno(op, name, unix.ENOENT)
			}
			if strings.HasPrefix(child.target, "/") {
				stack = stack[:1]
			}
			comps = append(splitPath(child.target), comps...)
			continue
		}
		if last {
			return cur, c, child, nil
		}
		if child == nil {
			return nil, "", nil, errno(op, name, unix.ENOENT)
		}
		stack = append(stack, child)
	}
	return nil, ".", stack[len(stack)-1], nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// existing resolves name to a node that must exist.
func (m *memFS) existing(op, name string, follow bool) (*mnode, error) {
	_, _, n, err := m.resolve(op, name, follow)
	if err == nil && n == nil {
		err = errno(op, name, unix.ENOENT)
	}
	return n, err
}

// create adds n as name, which must not exist (a symlink there is not followed).
func (m *memFS) create(op, name string, n *mnode) error {
	dir, base, old, err := m.resolve(op, name, false)
	if err != nil {
		return err
	}
	if old != nil || dir == nil {
		return errno(op, name, unix.EEXIST)
	}
	dir.kids[base] = n
	return nil
}

type memInfo struct {
	name string
	n    *mnode
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.n.size }
func (i memInfo) ModTime() time.Time { return time.Unix(i.n.mtime.Unix()) }
func (i memInfo) IsDir() bool        { return i.n.isDir() }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() os.FileMode {
	mode := os.FileMode(i.n.mode & 0o777)
	switch i.n.mode & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	}
	return mode
}

func (m *memFS) Lstat(name string) (os.FileInfo, error) {
	_, base, n, err := m.resolve("lstat", name, false)
	if err == nil && n == nil {
		err = errno("lstat", name, unix.ENOENT)
	}
	if err != nil {
		return nil, err
	}
	return memInfo{base, n}, nil
}

func (m *memFS) Readlink(name string) (string, error) {
	n, err := m.existing("readlink", name, false)
	if err != nil {
		return "", err
	}
	if !n.isLink() {
		return "", errno("readlink", name, unix.EINVAL)
	}
	return n.target, nil
}

// MkdirAll is os.MkdirAll's algorithm on memFS.
func (m *memFS) MkdirAll(name string) error {
	if n, err := m.existing("stat", name, true); err == nil {
		if n.isDir() {
			return nil
		}
		return errno("mkdir", name, unix.ENOTDIR)
	}
	i := len(name)
	for i > 0 && name[i-1] == '/' {
		i--
	}
	j := i
	for j > 0 && name[j-1] != '/' {
		j--
	}
	if j > 1 {
		if err := m.MkdirAll(name[:j-1]); err != nil {
			return err
		}
	}
	err := m.Mkdir(name, 0o755)
	if err != nil {
		if fi, err1 := m.Lstat(name); err1 == nil && fi.IsDir() {
			return nil
		}
	}
	return err
}

func (m *memFS) Mkdir(name string, perm uint32) error {
	return m.create("mkdir", name, newNode(unix.S_IFDIR|perm&0o7777))
}

func (m *memFS) RemoveAll(name string) error {
	if strings.HasSuffix(name, "/.") || name == "." {
		return errno("RemoveAll", name, unix.EINVAL)
	}
	dir, base, n, err := m.resolve("unlinkat", name, false)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	if n == nil {
		return nil
	}
	if dir == nil {
		return errno("unlinkat", name, unix.EBUSY) // "/" or a name ending in ".."
	}
	delete(dir.kids, base)
	unlinkTree(n)
	return nil
}

func unlinkTree(n *mnode) {
	n.nlink--
	for _, k := range n.kids {
		unlinkTree(k)
	}
}

func (m *memFS) WriteFile(name string, r io.Reader) error {
	n := newNode(unix.S_IFREG | 0o600)
	if err := m.create("open", name, n); err != nil {
		return err
	}
	size, err := io.Copy(io.Discard, r)
	n.size = size
	return err
}

func (m *memFS) Symlink(target, name string) error {
	if target == "" {
		return errno("symlink", name, unix.ENOENT)
	}
	if len(target) >= unix.PathMax {
		return errno("symlink", name, unix.ENAMETOOLONG)
	}
	n := newNode(unix.S_IFLNK | 0o777)
	n.target = target
	return m.create("symlink", name, n)
}

func (m *memFS) Link(oldname, newname string) error {
	old, err := m.existing("link", oldname, false)
	if err != nil {
		return err
	}
	if old.isDir() {
		return errno("link", oldname, unix.EPERM)
	}
	if err := m.create("link", newname, old); err != nil {
		return err
	}
	old.nlink++
	return nil
}

func (m *memFS) Mknod(name string, mode uint32, dev int) error {
	n := newNode(mode)
	n.rdev = dev
	return m.create("mknod", name, n)
}

func (m *memFS) Lsetxattr(name, attr string, value []byte) error {
	n, err := m.existing("lsetxattr", name, false)
	if err != nil {
		return err
	}
	// The kernel's checks (as root): a name of 1-255 bytes in a namespace
	// it knows, a value of at most 64 KiB, user.* only on files and
	// directories.
	switch {
	case len(attr) == 0 || len(attr) > 255:
		return errno("lsetxattr", name, unix.ERANGE)
	case len(value) > 64<<10:
		return errno("lsetxattr", name, unix.E2BIG)
	case strings.HasPrefix(attr, "user."):
		if t := n.mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
			return errno("lsetxattr", name, unix.EPERM)
		}
	case !strings.HasPrefix(attr, "trusted.") && !strings.HasPrefix(attr, "security."):
		return errno("lsetxattr", name, unix.EOPNOTSUPP)
	}
	if n.xattrs == nil {
		n.xattrs = map[string]string{}
	}
	n.xattrs[attr] = string(value)
	return nil
}

func (m *memFS) Lchown(name string, uid, gid int) error {
	n, err := m.existing("lchown", name, false)
	if err == nil {
		n.uid, n.gid = uid, gid
	}
	return err
}

func (m *memFS) Chmod(name string, mode uint32) error {
	n, err := m.existing("chmod", name, true)
	if err == nil {
		n.mode = n.mode&unix.S_IFMT | mode&0o7777
	}
	return err
}

func (m *memFS) Utimes(name string, ts []unix.Timespec) error {
	n, err := m.existing("utimensat", name, false)
	if err == nil {
		n.atime, n.mtime, n.timed = ts[0], ts[1], true
	}
	return err
}

// TestMemFSMatchesHost extracts FuzzExtract's seeds and corpus (and, with
// SKIFF_EXTRACT_CORPUS=DIR, the files of a fuzzing cache directory) both on
// the host and on memFS: the two must agree on success and leave the same
// tree (names, types, modes, owners, sizes, link targets and counts,
// device numbers, times), or the fuzzer would not be fuzzing what runs.
func TestMemFSMatchesHost(t *testing.T) {
	needRoot(t)
	defer unix.Umask(unix.Umask(0o022))
	inputs := map[string][]byte{}
	for i, s := range extractSeeds {
		inputs["seed"+strconv.Itoa(i)] = []byte(s)
	}
	for _, dir := range []string{"testdata/fuzz/FuzzExtract", os.Getenv("SKIFF_EXTRACT_CORPUS")} {
		if dir == "" {
			continue
		}
		names, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, name := range names {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			lit, ok := strings.CutPrefix(lines[1], "[]byte(")
			if !ok {
				t.Fatalf("%s: not a []byte corpus file", name)
			}
			data, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			inputs[filepath.Base(name)] = []byte(data)
		}
	}
	lim := Limits{MaxSize: 4 << 20, MaxEntries: 1000}
	for name, data := range inputs {
		layer := fuzzLayer(data)
		root, _ := sandbox(t)
		_, hostErr := extract(osFS{}, root, bytes.NewReader(layer), lim)
		m := newMemFS()
		_, memErr := extract(m, memRoot, bytes.NewReader(layer), lim)
		if (hostErr == nil) != (memErr == nil) {
			t.Errorf("%s (%q): host %v, memFS %v", name, data, hostErr, memErr)
			continue
		}
		mt := memTree(m.lroot, "", map[string]string{})
		ht := hostTree(t, root, mt)
		if h, mm := render(ht), render(mt); h != mm {
			t.Errorf("%s (%q): trees differ\nhost:\n%s\nmemFS:\n%s", name, data, h, mm)
		}
	}
}

// treeLine renders a node's properties but for its mtime, which trees
// hold apart: the key is the path, the value the properties, and for
// mtime the tree records "rel mtime" under "\x00"+rel.
func treeLine(mode uint32, uid, gid int, size int64, target string, nlink, rdev uint64) string {
	if mode&unix.S_IFMT == unix.S_IFDIR {
		nlink = 0 // a directory's count is the kernel's business
	}
	return strings.Join([]string{strconv.FormatUint(uint64(mode), 8), strconv.Itoa(uid), strconv.Itoa(gid),
		strconv.FormatInt(size, 10), target, strconv.FormatUint(nlink, 10), strconv.FormatUint(rdev, 10)}, " ")
}

func render(tree map[string]string) string {
	var lines []string
	for k, v := range tree {
		lines = append(lines, k+" "+v+"\n")
	}
	sort.Strings(lines)
	return strings.Join(lines, "")
}

// hostTree lists root like memTree; a node's mtime is left out where the
// memFS tree (mem) says the extractor never set it.
func hostTree(t *testing.T, root string, mem map[string]string) map[string]string {
	tree := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		size, target := int64(0), ""
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			size = st.Size
		case unix.S_IFLNK:
			target, _ = os.Readlink(p)
		}
		rel, _ := filepath.Rel(root, p)
		tree[rel] = treeLine(st.Mode, int(st.Uid), int(st.Gid), size, target, uint64(st.Nlink), st.Rdev)
		if mem["\x00"+rel] != "unset" {
			tree["\x00"+rel] = strconv.FormatInt(st.Mtim.Nano(), 10)
		} else {
			tree["\x00"+rel] = "unset"
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func memTree(n *mnode, rel string, tree map[string]string) map[string]string {
	for name, k := range n.kids {
		p := path.Join(rel, name)
		size := int64(0)
		if k.mode&unix.S_IFMT == unix.S_IFREG {
			size = k.size
		}
		tree[p] = treeLine(k.mode, k.uid, k.gid, size, k.target, uint64(k.nlink), uint64(k.rdev))
		tree["\x00"+p] = "unset"
		if k.timed {
			tree["\x00"+p] = strconv.FormatInt(k.mtime.Nano(), 10)
		}
		if k.isDir() {
			memTree(k, p, tree)
		}
	}
	return tree
}
