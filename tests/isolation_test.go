//go:build functional

package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	// Far below the sleeper's 600 s: the failer's exit ended the pod (a bound, not a speed test).
	if r.code != 3 || time.Since(start) > 180*time.Second {
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
	e.waitForSleep(uuid)
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
	e.waitForSleep(uuid)
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

// usersLeases is where skiff leases private uid/gid ranges, host-wide.
const usersLeases = "/var/lib/skiff/userns"

type idRange struct {
	Base uint32 `json:"base"`
	Size uint32 `json:"size"`
}

// privateUsers reads a pod's range from status --format=json.
func (e *env) privateUsers(uuid string) idRange {
	e.t.Helper()
	var st struct {
		PrivateUsers *idRange `json:"privateUsers"`
	}
	if err := json.Unmarshal([]byte(e.ok("status", "--format=json", uuid).stdout), &st); err != nil {
		e.t.Fatal(err)
	}
	if st.PrivateUsers == nil {
		e.t.Fatalf("pod %s: status shows no privateUsers", uuid)
	}
	return *st.PrivateUsers
}

// leaseOf is the pod that holds the lease of the range starting at base ("" when none).
func leaseOf(base uint32) string {
	var l struct {
		Pod string `json:"pod"`
	}
	b, err := os.ReadFile(filepath.Join(usersLeases, strconv.FormatUint(uint64(base), 10)))
	if err != nil || json.Unmarshal(b, &l) != nil {
		return ""
	}
	return l.Pod
}

// leasesOf lists the leases that name a pod of this env's data directory.
func (e *env) leases() []string {
	var out []string
	entries, _ := os.ReadDir(usersLeases)
	for _, en := range entries {
		b, _ := os.ReadFile(filepath.Join(usersLeases, en.Name()))
		if strings.Contains(string(b), `"`+e.dir+`"`) {
			out = append(out, en.Name())
		}
	}
	return out
}

// idMap parses a /proc/PID/[ug]id_map of one line.
func idMap(t *testing.T, out string) (inside, host, size uint32) {
	t.Helper()
	f := strings.Fields(out)
	if len(f) != 3 {
		t.Fatalf("id map %q: want one line of three numbers", out)
	}
	return uint32(atoi(t, f[0])), uint32(atoi(t, f[1])), uint32(atoi(t, f[2]))
}

func TestPrivateUsersRootfsOwnership(t *testing.T) {
	e := newEnv(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	r := e.ok(e.runArgs("--private-users", "--net=none", "--uuid-file-save="+uf, e.image("inspect"), "--exec=/bin/sh", "--", "-c",
		`/inspect read /proc/self/uid_map; echo ---; /inspect read /proc/self/gid_map; echo ---; /inspect ids; echo ---
		stat -c '%u:%g %n' / /bin/busybox /etc/passwd /home/app /inspect
		/inspect write /etc/written hello >/dev/null && echo root >> /etc/passwd && chown 1000:1000 /etc/written && stat -c '%u:%g %n' /etc/written`)...)
	parts := strings.Split(r.stdout, "---\n")
	if len(parts) != 4 {
		t.Fatalf("output: %q", r.stdout)
	}
	uuid := uuidOf(t, uf)
	rng := e.privateUsers(uuid)
	for i, m := range parts[:2] {
		in, host, size := idMap(t, m)
		if in != 0 || host == 0 || host != rng.Base || size != 65536 || rng.Size != 65536 {
			t.Errorf("id map %d: %q, status range %+v; want 0 %d 65536 with a base that is not 0", i, m, rng, rng.Base)
		}
	}
	if !strings.Contains(parts[2], "uid=0\n") || !strings.Contains(parts[2], "gid=0\n") {
		t.Errorf("the app is not root in its pod: %q", parts[2])
	}
	// The image's files keep their owners in the pod (never nobody), and its
	// root writes the rootfs and chowns within its range.
	for _, want := range []string{"0:0 /\n", "0:0 /bin/busybox\n", "0:0 /etc/passwd\n", "1000:1000 /home/app\n", "0:0 /inspect\n", "1000:1000 /etc/written\n"} {
		if !strings.Contains(parts[3], want) {
			t.Errorf("ownership in the pod: %q lacks %q", parts[3], want)
		}
	}
	// On the host the app's writes are owned by ids of the range.
	upper := filepath.Join(e.dir, "pods", "run", uuid, "apps", "inspect", "upper")
	for name, want := range map[string]uint32{"etc/passwd": rng.Base, "etc/written": rng.Base + 1000} {
		fi, err := os.Stat(filepath.Join(upper, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != want || st.Gid != want {
			t.Errorf("%s on the host: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, want, want)
		}
	}
	if leaseOf(rng.Base) != uuid {
		t.Errorf("no lease of %+v for pod %s in %s", rng, uuid, usersLeases)
	}
	e.ok("rm", uuid)
	if leaseOf(rng.Base) == uuid {
		t.Errorf("rm left the lease of %+v", rng)
	}
}

// privateUsersPod starts a long-running pod with --private-users and waits until it is ready.
func (e *env) privateUsersPod(extra ...string) (uuid string, wait func() result) {
	e.t.Helper()
	uf := filepath.Join(e.t.TempDir(), "uuid")
	args := append(append([]string{"--private-users", "--uuid-file-save=" + uf}, extra...), e.image("busybox"), "--", "/bin/sleep", "600")
	c, out, errb := e.startBackground(e.runArgs(args...)...)
	waitFor(e.t, 20*time.Second, "the pod to be ready", func() bool {
		b, err := os.ReadFile(uf)
		if err != nil || len(b) < 36 {
			return false
		}
		uuid = strings.TrimSpace(string(b))
		return e.status(uuid).Ready
	})
	return uuid, func() result {
		_ = c.Wait()
		return result{stdout: out.String(), stderr: errb.String(), code: c.ProcessState.ExitCode()}
	}
}

// hostUID is the owner of a host process, from /proc/PID/status.
func hostUID(t *testing.T, pid int) uint32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	uids := field(string(b), "Uid")
	return uint32(atoi(t, strings.Fields(uids)[0]))
}

func TestPrivateUsersPodsAreApart(t *testing.T) {
	e := newEnv(t)
	a, waitA := e.privateUsersPod()
	b, waitB := e.privateUsersPod("--net=host")
	ra, rb := e.privateUsers(a), e.privateUsers(b)
	if ra.Base < rb.Base+rb.Size && rb.Base < ra.Base+ra.Size {
		t.Fatalf("two live pods share ids: %+v and %+v", ra, rb)
	}
	for uuid, rng := range map[string]idRange{a: ra, b: rb} {
		// The host sees the pod's processes as its range's first uid: the
		// pod's init, and the app below it.
		init := e.status(uuid).PID
		if uid := hostUID(t, init); uid != rng.Base {
			t.Errorf("pod %s: init runs as host uid %d, want %d", uuid, uid, rng.Base)
		}
		children, _ := os.ReadFile(filepath.Join("/proc", itoa(init), "task", itoa(init), "children"))
		if len(strings.Fields(string(children))) == 0 {
			t.Fatalf("pod %s: its init has no children", uuid)
		}
		for _, c := range strings.Fields(string(children)) {
			if uid := hostUID(t, atoi(t, c)); uid != rng.Base {
				t.Errorf("pod %s: process %s runs as host uid %d, want %d", uuid, c, uid, rng.Base)
			}
		}
		// enter joins the pod's user namespace: root in the pod, the pod's map.
		r := e.ok("enter", uuid, "/bin/sh", "-c", "id -u; cat /proc/self/uid_map; touch /enter-wrote && echo wrote")
		lines := strings.SplitN(r.stdout, "\n", 3)
		if len(lines) < 3 || lines[0] != "0" || lines[2] != "wrote\n" {
			t.Fatalf("enter %s: %q", uuid, r.stdout)
		}
		if _, host, _ := idMap(t, lines[1]); host != rng.Base {
			t.Errorf("enter %s: uid map %q, want base %d", uuid, lines[1], rng.Base)
		}
	}
	e.ok("stop", a, b)
	waitA()
	waitB()
	e.ok("gc", "--grace-period=0s")
	e.ok("gc", "--grace-period=0s")
	for uuid, rng := range map[string]idRange{a: ra, b: rb} {
		if leaseOf(rng.Base) == uuid {
			t.Errorf("gc left pod %s's lease of %+v", uuid, rng)
		}
		if _, err := os.Stat(filepath.Join("/run/skiff/rootfs", uuid)); err == nil {
			t.Errorf("gc left /run/skiff/rootfs/%s", uuid)
		}
	}
}

func TestPrivateUsersVolumesAndPrepare(t *testing.T) {
	e := newEnv(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "root-file"), []byte("r\n"), 0o644)
	os.WriteFile(filepath.Join(host, "app-file"), []byte("a\n"), 0o644)
	os.Chown(filepath.Join(host, "app-file"), 1000, 1000)
	uuid := strings.TrimSpace(e.ok(append([]string{"--insecure-options=image", "prepare", "--private-users",
		"--volume=data,kind=host,source=" + host + ",idmap=true", "--mount=volume=data,target=/data",
		"--volume=scratch,kind=empty,uid=1000,gid=1000,mode=0700", "--mount=volume=scratch,target=/scratch"},
		append(e.stage1, e.image("busybox"), "--", "/bin/sh", "-c",
			`cat /proc/self/uid_map; stat -c '%u:%g %n' /data/root-file /data/app-file /scratch; echo new > /data/from-pod; su app -s /bin/sh -c 'echo x > /scratch/f'`)...)...).stdout)
	rng := e.privateUsers(uuid) // leased when prepared
	if leaseOf(rng.Base) != uuid {
		t.Fatalf("prepared pod %s holds no lease of %+v", uuid, rng)
	}
	r := e.ok("run-prepared", "--net=none", uuid)
	if _, base, _ := idMap(t, strings.SplitN(r.stdout, "\n", 2)[0]); base != rng.Base {
		t.Errorf("run-prepared used ids from %d, the pod was prepared with %+v", base, rng)
	}
	// A host volume asked to be idmapped (kept by run-prepared): the host's
	// owners, seen as the same ids (security_idmap_test.go: the default).
	for _, want := range []string{"0:0 /data/root-file", "1000:1000 /data/app-file", "1000:1000 /scratch"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("volumes in the pod: %q lacks %q", r.stdout, want)
		}
	}
	fi, err := os.Stat(filepath.Join(host, "from-pod"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("a file the pod's root wrote in a host volume is owned by host uid %d, want 0 (idmapped)", st.Uid)
	}
	// An empty volume lives in the pod directory, owned by the range's ids.
	fi, err = os.Stat(filepath.Join(e.dir, "pods", "run", uuid, "volumes", "scratch", "f"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != rng.Base+1000 {
		t.Errorf("empty volume file owned by host uid %d, want %d", st.Uid, rng.Base+1000)
	}
	// An expired prepared pod gives its range back in gc.
	uuid = strings.TrimSpace(e.ok(append([]string{"--insecure-options=image", "prepare", "--private-users"}, append(e.stage1, e.image("busybox"))...)...).stdout)
	rng = e.privateUsers(uuid)
	e.ok("gc", "--expire-prepared=0s", "--grace-period=0s")
	e.ok("gc", "--expire-prepared=0s", "--grace-period=0s")
	if leaseOf(rng.Base) == uuid {
		t.Errorf("gc of an expired prepared pod left its lease of %+v", rng)
	}
}

func TestPrivateUsersSIGKILLedSkiffLeavesNothingAfterGC(t *testing.T) {
	e := newEnv(t)
	uuid, wait := e.privateUsersPod()
	rng, initPID := e.privateUsers(uuid), e.status(uuid).PID
	if err := syscall.Kill(e.runPID(uuid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait()
	waitFor(t, 10*time.Second, "the pod's init to die with skiff", func() bool {
		return syscall.Kill(initPID, 0) != nil
	})
	e.ok("gc", "--grace-period=0s")
	if ps := e.pods(); len(ps) != 0 {
		t.Fatalf("pods left: %+v", ps)
	}
	if leaseOf(rng.Base) == uuid {
		t.Errorf("gc left the lease of %+v", rng)
	}
	if _, err := os.Stat(filepath.Join("/run/skiff/rootfs", uuid)); err == nil {
		t.Errorf("gc left /run/skiff/rootfs/%s", uuid)
	}
	if cgs := cgroupsOf(uuid); len(cgs) != 0 {
		t.Errorf("cgroups left: %v", cgs)
	}
}

// overlayMount mounts an empty overlay at a new directory and returns it: a
// filesystem that cannot be idmapped.
// TestPrivateUsersWhenRunSkiffIsPrivate: /run/skiff made 0700 by whatever
// made it first (on a fresh host, the localnet lock of a pod with a port did)
// must not keep a pod with private users from starting: its root walks from /
// to its stage1 rootfs under /run/skiff/rootfs.
func TestPrivateUsersWhenRunSkiffIsPrivate(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll("/run/skiff", 0o700); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat("/run/skiff")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod("/run/skiff", fi.Mode().Perm()) })
	if err := os.Chmod("/run/skiff", 0o700); err != nil {
		t.Fatal(err)
	}
	r := e.ok(e.runArgs("--private-users", "--net=none", e.image("busybox"), "--", "/bin/sh", "-c", "echo walked")...)
	if !strings.Contains(r.stdout, "walked") {
		t.Errorf("the app did not run: %+v", r)
	}
	e.ok("gc", "--grace-period=0s")
}

func overlayMount(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, s := range []string{"lower", "upper", "work", "merged"} {
		os.Mkdir(filepath.Join(d, s), 0o755)
	}
	merged := filepath.Join(d, "merged")
	opts := "lowerdir=" + d + "/lower,upperdir=" + d + "/upper,workdir=" + d + "/work"
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(merged, syscall.MNT_DETACH) })
	return merged
}

func TestPrivateUsersBadInput(t *testing.T) {
	e := newEnv(t)
	ovl := overlayMount(t)
	e.fails(125, []string{"app busybox", "uid 70000", "--private-users"}, e.runArgs("--private-users", e.image("busybox"), "--user=70000")...)
	// A user named in the image whose id is beyond the range: known only at
	// start, still said plainly.
	e.fails(125, []string{"id 100000 is not mapped", "--private-users"}, e.runArgs("--private-users", e.image("busybox"), "--user=big", "--", "/bin/true")...)
	e.ok("gc", "--grace-period=0s")
	e.fails(125, []string{"volume d", ovl, "overlay", "cannot be idmapped"},
		e.runArgs("--private-users", "--volume=d,kind=host,source="+ovl+",idmap=true", "--mount=volume=d,target=/d", e.image("busybox"))...)
	// An image store on overlayfs cannot be idmapped either: skiff says so, and
	// where to keep --dir instead.
	onOverlay := *e
	onOverlay.dir = filepath.Join(ovl, "data")
	onOverlay.fails(125, []string{"image layer", "overlay", "cannot be idmapped", "--dir"}, e.runArgs("--private-users", e.image("busybox"))...)
	for _, x := range []*env{e, &onOverlay} {
		if ps := x.pods(); len(ps) != 0 {
			t.Errorf("refused runs left pods in %s: %+v", x.dir, ps)
		}
		if ls := x.leases(); len(ls) != 0 {
			t.Errorf("refused runs left leases in %s: %v", usersLeases, ls)
		}
		if ms := mountsUnder(x.dir); len(ms) != 0 {
			t.Errorf("refused runs left mounts: %v", ms)
		}
	}
}
