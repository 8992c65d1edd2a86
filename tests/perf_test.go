//go:build functional

package tests

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDebugTimeline: with --debug, run prints its timeline (issue #18), one
// stderr line per phase with the milliseconds since stage0 started, on one
// clock across stage0 and stage1: every phase is there, in order, and the
// times never go back. No time is asserted.
func TestDebugTimeline(t *testing.T) {
	e := newEnv(t)
	args := append([]string{"--debug"}, e.runArgs("--net=none", e.image("busybox"), "--", "/bin/true")...)
	r := e.ok(args...)
	want := []string{"skiff: command line parsed", "skiff: stage1 and images found in the store",
		"skiff: pod directory written", "skiff: exec stage1"}
	if e.flavor() == "default" {
		want = append(want, "stage1: stage1 started", "stage1: stage1 rootfs mounted",
			"stage1: libcontainer started the pod's init", "stage1: app started (systemd ran its unit; app-exec has its stdio)",
			"stage1: pod's init exited", "stage1: cleaned up", "stage1: exit recorded")
	}
	line := regexp.MustCompile(`(?m)^(skiff|stage1): timeline ([0-9.]+) ms (.+)$`)
	var got []string
	last := -1.0
	for _, m := range line.FindAllStringSubmatch(r.stderr, -1) {
		ms, err := strconv.ParseFloat(m[2], 64)
		if err != nil || ms < last {
			t.Errorf("timeline line %q: time %s after %.1f ms", m[0], m[2], last)
		}
		last = ms
		got = append(got, m[1]+": "+m[3])
	}
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("timeline lacks %q (or has it out of order); got %q\nstderr: %s", want[i], got, r.stderr)
	}
}

// The pod's systemd keeps no mount units (units.NoMountTrackingEnv): it
// neither loads one per mount of the pod at its start (about 20 per app) nor
// stops them one by one at its end (a /bin/umount each, which the stage1
// rootfs does not have), and holds no libmount watch whose release at the
// pod's end waits for a kernel grace period. Looked at from inside the pod's
// mount namespace with the pod's own systemctl; and the variable that does it
// stays with the pod's systemd: the app's environment does not have it.
func TestPodSystemdTracksNoMounts(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("the kvm guest's systemd keeps its mount units (the guest's own mounts)")
	}
	need(t, "nsenter")
	uuid, wait := e.runningPod()
	pid := e.status(uuid).PID
	systemctl := func(args ...string) string {
		out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-m", "-p", "--",
			"/usr/bin/systemctl", "--no-pager", "--no-legend"}, args...)...).CombinedOutput()
		if err != nil {
			t.Errorf("systemctl %s in the pod: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	mounts := systemctl("list-units", "--all", "--type=mount")
	app := systemctl("show", "-p", "LoadState", "opt-stage2-busybox-rootfs.mount")
	appEnv := e.ok("enter", uuid, "/bin/sh", "-c", "cat /proc/$(pidof sleep)/environ | tr '\\0' '\\n'").stdout
	e.ok("stop", uuid)
	wait()
	t.Logf("mount units: %q; the app's rootfs: %q", mounts, app)
	for _, line := range strings.Split(strings.TrimSpace(mounts), "\n") {
		// -.mount is systemd's own, built in: loaded, and inactive without tracking.
		if f := strings.Fields(line); len(f) > 0 && f[0] != "-.mount" {
			t.Errorf("the pod's systemd has a unit for a mount of the pod: %q", line)
		}
	}
	if strings.TrimSpace(app) != "LoadState=not-found" {
		t.Errorf("the app's rootfs has a mount unit in the pod's systemd: %q", app)
	}
	if strings.Contains(appEnv, "LIBMOUNT_UTAB") || !strings.Contains(appEnv, "PATH=") {
		t.Errorf("the app's environment (its sleep's /proc/PID/environ): %q", appEnv)
	}
}

// The stage1 rootfs's writable layer is a tmpfs (issue #18): the units
// stage1 writes for the pod, and the mount points the sandbox makes in its
// root, are in the pod but never on the host's disk, so neither a run nor gc
// pays for them there; and the host has no mount of it while the pod runs
// (it goes with the pod's mount namespace).
func TestStage1WritableLayerIsNotOnDisk(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("the kvm stage1 has no stage1 overlay on the host")
	}
	uuid, wait := e.runningPod()
	podDir := filepath.Join(e.dir, "pods", "run", uuid)
	pid := e.status(uuid).PID
	_, inPod := os.Stat(fmt.Sprintf("/proc/%d/root/etc/systemd/system/skiff.target", pid))
	mounted := mountsUnder(podDir)
	e.ok("stop", uuid)
	wait()
	if inPod != nil {
		t.Errorf("the pod's systemd does not see its units: %v", inPod)
	}
	if len(mounted) > 0 {
		t.Errorf("mounts of the running pod left on the host: %q", mounted)
	}
	var onDisk []string
	filepath.WalkDir(podDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (strings.HasSuffix(p, ".service") || strings.HasSuffix(p, ".target") || strings.Contains(p, "/opt/stage2")) {
			onDisk = append(onDisk, strings.TrimPrefix(p, podDir))
		}
		return nil
	})
	if len(onDisk) > 0 {
		t.Errorf("the stage1 rootfs's writes are on disk in the exited pod: %q", onDisk)
	}
	// Nor is anything stage1 kept to undo or stop the pod, once it is clean:
	// its directories, the network's state, the cgroup's path, the stop
	// timeout, the stage1 directory itself (gc would remove them all).
	if _, err := os.Stat(filepath.Join(podDir, "clean")); err != nil {
		t.Fatalf("the stopped pod is not marked clean: %v", err)
	}
	var left []string
	filepath.WalkDir(filepath.Join(podDir, "stage1"), func(p string, d fs.DirEntry, err error) error {
		if !errors.Is(err, fs.ErrNotExist) {
			left = append(left, strings.TrimPrefix(p, podDir))
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("the clean pod still has %q", left)
	}
	e.ok("gc", "--grace-period=0s")
}

// An idle pod's systemd keeps none of its binary's and libraries' pages
// mapped (issue #18): the pod's supervisor pages them out once the pod has
// been ready for 10 s (about 9 MB of the pod's 15). Its systemd still
// does its work afterwards: the pod stops cleanly. With --private-users too
// (the pod's systemd then belongs to a user namespace of its own).
func TestIdlePodSystemdIsPagedOut(t *testing.T) {
	for _, private := range []bool{false, true} {
		t.Run(fmt.Sprintf("private users %v", private), func(t *testing.T) {
			e := newEnv(t)
			if e.flavor() != "default" {
				t.Skip("a kvm pod's systemd is in the guest")
			}
			start := e.runningPod
			if private {
				start = e.privateUsersPod
			}
			uuid, wait := start()
			pid := e.status(uuid).PID
			var last int
			waitFor(t, 40*time.Second, "the idle pod's systemd to have its file pages paged out", func() bool {
				last = pssFileKB(t, pid)
				return last < 2048
			})
			e.ok("stop", uuid)
			if r := wait(); r.code != 0 {
				t.Fatalf("the pod stopped with %d (systemd's file pages: %d kB): %s", r.code, last, r.stderr)
			}
		})
	}
}

// pssFileKB is Pss_File of pid (smaps_rollup), in kB.
func pssFileKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss_File:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("smaps_rollup of %d: %q", pid, line)
			}
			return n
		}
	}
	t.Fatalf("smaps_rollup of %d has no Pss_File", pid)
	return 0
}
