package layer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

var mtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// mkTar builds a tar from headers; a regular file's content is its Linkname
// field when Size is 0 (a shorthand for tests), cleared before writing.
func mkTar(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		var body []byte
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			body, h.Linkname = []byte(h.Linkname), ""
			h.Size = int64(len(body))
		}
		if h.ModTime.IsZero() {
			h.ModTime = mtime
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func file(name, content string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Linkname: content}
}
func dir(name string) *tar.Header { return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755} }
func symlink(name, target string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}
}
func hardlink(name, target string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}
}

func needRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: extraction sets ownership, device nodes and trusted.* xattrs")
	}
}

// sandbox returns an empty root inside a parent that also holds an
// "outside" directory with a sentinel file no extraction may touch.
func sandbox(t testing.TB) (root, outside string) {
	parent := t.TempDir()
	root, outside = filepath.Join(parent, "root"), filepath.Join(parent, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, outside
}

func checkOutside(t testing.TB, outside string) {
	t.Helper()
	entries, err := os.ReadDir(outside)
	if err != nil || len(entries) != 1 {
		t.Fatalf("outside dir changed: %v %v", entries, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(outside, "sentinel"), &st); err != nil || st.Nlink != 1 || st.Size != 4 {
		t.Fatalf("sentinel changed: %+v %v", st, err)
	}
	parentEntries, _ := os.ReadDir(filepath.Dir(outside))
	if len(parentEntries) != 2 {
		t.Fatalf("entries appeared next to root: %v", parentEntries)
	}
}

func TestExtractTypes(t *testing.T) {
	needRoot(t)
	setuid := file("bin/su", "#!")
	setuid.Mode, setuid.Uid, setuid.Gid = 0o4755, 1000, 1001
	xattr := file("x", "")
	xattr.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v", "SCHILY.xattr.security.bogus": "v",
		"SCHILY.xattr.trusted.overlay.opaque": "y"}
	sticky := dir("tmp")
	sticky.Mode = 0o1777
	data := mkTar(t, dir("bin"), setuid, sticky, symlink("bin/sh", "/bin/busybox"), hardlink("bin/su2", "bin/su"),
		&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3, Mode: 0o666},
		&tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Devmajor: 8, Devminor: 0, Mode: 0o660},
		&tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600}, xattr)
	root, _ := sandbox(t)
	id, err := Extract(root, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(data); id != want {
		t.Errorf("diffID %s, want %s", id, want)
	}
	var st unix.Stat_t
	mustStat := func(p string) {
		t.Helper()
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
	}
	mustStat("bin/su")
	if st.Mode&0o7777 != 0o4755 || st.Uid != 1000 || st.Gid != 1001 || st.Nlink != 2 || st.Mtim.Sec != mtime.Unix() {
		t.Errorf("bin/su: %+v", st)
	}
	mustStat("tmp")
	if st.Mode&0o7777 != 0o1777 || st.Mtim.Sec != mtime.Unix() {
		t.Errorf("tmp: mode %o mtime %d", st.Mode, st.Mtim.Sec)
	}
	mustStat("bin")
	if st.Mtim.Sec != mtime.Unix() {
		t.Errorf("bin mtime %d not restored after content", st.Mtim.Sec)
	}
	mustStat("dev/null")
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: %+v", st)
	}
	mustStat("dev/sda")
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Errorf("dev/sda mode %o", st.Mode)
	}
	mustStat("fifo")
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo mode %o", st.Mode)
	}
	if l, _ := os.Readlink(filepath.Join(root, "bin/sh")); l != "/bin/busybox" {
		t.Errorf("symlink target %q", l)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(root, "x"), "user.k", buf); err != nil && !errors.Is(err, unix.ENOTSUP) || err == nil && string(buf[:n]) != "v" {
		t.Errorf("user.k xattr: %q %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "x"), opaqueXattr, buf); err == nil {
		t.Error("a layer forged trusted.overlay.opaque")
	}
}

