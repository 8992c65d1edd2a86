//go:build functional

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ociMaskedAndReadonlyPaths runs a bundle whose masked and read-only paths
// are in its rootfs (not only in /proc and /sys) with o's runtime (the
// default stage1's or the kvm one's): they are masked and read-only, as runc
// makes them; one the rootfs lacks, or in a directory masked before it, is
// skipped (the masked directory stays empty).
func ociMaskedAndReadonlyPaths(t *testing.T, o *ociEnv) {
	t.Helper()
	b := o.bundle("b", "/bin/sh", "-c", `echo "masked-file:$(cat /masked-file)"; echo "masked-dir:$(ls -A /masked-dir)";
		echo x > /ro-file && echo ro-file-written; touch /ro-dir/new && echo ro-dir-written;
		echo "kept:$(cat /ro-file)"; echo y > /rw-file && echo rw-file-written; true`)
	o.forID(b, "mro")
	root := filepath.Join(b, "rootfs")
	for _, d := range []string{"masked-dir/sub", "ro-dir"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, s := range map[string]string{"masked-file": "secret", "masked-dir/f": "secret", "ro-file": "orig", "rw-file": ""} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(s), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	o.editConfig(b, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		l["maskedPaths"] = []string{"/masked-file", "/masked-dir", "/masked-dir/sub", "/masked-dir/f", "/not-there", "/proc/kcore"}
		l["readonlyPaths"] = []string{"/ro-file", "/ro-dir/", "/not-there-either", "/proc/sys"}
		c["root"].(map[string]any)["readonly"] = false
	})
	r := o.ok("run", "--bundle", b, "mro")
	for _, want := range []string{"masked-file:\n", "masked-dir:\n", "kept:orig\n", "rw-file-written\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	for _, bad := range []string{"secret", "ro-file-written", "ro-dir-written"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("output has %q:\n%s", bad, r.stdout)
		}
	}
	o.rt("delete", "--force", "mro")
	o.nothingLeft("mro")
}
