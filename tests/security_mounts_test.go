//go:build functional

package tests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Mount targets are resolved inside the app's rootfs (issue #13, point 3):
// an image whose /dev and a volume's target are symlinks climbing out of
// its rootfs gets those mounts inside its rootfs, where runc would put
// them, never over the stage1's tree (/usr/lib/skiff, /usr/lib/systemd).
func TestMountTargetsStayInAppRoot(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	up := strings.Repeat("../", 12)
	img := hostileImage(t, e, dir, `ln -s `+up+`usr/lib/skiff rootfs/dev.new && rm -rf rootfs/dev && mv rootfs/dev.new rootfs/dev`+
		` && ln -s `+up+`usr/lib/systemd rootfs/vol`)
	vol := filepath.Join(dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "marker"), []byte("in-the-app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.skiff(e.runArgs("--volume="+vol+":/vol", img, "--", "/bin/sh", "-c",
		"test -c /usr/lib/skiff/null && echo dev=$(readlink /dev) && echo vol=$(cat /usr/lib/systemd/marker)")...)
	if r.code != 0 || !strings.Contains(r.stdout, "dev="+up+"usr/lib/skiff\n") || !strings.Contains(r.stdout, "vol=in-the-app\n") {
		t.Fatalf("hostile image: exit %d\nstdout: %s\nstderr: %s\nwant /dev's mounts at the app's /usr/lib/skiff and the volume at its /usr/lib/systemd", r.code, r.stdout, r.stderr)
	}
}

// hostileImage unpacks the busybox test image in dir, runs script in the
// unpacked bundle (its rootfs is ./rootfs) and repacks it; it returns the
// image's reference for run.
func hostileImage(t *testing.T, e *env, dir, script string) string {
	t.Helper()
	need(t, "umoci", "tar")
	sh(t, dir, "mkdir L && tar -C L -xf "+filepath.Join(e.images, "busybox.oci.tar")+
		` && tag=$(umoci ls --layout L | head -n1) && umoci unpack --image "L:$tag" B >/dev/null`+
		` && (cd B && `+script+`) && umoci repack --image "L:$tag" B >/dev/null`)
	return "oci:" + filepath.Join(dir, "L")
}