func TestExtractGzipSameDiffID(t *testing.T) {
	needRoot(t)
	data := mkTar(t, file("a", "hello"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	root, _ := sandbox(t)
	id, err := Extract(root, &gz)
	if err != nil || id != digest.FromBytes(data) {
		t.Fatalf("gzip: %s %v, want %s", id, err, digest.FromBytes(data))
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a")); string(b) != "hello" {
		t.Errorf("content %q", b)
	}
}

func TestExtractZstdSameDiffID(t *testing.T) {
	needRoot(t)
	data := mkTar(t, file("a", "hello"))
	zw, _ := zstd.NewWriter(nil)
	root, _ := sandbox(t)
	id, err := Extract(root, bytes.NewReader(zw.EncodeAll(data, nil)))
	if err != nil || id != digest.FromBytes(data) {
		t.Fatalf("zstd: %s %v, want %s", id, err, digest.FromBytes(data))
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a")); string(b) != "hello" {
		t.Errorf("content %q", b)
	}
}

func TestExtractWhiteouts(t *testing.T) {
	needRoot(t)
	root, _ := sandbox(t)
	if _, err := Extract(root, bytes.NewReader(mkTar(t, dir("etc"), file("etc/.wh.passwd", ""),
		file("opq/.wh..wh..opq", ""), file("opq/new", "n"), file(".wh..wh.plnk", "")))); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "etc/passwd"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout: %+v %v", st, err)
	}
	buf := make([]byte, 2)
	if n, err := unix.Lgetxattr(filepath.Join(root, "opq"), opaqueXattr, buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr: %q %v", buf[:n], err)
	}
	for _, p := range []string{"etc/.wh.passwd", "opq/.wh..wh..opq", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s was extracted as a file", p)
		}
	}
}

func TestExtractReplaces(t *testing.T) {
	needRoot(t)
	root, _ := sandbox(t)
	_, err := Extract(root, bytes.NewReader(mkTar(t, file("a", "1"), dir("a"), file("a/in", "x"), dir("b"),
		file("b", "file now"), symlink("c", "b"), file("c", "plain"), dir("d"), dir("d"))))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"a": os.ModeDir, "a/in": 0, "b": 0, "c": 0, "d": os.ModeDir} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil || fi.Mode().Type() != want {
			t.Errorf("%s: %v %v, want type %v", p, fi.Mode(), err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "b")); string(b) != "file now" {
		t.Errorf("b = %q: writing c went through the replaced symlink", b)
	}
}

// containedCases are layers that try to reach outside the root; outside is
// the directory beside it that holds a sentinel.
var containedCases = map[string]struct {
	hdrs    func(outside string) []*tar.Header
	wantErr bool
}{
	"dotdot":       {func(string) []*tar.Header { return []*tar.Header{file("../outside/x", "")} }, true},
	"inner dotdot": {func(string) []*tar.Header { return []*tar.Header{file("a/../../outside/x", "")} }, true},
	"absolute":     {func(o string) []*tar.Header { return []*tar.Header{file(o+"/x", "")} }, false},
	"symlink abs":  {func(o string) []*tar.Header { return []*tar.Header{symlink("l", o), file("l/x", "")} }, false},
	"symlink rel":  {func(string) []*tar.Header { return []*tar.Header{symlink("l", "../outside"), file("l/x", "")} }, false},
	"symlink chain": {func(string) []*tar.Header {
		return []*tar.Header{symlink("l", "../.."), symlink("m", "l/outside"), file("m/x", "")}
	}, false},
	"symlink dir":      {func(o string) []*tar.Header { return []*tar.Header{symlink("l", o), dir("l")} }, false},
	"hardlink out":     {func(string) []*tar.Header { return []*tar.Header{hardlink("h", "../outside/sentinel")} }, true},
	"hardlink abs":     {func(o string) []*tar.Header { return []*tar.Header{hardlink("h", o+"/sentinel")} }, true},
	"hardlink via sym": {func(o string) []*tar.Header { return []*tar.Header{symlink("l", o), hardlink("h", "l/sentinel")} }, true},
	"whiteout via sym": {func(o string) []*tar.Header { return []*tar.Header{symlink("l", o), file("l/.wh.sentinel", "")} }, false},
	"opaque via sym":   {func(o string) []*tar.Header { return []*tar.Header{symlink("l", o), file("l/.wh..wh..opq", "")} }, false},
	"dir mtime via sym": {func(o string) []*tar.Header {
		return []*tar.Header{dir("d"), dir("d/e"), symlink("x", "d"), file("x", ""), symlink("d", o)}
	}, false},
	"long component": {func(string) []*tar.Header { return []*tar.Header{file(string(bytes.Repeat([]byte("a"), 300)), "")} }, true},
	"root is file":   {func(string) []*tar.Header { return []*tar.Header{file(".", "")} }, true},
}

