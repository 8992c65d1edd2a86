package podfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	symlink(t, "/", filepath.Join(root, "data"))
	symlink(t, "../../../usr/lib", filepath.Join(root, "rel"))
	symlink(t, "/proc/1/root", filepath.Join(root, "magic"))
	symlink(t, "../../../../..", filepath.Join(root, "dev"))
	symlink(t, "sub/../../..", filepath.Join(root, "a/b"))
	symlink(t, "loop2", filepath.Join(root, "loop1"))
	symlink(t, "loop1", filepath.Join(root, "loop2"))
	for p, want := range map[string]string{
		"/data":          "/",
		"/data/x":        "/x",
		"/rel":           "/usr/lib",
		"/rel/skiff":     "/usr/lib/skiff",
		"/magic":         "/proc/1/root",
		"/dev/null":      "/null",
		"/a/b/c":         "/c",
		"/../../etc":     "/etc",
		"/usr/../../..":  "/",
		"new/dir/../x":   "/new/x",
		"/usr/lib/skiff": "/usr/lib/skiff",
	} {
		got, err := Resolve(root, p)
		if err != nil || got != want {
			t.Errorf("Resolve(%s) = %q, %v; want %q", p, got, err, want)
		}
	}
	if got, err := Resolve(root, "/loop1/x"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("Resolve(/loop1/x) = %q, %v; want ELOOP", got, err)
	}
}

func TestResolveLayers(t *testing.T) {
	upper, l1, l0 := t.TempDir(), t.TempDir(), t.TempDir()
	// l0 (lowest): /data -> /, /opq/x -> /, /gone -> /
	symlink(t, "/", filepath.Join(l0, "data"))
	symlink(t, "/", filepath.Join(l0, "opq/x"))
	symlink(t, "/", filepath.Join(l0, "gone"))
	symlink(t, "/", filepath.Join(l0, "shadow/y"))
	// l1: /dev -> ../.., /opq opaque, /gone whited out, /shadow a file
	symlink(t, "../..", filepath.Join(l1, "dev"))
	if err := os.MkdirAll(filepath.Join(l1, "opq"), 0o755); err != nil {
		t.Fatal(err)
	}
	opaqueOK := unix.Setxattr(filepath.Join(l1, "opq"), "trusted.overlay.opaque", []byte("y"), 0) == nil
	if err := unix.Mknod(filepath.Join(l1, "gone"), unix.S_IFCHR|0o600, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l1, "shadow"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// upper: /shadow a directory (over l1's file), /up -> data/z
	if err := os.MkdirAll(filepath.Join(upper, "shadow"), 0o755); err != nil {
		t.Fatal(err)
	}
	symlink(t, "data/z", filepath.Join(upper, "up"))
	layers := []string{upper, l1, l0, filepath.Join(t.TempDir(), "missing")}
	want := map[string]string{
		"/data/v":    "/v",
		"/dev/null":  "/null",
		"/gone/v":    "/gone/v",
		"/shadow/y":  "/shadow/y",
		"/up":        "/z",
		"/new/thing": "/new/thing",
	}
	if opaqueOK {
		want["/opq/x"] = "/opq/x"
	}
	for p, w := range want {
		got, err := ResolveLayers(layers, p)
		if err != nil || got != w {
			t.Errorf("ResolveLayers(%s) = %q, %v; want %q", p, got, err, w)
		}
	}
}

func TestResolveMountsStayInRoot(t *testing.T) {
	s1 := t.TempDir()
	app := filepath.Join(s1, "opt/stage2/a/rootfs")
	symlink(t, "/", filepath.Join(app, "data"))
	symlink(t, "../../../../../../..", filepath.Join(app, "dev"))
	ms, err := ResolveMounts(s1, App{Root: "/opt/stage2/a/rootfs", MaskedPaths: []string{"/proc/kcore"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		rel, err := filepath.Rel("/opt/stage2/a/rootfs", m.Destination)
		if err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) >= 3 && rel[:3] == "../" {
			t.Errorf("mount %s %s is outside the app's rootfs", m.Type, m.Destination)
		}
	}
}