// A volume's mount point that is a symlink to "/" or a chain of ".." is
// followed inside the app's rootfs: the volumes land in the app's own tree
// (its /data, its /usr/lib/skiff/probe), never at the stage1's root or its
// /usr/lib/skiff; a target that is the app's root itself is refused.
func TestVolumeTargetsThroughRootSymlinks(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	img := hostileImage(t, e, dir, `ln -s / rootfs/vol && mkdir -p rootfs/a/b && ln -s ../../../../../.. rootfs/a/b/up`)
	vols := map[string]string{}
	for _, n := range []string{"v1", "v2"} {
		vols[n] = filepath.Join(dir, n)
		if err := os.MkdirAll(vols[n], 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vols[n], "marker"), []byte(n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := e.skiff(e.runArgs("--volume="+vols["v1"]+":/vol/data", "--volume="+vols["v2"]+":/a/b/up/usr/lib/skiff/probe", img,
		"--", "/bin/sh", "-c", "echo v1=$(cat /data/marker) v2=$(cat /usr/lib/skiff/probe/marker) root=$(ls /vol/bin/busybox)")...)
	if r.code != 0 || !strings.Contains(r.stdout, "v1=v1 v2=v2 root=/vol/bin/busybox\n") {
		t.Fatalf("volumes through symlinks to / and ../..: exit %d\nstdout: %s\nstderr: %s\nwant them at the app's /data and /usr/lib/skiff/probe", r.code, r.stdout, r.stderr)
	}
	// a volume over the app's whole root (its /vol is "/") is refused
	r = e.skiff(e.runArgs("--volume="+vols["v1"]+":/vol", img, "--", "/bin/true")...)
	// (the kvm flavor's guest says it on its console, which stage1-kvm shows)
	if r.code != 125 || !strings.Contains(r.stderr, "mount target /vol is the app's root") {
		t.Fatalf("volume onto the app's root: exit %d\nstdout: %s\nstderr: %s\nwant exit 125 and a sentence naming /vol", r.code, r.stdout, r.stderr)
	}
}

// The image's own files under /proc, /sys and /dev are hidden by the
// stage1's mounts there, so a symlink the image plants at a masked or
// read-only kernel path (/proc/kcore, /proc/sys, /sys/firmware) or at a
// device (/dev/null) never moves that mask, read-only bind or device
// elsewhere: the kernel's path is masked, /proc/sys is read-only, /dev/null
// is the device, and nothing is mounted on the image's decoys.
func TestKernelPathMasksIgnoreImageSymlinks(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	img := hostileImage(t, e, dir, `mkdir -p rootfs/decoy rootfs/proc rootfs/sys rootfs/dev`+
		` && mkdir rootfs/decoy/fw && for f in kcore keys timer_list sys null; do echo decoy > rootfs/decoy/$f; done`+
		` && ln -s /decoy/kcore rootfs/proc/kcore && ln -s ../decoy/keys rootfs/proc/keys`+
		` && ln -s /decoy/timer_list rootfs/proc/timer_list && ln -s ../../../decoy/sys rootfs/proc/sys`+
		` && ln -s /decoy/fw rootfs/sys/firmware && rm -f rootfs/dev/null && ln -s /decoy/null rootfs/dev/null`)
	script := `set -e
test -c /dev/null
for p in /proc/kcore /proc/keys /proc/timer_list; do if [ -e $p ]; then test -c $p; echo masked $p; fi; done
if [ -d /sys/firmware ]; then test -z "$(ls -A /sys/firmware)"; fi
echo procsys=$(awk '$5 == "/proc/sys" { print substr($6, 1, 3) }' /proc/self/mountinfo)
test -d /decoy/fw
for f in kcore keys timer_list sys null; do test -f /decoy/$f && test "$(cat /decoy/$f)" = decoy; done
echo decoys=$(awk '$5 ~ /^\/decoy/' /proc/self/mountinfo | wc -l)`
	r := e.skiff(e.runArgs(img, "--", "/bin/sh", "-c", script)...)
	if r.code != 0 || !strings.Contains(r.stdout, "procsys=ro,\n") || !strings.Contains(r.stdout, "decoys=0\n") ||
		!strings.Contains(r.stdout, "masked /proc/timer_list\n") {
		t.Fatalf("image with symlinks at masked paths: exit %d\nstdout: %s\nstderr: %s\nwant the kernel's paths masked and read-only, nothing on /decoy", r.code, r.stdout, r.stderr)
	}
}

// The stage1's own files (what the pod's systemd runs as root: app-exec,
// app-exited, the stage1 binary) are read-only in the pod's mount namespace.
// A root app that reaches the pod's systemd's root (/proc/1/root, with
// CAP_SYS_PTRACE), as an escape would, can neither change them nor plant new
// ones, in either flavor; in the default flavor the pod's root mount is
// read-only as its PID 1 sees it, and host root going through
// /proc/PID/root fares no better. (Each pod's stage1 rootfs is an overlay of
// its own over the store's layers, or the kvm guest's initramfs, so nothing
// written there ever reached another pod or the store.)
func TestStage1FilesAreReadOnlyInThePod(t *testing.T) {
	e := newEnv(t)
	r := e.skiff(e.runArgs(e.image("busybox"), "--caps-retain=CAP_SYS_PTRACE", "--", "/bin/sh", "-c",
		`S=/proc/1/root/usr/lib/skiff; test -f $S/app-exited && echo reached
for f in planted app-exited app-exec; do if (: >> $S/$f) 2>/dev/null; then echo wrote $f; fi; done; echo done`)...)
	if r.code != 0 || !strings.Contains(r.stdout, "reached\n") || !strings.HasSuffix(r.stdout, "reached\ndone\n") {
		t.Errorf("a root app with CAP_SYS_PTRACE writes the stage1's files: exit %d\nstdout: %s\nstderr: %s\nwant it to reach them and write none", r.code, r.stdout, r.stderr)
	}
	if e.flavor() != "default" {
		return // the kvm guest's root is out of the host's reach
	}
	uuid, wait := e.runningPod()
	defer func() { e.ok("stop", uuid); wait() }()
	pid := e.status(uuid).PID
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	var rootOpts string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == "/" {
			rootOpts = f[5]
		}
	}
	if !strings.HasPrefix(rootOpts, "ro,") {
		t.Errorf("the pod's root mount has options %q, want read-only", rootOpts)
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	// (the stage1 binary, which app-exec and app-exited are, may be busy
	// too: it runs from the store's layer, which the pod's overlay shows)
	for _, f := range []string{"usr/lib/skiff/app-exited", "usr/lib/skiff/app-exec", "usr/lib/skiff/stage1", "etc/passwd"} {
		w, err := os.OpenFile(filepath.Join(root, f), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			w.Close()
		}
		if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.ETXTBSY) {
			t.Errorf("open the pod's /%s for writing: %v, want EROFS", f, err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/skiff/planted"), nil, 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("plant a file in the pod's /usr/lib/skiff: %v, want EROFS", err)
	}
}

// enter joins the app's own mount namespace: it sees the mounts the app
// made itself (here a tmpfs by a root app with CAP_SYS_ADMIN), and still
// nothing of the stage1's tree.
func TestEnterSeesTheAppsOwnMounts(t *testing.T) {
	e := newEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	// (the default seccomp filter refuses mount(2), CAP_SYS_ADMIN or not)
	args := append(append([]string{"--insecure-options=image,seccomp", "run"}, e.stage1...), "--uuid-file-save="+uuidFile,
		e.image("busybox"), "--caps-retain=CAP_SYS_ADMIN", "--", "/bin/sh", "-c",
		"mkdir -p /mnt/own && mount -t tmpfs tmpfs /mnt/own && echo made-by-the-app > /mnt/own/f && exec sleep 600")
	c, _, _ := e.startBackground(args...)
	var uuid string
	waitFor(t, 2*time.Minute, "the pod to be ready", func() bool {
		b, err := os.ReadFile(uuidFile)
		if err != nil || len(b) < 36 {
			return false
		}
		uuid = strings.TrimSpace(string(b))
		return e.status(uuid).Ready
	})
	defer func() {
		e.skiff("stop", "--force", uuid)
		c.Wait()
	}()
	waitFor(t, 2*time.Minute, "the app to make its mount", func() bool {
		return e.skiff("enter", uuid, "/bin/pidof", "sleep").code == 0
	})
	r := e.skiff("enter", uuid, "/bin/sh", "-c", "cat /mnt/own/f; ls /usr/lib/skiff /skiff 2>&1 | head -n 3")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "made-by-the-app\n") || strings.Contains(r.stdout, "app-exec") || strings.Contains(r.stdout, "apps") {
		t.Errorf("enter into an app with a mount of its own: exit %d\nstdout: %s\nstderr: %s\nwant the app's tmpfs and no stage1 files", r.code, r.stdout, r.stderr)
	}
}
