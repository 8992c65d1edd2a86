//go:build functional

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Mount targets are resolved inside the app's rootfs (issue #13, point 3):
// an image whose /dev and a volume's target are symlinks climbing out of
// its rootfs gets those mounts inside its rootfs, where runc would put
// them, never over the stage1's tree (/usr/lib/skiff, /usr/lib/systemd).
func TestMountTargetsStayInAppRoot(t *testing.T) {
	need(t, "umoci", "tar")
	e := newEnv(t)
	dir := t.TempDir()
	up := strings.Repeat("../", 12)
	sh(t, dir, "mkdir L && tar -C L -xf "+filepath.Join(e.images, "busybox.oci.tar")+
		` && tag=$(umoci ls --layout L | head -n1) && umoci unpack --image "L:$tag" B >/dev/null`+
		` && ln -s `+up+`usr/lib/skiff B/rootfs/dev.new && rm -rf B/rootfs/dev && mv B/rootfs/dev.new B/rootfs/dev`+
		` && ln -s `+up+`usr/lib/systemd B/rootfs/vol`+
		` && umoci repack --image "L:$tag" B >/dev/null`)
	vol := filepath.Join(dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "marker"), []byte("in-the-app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.skiff(e.runArgs("--volume="+vol+":/vol", "oci:"+filepath.Join(dir, "L"), "--", "/bin/sh", "-c",
		"test -c /usr/lib/skiff/null && echo dev=$(readlink /dev) && echo vol=$(cat /usr/lib/systemd/marker)")...)
	if r.code != 0 || !strings.Contains(r.stdout, "dev="+up+"usr/lib/skiff\n") || !strings.Contains(r.stdout, "vol=in-the-app\n") {
		t.Fatalf("hostile image: exit %d\nstdout: %s\nstderr: %s\nwant /dev's mounts at the app's /usr/lib/skiff and the volume at its /usr/lib/systemd", r.code, r.stdout, r.stderr)
	}
}
