//go:build functional

package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statusField returns the value of a /proc/self/status field as printed by
// "grep FIELD /proc/self/status" in a pod.
func field(out, name string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

const statusCmd = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"

func TestDefaultIsolation(t *testing.T) {
	e := newEnv(t)
	// /proc/timer_list is a masked path this kernel has (no /proc/kcore here).
	r := e.ok(e.runArgs(e.image("busybox"), "--", "/bin/sh", "-c", statusCmd+"; wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/domainname && echo WROTE-PROC; true")...)
	// rkt's default set: AUDIT_WRITE CHOWN DAC_OVERRIDE FSETID FOWNER KILL MKNOD
	// NET_RAW NET_BIND_SERVICE SETUID SETGID SETPCAP SETFCAP SYS_CHROOT.
	if got := field(r.stdout, "CapEff"); got != "00000000a80425fb" {
		t.Errorf("root app CapEff %s, want rkt's default set 00000000a80425fb", got)
	}
	if field(r.stdout, "Seccomp") != "2" || field(r.stdout, "NoNewPrivs") != "0" {
		t.Errorf("root app: %s", r.stdout)
	}
	if !strings.Contains(r.stdout, "\n0\n") || strings.Contains(r.stdout, "WROTE-PROC") {
		t.Errorf("/proc/timer_list not masked or /proc/sys writable: %s", r.stdout)
	}
	r = e.ok(e.runArgs(e.image("busybox"), "--user=1000", "--", "/bin/sh", "-c", statusCmd)...)
	if field(r.stdout, "CapEff") != "0000000000000000" || field(r.stdout, "NoNewPrivs") != "1" {
		t.Errorf("non-root app: %s", r.stdout)
	}
	r = e.ok("--insecure-options=image,seccomp,paths", "run", e.image("busybox"), "--", "/bin/sh", "-c", statusCmd+"; wc -c < /proc/timer_list")
	if field(r.stdout, "Seccomp") != "0" || strings.Contains(r.stdout, "\n0\n") {
		t.Errorf("--insecure-options=seccomp,paths: %s", r.stdout)
	}
}

func TestCapabilitiesAndSeccompFlags(t *testing.T) {
	e := newEnv(t)
	r := e.ok(e.runArgs(e.image("busybox"), "--caps-retain=CAP_NET_ADMIN,CAP_CHOWN", "--no-new-privileges", "--", "/bin/sh", "-c", statusCmd)...)
	if field(r.stdout, "CapEff") != "0000000000001001" || field(r.stdout, "CapBnd") != "0000000000001001" || field(r.stdout, "NoNewPrivs") != "1" {
		t.Errorf("--caps-retain: %s", r.stdout)
	}
	r = e.ok(e.runArgs(e.image("busybox"), "--caps-remove=CAP_CHOWN", "--", "/bin/sh", "-c", "chown 5 /tmp && echo CHOWNED; true")...)
	if strings.Contains(r.stdout, "CHOWNED") {
		t.Errorf("--caps-remove=CAP_CHOWN: chown still works")
	}
	// A blocked syscall fails with the errno the filter names.
	r = e.skiff(e.runArgs(e.image("busybox"), "--seccomp=mode=remove,errno=ENOSYS,@default,chmod,fchmodat,fchmodat2", "--", "/bin/chmod", "600", "/etc/passwd")...)
	if r.code == 0 || !strings.Contains(r.stderr, "not implemented") {
		t.Errorf("chmod under a filter that removes it: exit %d, %q", r.code, r.stderr)
	}
	e.fails(125, []string{"CAP_BOGUS"}, e.runArgs(e.image("busybox"), "--caps-retain=CAP_BOGUS")...)
	e.fails(125, []string{"CAP_SYS_RESOURCE", "bounding set"}, e.runArgs(e.image("busybox"), "--caps-retain=CAP_SYS_RESOURCE")...)
	e.fails(125, []string{"nosuchsyscall"}, e.runArgs(e.image("busybox"), "--seccomp=mode=remove,nosuchsyscall", "--", "/bin/true")...)
	e.fails(125, []string{"mode=keep"}, e.runArgs(e.image("busybox"), "--seccomp=mode=keep,read")...)
}

func TestUsersAndGroups(t *testing.T) {
	e := newEnv(t)
	r := e.ok(e.runArgs(e.image("inspect"), "--user=1000", "--group=1000", "--supplementary-gids=10,20", "--", "ids")...)
	for _, want := range []string{"uid=1000\n", "gid=1000\n", "10", "20"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ids lack %q: %s", want, r.stdout)
		}
	}
	e.fails(125, []string{"nosuchgroup"}, e.runArgs(e.image("inspect"), "--user=app", "--group=nosuchgroup", "--", "ids")...)
}