func TestExtractContained(t *testing.T) {
	needRoot(t)
	for name, tc := range containedCases {
		t.Run(name, func(t *testing.T) {
			root, outside := sandbox(t)
			_, err := Extract(root, bytes.NewReader(mkTar(t, tc.hdrs(outside)...)))
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tc.wantErr)
			}
			checkOutside(t, outside)
		})
	}
}

func TestExtractErrors(t *testing.T) {
	root, _ := sandbox(t)
	if _, err := Extract(root, bytes.NewReader([]byte{0x28, 0xb5, 0x2f, 0xfd, 0})); err == nil {
		t.Error("truncated zstd: no error")
	}
	if _, err := Extract(root, bytes.NewReader([]byte("not a tar, not at all, but long enough to be read"))); err == nil {
		t.Error("garbage: no error")
	}
	os.WriteFile(filepath.Join(root, "f"), nil, 0o644)
	if _, err := Extract(root, bytes.NewReader(mkTar(t))); err == nil {
		t.Error("non-empty dir: no error")
	}
}

// TestExtractContainedMem runs the same layers on the fuzzer's memFS: it
// must agree with the host on which are refused and see nothing escape, or
// the fuzzer would be fuzzing something else than the host's extraction.
func TestExtractContainedMem(t *testing.T) {
	for name, tc := range containedCases {
		t.Run(name, func(t *testing.T) {
			m := newMemFS()
			_, err := extract(m, memRoot, bytes.NewReader(mkTar(t, tc.hdrs(memOutside)...)), DefaultLimits)
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tc.wantErr)
			}
			m.checkContained(t)
		})
	}
}

// extractSeeds are FuzzExtract's seeds (besides containedCases and testdata).
var extractSeeds = []string{
	"5a\n0a/b|x\n2a/c|../../..\n0a/c/d|y",
	"1h|../x\n0/abs\n0.wh.z\n0d/.wh..wh..opq",
	"2l|/\n5l/m\n1l/m/n|l\n0l/m/.wh.n",
	"0f|data|user.a=b|trusted.overlay.opaque=y\n5d||security.capability=x",
	"3c\n4b\n6p\n2s|s\n1s2|s\n0s2|replace",
	"5d\n0d/f|x\n1d/h|d/f\n2d/s|f\n5d|\n0d/f|replaced\n0d/.wh.s\n5e\n0e/.wh..wh..opq",
	"raw:",
}

// FuzzExtract extracts into memFS and fails if anything outside the layer
// root changed. Why not the host's filesystem: each input's syscalls made
// ~100 inputs in 25 s. Why not raw tar bytes: a mutated header fails its
// checksum, and the fuzzer's minimization of a new input is quadratic in its
// length (a few-KB tar took its whole 60 s); a compact script of entries
// keeps inputs at tens of bytes and every mutation a valid tar. See
// fuzzLayer for the script; "raw:" followed by layer bytes (tar, gzip,
// zstd) fuzzes the readers. The limits are low so a bomb costs little.
func FuzzExtract(f *testing.F) {
	for _, seed := range extractSeeds {
		f.Add([]byte(seed))
	}
	for _, tc := range containedCases {
		f.Add(scriptOf(tc.hdrs(memOutside)))
	}
	lim := Limits{MaxSize: 4 << 20, MaxEntries: 1000}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMemFS()
		extract(m, memRoot, bytes.NewReader(fuzzLayer(data)), lim)
		m.checkContained(t)
	})
}

