//go:build functional

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Apps get a root they cannot leave (issue #13, points 1, 2 and 9): no image
// working directory, symbolic link or chroot(2) trick reaches the stage1's
// binaries or the apps' config.json, and enter runs with the app's limits.
// The inspect image's `stage1 ROOT` prints reached=PATH for each stage1 path
// it finds under ROOT and writable=PATH for each it can open for writing.

// hostileWorkdirImage is the inspect image with WorkingDir set to workdir and,
// when link is not empty, a symbolic link /LINK -> TARGET added (umoci).
func hostileWorkdirImage(t *testing.T, e *env, workdir, link, target string) string {
	t.Helper()
	need(t, "umoci", "tar")
	dir := t.TempDir()
	script := "mkdir layout && tar -C layout -xf " + filepath.Join(e.images, "inspect.oci.tar") + "\n"
	if link != "" {
		script += "umoci unpack --image layout:latest bundle >/dev/null && ln -s " + target + " bundle/rootfs/" + link +
			" && umoci repack --image layout:latest bundle && rm -rf bundle\n"
	}
	script += "umoci config --image layout:latest --config.workingdir " + workdir + "\n"
	sh(t, dir, script)
	return "oci:" + filepath.Join(dir, "layout")
}

func checkNoStage1(t *testing.T, what string, r result) {
	t.Helper()
	if strings.Contains(r.stdout, "reached=") || strings.Contains(r.stdout, "writable=") {
		t.Errorf("%s: the app reached the stage1's tree (exit %d):\n%s%s", what, r.code, r.stdout, r.stderr)
	}
}

// An image's WorkingDir that leads out of the app's root, directly through
// /proc/1/root (the pod's init's root) or through a symbolic link to it,
// must not put the app in the stage1's rootfs: the app does not start (125,
// naming its working directory) and sees nothing of the stage1.
func TestWorkingDirCannotLeaveTheAppsRoot(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ name, workdir, link string }{
		{"workdir /proc/1/root", "/proc/1/root", ""},
		{"workdir symlink to /proc/1/root", "/wd", "wd"},
	} {
		img := hostileWorkdirImage(t, e, c.workdir, c.link, "/proc/1/root")
		r := e.skiff(e.runArgs(img, "--", "stage1", ".", "cwd")...)
		checkNoStage1(t, c.name, r)
		if r.code != 125 || !strings.Contains(r.stderr, "working directory") {
			t.Errorf("%s: exit %d, want 125 and an error naming the working directory\nstdout: %s\nstderr: %s", c.name, r.code, r.stdout, r.stderr)
		}
	}
}

// A root app with the default capabilities (CAP_SYS_CHROOT among them) runs
// the classic chroot breakout, and looks for the stage1 from /proc/1/root
// too: it finds nothing of the stage1, and can write none of it.
func TestRootAppCannotClimbOutOfItsRoot(t *testing.T) {
	e := newEnv(t)
	r := e.skiff(e.runArgs(e.image("inspect"), "--", "stage1", "/proc/1/root", "chroot-out", "stage1", "/")...)
	checkNoStage1(t, "chroot breakout", r)
	if r.code != 0 || !strings.Contains(r.stdout, "chroot_out=done") {
		t.Errorf("the breakout did not run: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// Nothing of the stage1 is mounted in the app's mount namespace.
	r = e.ok(e.runArgs(e.image("inspect"), "--", "mounts")...)
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(strings.TrimPrefix(line, "mount=")); len(f) > 0 && (strings.HasPrefix(f[0], "/opt/stage2") || strings.HasPrefix(f[0], "/skiff")) {
			t.Errorf("the app sees a stage1 mount: %s", line)
		}
	}
}

// enter runs in the app's root (as the app itself) and within its limits:
// with --memory=48M on the app, an entered process that allocates 200 MiB is
// killed; it cannot reach the stage1 either.
func TestEnterHasTheAppsRootAndLimits(t *testing.T) {
	e := newEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	c, _, _ := e.startBackground(e.runArgs("--uuid-file-save="+uuidFile, e.image("inspect"), "--memory=48M", "--", "sleep", "600")...)
	var uuid string
	waitFor(t, time.Minute, "the pod to be ready", func() bool {
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
	r := e.skiff("enter", uuid, "/inspect", "stage1", "/proc/1/root", "chroot-out", "stage1", "/")
	checkNoStage1(t, "enter", r)
	if r := e.skiff("enter", uuid, "/inspect", "alloc", "8"); r.code != 0 {
		t.Errorf("enter, 8 MiB within the limit: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// Last: where the OOM kill stops the app's unit (kvm), the pod ends here.
	r = e.skiff("enter", uuid, "/inspect", "alloc", "200")
	if r.code == 0 || strings.Contains(r.stdout, "allocated=200") {
		t.Errorf("enter allocated 200 MiB in an app limited to 48 MiB: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