func TestVolumes(t *testing.T) {
	e := newEnv(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "in"), []byte("from-host\n"), 0o644)
	r := e.ok(e.runArgs("--volume=data,kind=host,source="+host, "--mount=volume=data,target=/data",
		e.image("busybox"), "--", "/bin/sh", "-c", "cat /data/in; echo from-pod > /data/out")...)
	if r.stdout != "from-host\n" {
		t.Errorf("host volume read: %q", r.stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "out")); string(b) != "from-pod\n" {
		t.Errorf("host volume write: %q", b)
	}
	// Short form, read-only.
	r = e.skiff(e.runArgs("--volume="+host+":/ro:ro", e.image("busybox"), "--", "/bin/sh", "-c", "cat /ro/in; echo x > /ro/in")...)
	if r.code == 0 || !strings.Contains(r.stdout, "from-host") || !strings.Contains(r.stderr, "Read-only") {
		t.Errorf("read-only volume: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	// An empty volume shared by two apps, and a read-only rootfs whose volume stays writable.
	r = e.ok(e.runArgs("--volume=shared,kind=empty,mode=0777", "--mount=volume=shared,target=/shared",
		e.image("busybox"), "--name=writer", "--readonly-rootfs", "--", "/bin/sh", "-c", "echo hi > /shared/f; touch /rootfs-file 2>/dev/null && echo ROOTFS-WRITABLE; true",
		"---", e.image("busybox"), "--name=reader", "--", "/bin/sh", "-c", "while [ ! -s /shared/f ]; do sleep 0.05; done; cat /shared/f")...)
	if strings.Contains(r.stdout, "ROOTFS-WRITABLE") || !strings.Contains(r.stdout, "hi") {
		t.Errorf("empty volume / readonly rootfs: %q", r.stdout)
	}
	e.fails(125, []string{"/nonexistent"}, e.runArgs("--volume=d,kind=host,source=/nonexistent", "--mount=volume=d,target=/d", e.image("busybox"))...)
	e.fails(125, []string{"nosuch", "--volume"}, e.runArgs(e.image("busybox"), "--mount=volume=nosuch,target=/x")...)
	e.fails(125, []string{"unused", "not mounted"}, e.runArgs("--volume=unused,kind=empty", e.image("busybox"))...)
	e.fails(125, []string{"relative", "absolute"}, e.runArgs("--volume=d,kind=empty", "--mount=volume=d,target=relative", e.image("busybox"))...)
}

func TestMultiAppPods(t *testing.T) {
	e := newEnv(t)
	// Apps share the pod's network: one serves on localhost, the other reads.
	r := e.ok(e.runArgs(e.image("busybox"), "--name=server", "--", "/bin/sh", "-c", "echo pong | nc -l -p 9000",
		"---", e.image("busybox"), "--name=client", "--", "/bin/sh", "-c",
		"for i in $(seq 100); do nc 127.0.0.1 9000 2>/dev/null && exit 0; sleep 0.05; done; exit 1")...)
	if !strings.Contains(r.stdout, "pong") {
		t.Errorf("apps do not share localhost: %q", r.stdout)
	}
	// One app failing stops the others; the pod exits with its code.
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	start := time.Now()
	r = e.skiff(e.runArgs("--uuid-file-save="+uuidFile, e.image("busybox"), "--name=sleeper", "--", "/bin/sleep", "600",
		"---", e.image("busybox"), "--name=failer", "--", "/bin/sh", "-c", "sleep 0.2; exit 3")...)
	if r.code != 3 || time.Since(start) > 30*time.Second {
		t.Fatalf("failing app: exit %d after %s, %q", r.code, time.Since(start), r.stderr)
	}
	b, _ := os.ReadFile(uuidFile)
	st := e.status(strings.TrimSpace(string(b)))
	codes := map[string]string{}
	for _, a := range st.Apps {
		if a.ExitCode != nil {
			codes[a.Name] = strconv.Itoa(*a.ExitCode) + a.Signal
		}
	}
	if codes["failer"] != "3" || codes["sleeper"] != "143SIGTERM" || *st.ExitCode != 3 {
		t.Errorf("per-app exits %v, pod %d", codes, *st.ExitCode)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t)
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skip("these checks read cgroup v1 files; this host has no v1 memory controller")
	}
	uuid, wait := e.runningPod("--memory=48M", "--cpu=500m", "--pids-limit=64", "--oom-score-adj=500")
	cg := func(ctrl, file string) string {
		b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, "skiff", uuid, "app-busybox", file))
		return strings.TrimSpace(string(b))
	}
	if cg("memory", "memory.limit_in_bytes") != strconv.Itoa(48<<20) || cg("cpu", "cpu.cfs_quota_us") != "50000" || cg("pids", "pids.max") != "64" {
		t.Errorf("limits: memory %s, cpu quota %s, pids %s", cg("memory", "memory.limit_in_bytes"), cg("cpu", "cpu.cfs_quota_us"), cg("pids", "pids.max"))
	}
	if r := e.ok("enter", uuid, "/bin/sh", "-c", "cat /proc/$(pidof sleep)/oom_score_adj"); r.stdout != "500\n" {
		t.Errorf("--oom-score-adj=500: %q", r.stdout)
	}
	e.ok("stop", uuid)
	wait()

	// Over its memory limit, the app is OOM-killed and the pod says so.
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	r := e.skiff(e.runArgs("--uuid-file-save="+uuidFile, e.image("busybox"), "--memory=16M", "--", "/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1")...)
	b, _ := os.ReadFile(uuidFile)
	st := e.ok("status", strings.TrimSpace(string(b))).stdout
	if r.code != 137 || !strings.Contains(st, "oom-killed=true") {
		t.Errorf("over the memory limit: exit %d, status %s", r.code, st)
	}
	e.fails(125, []string{"--memory=lots"}, e.runArgs(e.image("busybox"), "--memory=lots")...)
	e.fails(125, []string{"--cpu"}, e.runArgs(e.image("busybox"), "--cpu=-5")...)
}