// fuzzLayer turns a fuzz input into layer bytes: "raw:" and the bytes, or a
// script of one entry a line: a type flag byte ('0' file, '1' hard link,
// '2' symlink, '3' char device, '4' block device, '5' directory, '6' fifo,
// others as they come), the name, and optional "|"-separated fields: the
// link target (a file's content for '0'), then PAX xattrs as key=value.
// Entries archive/tar will not write are left out.
func fuzzLayer(data []byte) []byte {
	if raw, ok := bytes.CutPrefix(data, []byte("raw:")); ok && len(raw) <= 1024 {
		return raw
	}
	if len(data) > 512 {
		return nil // minimizing is quadratic in the length; no escape needs more
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		fields := strings.Split(string(line[1:]), "|")
		hdr := &tar.Header{Typeflag: line[0], Name: fields[0], Mode: 0o755, ModTime: mtime, Uid: 1, Gid: 2}
		var body []byte
		if len(fields) > 1 {
			if hdr.Typeflag == tar.TypeReg {
				body = []byte(fields[1])
				hdr.Size = int64(len(body))
			} else {
				hdr.Linkname = fields[1]
			}
		}
		for _, kv := range fields[min(2, len(fields)):] {
			k, v, _ := strings.Cut(kv, "=")
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[paxXattrPrefix+k] = v
		}
		if tw.WriteHeader(hdr) != nil {
			continue
		}
		tw.Write(body)
	}
	tw.Flush()
	return buf.Bytes()
}

// scriptOf renders headers (as mkTar takes them) as a fuzzLayer script.
func scriptOf(hdrs []*tar.Header) []byte {
	var b []byte
	for _, h := range hdrs {
		b = append(b, h.Typeflag)
		b = append(b, h.Name...)
		if h.Linkname != "" {
			b = append(b, '|')
			b = append(b, h.Linkname...)
		}
		b = append(b, '\n')
	}
	return b
}

// A small layer that expands past the limits is refused: a gzip bomb (its
// content, or zeros after the tar's end, which the diffID covers), and a
// layer of many tiny entries.
func TestExtractLimits(t *testing.T) {
	bomb := func(tarBytes []byte, trailing int) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(tarBytes)
		zw.Write(make([]byte, trailing))
		zw.Close()
		return buf.Bytes()
	}
	big := &tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: 1 << 20, Mode: 0o644}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(big)
	tw.Write(make([]byte, big.Size))
	tw.Close()
	var many []*tar.Header
	for i := range 10 {
		many = append(many, dir("d"+strconv.Itoa(i)))
	}
	lim := Limits{MaxSize: 64 << 10, MaxEntries: 5}
	for name, layer := range map[string][]byte{
		"content":  bomb(tb.Bytes(), 0),
		"trailing": bomb(mkTar(t, file("small", "x")), 1<<20),
		"entries":  mkTar(t, many...),
	} {
		t.Run(name, func(t *testing.T) {
			if len(layer) > 8<<10 {
				t.Fatalf("test layer is %d bytes, not small", len(layer))
			}
			_, err := extract(newMemFS(), memRoot, bytes.NewReader(layer), lim)
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "--max-layer-") {
				t.Fatalf("err = %v, want ErrTooLarge naming the flag", err)
			}
			if _, err := extract(newMemFS(), memRoot, bytes.NewReader(layer), DefaultLimits); err != nil {
				t.Fatalf("with the default limits: %v", err)
			}
		})
	}
}