func TestEnterHasTheAppsIsolation(t *testing.T) {
	e := newEnv(t)
	uuid, wait := e.runningPod("--user=1000", "--caps-retain=CAP_NET_BIND_SERVICE")
	app := e.ok("enter", uuid, "/bin/sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$(pidof sleep)/status")
	mine := e.ok("enter", uuid, "/bin/sh", "-c", statusCmd)
	if app.stdout != mine.stdout || field(mine.stdout, "CapEff") != "0000000000000000" {
		t.Errorf("enter's isolation differs from the app's:\napp:   %s\nenter: %s", app.stdout, mine.stdout)
	}
	e.ok("stop", "--force", uuid)
	wait()
}

func TestPrepareAndRunPrepared(t *testing.T) {
	e := newEnv(t)
	uuid := strings.TrimSpace(e.ok(append([]string{"--insecure-options=image", "prepare"}, append(e.stage1, e.image("busybox"), "--", "/bin/sh", "-c", "hostname; exit 4")...)...).stdout)
	if st := e.status(uuid); st.State != "prepared" {
		t.Fatalf("after prepare: %+v", st)
	}
	r := e.skiff("run-prepared", "--hostname=prepped", uuid)
	if r.code != 4 || r.stdout != "prepped\n" {
		t.Fatalf("run-prepared: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	e.fails(125, []string{uuid, "prepared"}, "run-prepared", uuid)
	// Prepared pods expire in gc.
	uuid = strings.TrimSpace(e.ok(append([]string{"--insecure-options=image", "prepare"}, append(e.stage1, e.image("busybox"))...)...).stdout)
	e.ok("gc", "--expire-prepared=0s", "--grace-period=0s")
	e.ok("gc", "--expire-prepared=0s", "--grace-period=0s")
	if ps := e.pods(); len(ps) != 0 {
		t.Errorf("pods left after gc: %+v", ps)
	}
}

func TestEnterWaitsForAStartingPod(t *testing.T) {
	e := newEnv(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	c, _, _ := e.startBackground(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/sleep", "600")...)
	waitFor(t, 20*time.Second, "the pod's UUID", func() bool { _, err := os.Stat(uf); return err == nil })
	// Right away: the pod may not have its pid yet; enter waits for it.
	if r := e.ok("enter", uuidOf(t, uf), "/bin/echo", "in"); r.stdout != "in\n" {
		t.Errorf("enter: %q", r.stdout)
	}
	e.ok("stop", uuidOf(t, uf))
	c.Wait()
}
