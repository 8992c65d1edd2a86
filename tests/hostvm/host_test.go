//go:build hostvm

package hostvm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The images in the guest: the test images over 9p, and the notify-labelled
// copy of inspect boot makes in the tools share.
const (
	inspectImg = "oci-archive:/opt/skiff-images/inspect.oci.tar"
	busyboxImg = "oci-archive:/opt/skiff-images/busybox.oci.tar"
	notifyImg  = "oci-archive:/opt/skiff-tools/notify.oci.tar"
	skiffCmd   = "skiff --insecure-options=image"
)

// TestHost boots the systemd host once and runs every scenario of issue #15
// in it, in order; each leaves the guest clean for the next (and checks so).
func TestHost(t *testing.T) {
	v := boot(t)
	if !t.Run("Install", func(t *testing.T) { testInstall(t, v) }) {
		return
	}
	t.Run("1-UnitNotifyJournalMachinedStop", func(t *testing.T) { testUnit(t, v) })
	t.Run("2-DelegateKillMemoryMax", func(t *testing.T) { testDelegate(t, v) })
	t.Run("3-SocketActivation", func(t *testing.T) { testSocket(t, v) })
	t.Run("4-RestartOnFailureAndGCMarkOnly", func(t *testing.T) { testRestart(t, v) })
	t.Run("5-PureV2Limits", func(t *testing.T) { testLimits(t, v) })
	t.Run("5-PrivateUsersDelegation", func(t *testing.T) { testPrivateUsers(t, v) })
	t.Run("7-SIGKILLedUnitThenGC", func(t *testing.T) { testKilledUnit(t, v) })
	t.Run("6-Conformance", func(t *testing.T) { testConformance(t, v) })
}

// testInstall installs skiff the way `make install` does and checks the host
// is what the issue asks for: systemd PID 1, D-Bus, machined, pure cgroup v2.
func testInstall(t *testing.T, v *vm) {
	v.must(t, `set -e
install -D -m 0755 /opt/skiff-bin/skiff /usr/local/bin/skiff
install -D -m 0644 /opt/skiff-bin/stage1-default.oci.tar /usr/lib/skiff/stage1-default.oci.tar`)
	out := v.must(t, `set -e
echo "pid1=$(cat /proc/1/comm)"
echo "fs=$(stat -f -c %T /sys/fs/cgroup)"
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
echo "state=$(systemctl is-system-running --wait)" || true
systemctl is-active dbus.service systemd-journald.service
machinectl list >/dev/null && systemctl is-active systemd-machined && echo machined=ok
skiff version`)
	contains(t, "the guest", out, "pid1=systemd", "fs=cgroup2fs", "memory", "pids", "cpu", "machined=ok")
	if !strings.Contains(out, "state=running") {
		t.Logf("the guest is not fully up (%s); failed units: %s", out, v.must(t, "systemctl --failed --no-legend || true"))
	}
	t.Logf("guest kernel %s\n%s", v.kernel, out)
}

// show returns systemctl show's properties of unit.
func show(t *testing.T, v *vm, unit string, props ...string) map[string]string {
	t.Helper()
	out := v.must(t, "systemctl show "+unit+" -p "+strings.Join(props, " -p "))
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, val, ok := strings.Cut(l, "="); ok {
			m[k] = val
		}
	}
	return m
}

// waitGuest runs script until it exits 0 (at most limit) and returns its output.
func waitGuest(t *testing.T, v *vm, limit time.Duration, what, script string) string {
	t.Helper()
	r := v.run(t, limit+60*time.Second, fmt.Sprintf(`while [ $SECONDS -lt %d ]; do out=$( %s ) && { printf '%%s' "$out"; exit 0; }; sleep 1; done; printf '%%s' "$out"; exit 1`, int(limit.Seconds()), script))
	if r.Code != 0 {
		t.Fatalf("%s: not within %v:\n%s", what, limit, r)
	}
	return r.Stdout
}

// clean asserts nothing of any pod remains in the guest: no skiff mounts,
// no pod cgroups, no network namespaces, no machined registration, no pod
// processes. It first removes exited pods (skiff gc, as a user would).
func clean(t *testing.T, v *vm, gc bool) {
	t.Helper()
	if gc {
		v.must(t, skiffCmd+" gc --grace-period=0s")
	}
	leftovers(t, v, true)
}

// leftovers fails t for anything of a pod left in the guest; the ended pods
// that skiff keeps for gc count only with pods.
func leftovers(t *testing.T, v *vm, pods bool) {
	t.Helper()
	list := ""
	if pods {
		list = "skiff list --no-legend 2>/dev/null | sed 's/^/pod: /'"
	}
	out := v.run(t, 120*time.Second, `
grep -F /var/lib/skiff /proc/self/mountinfo | sed 's/^/mount: /'
find /sys/fs/cgroup -mindepth 1 -type d \( -name 'skiff-*' -o -path '/sys/fs/cgroup/skiff/*' \) | sed 's/^/cgroup: /'
ip netns list | sed 's/^/netns: /'
machinectl list --no-legend | grep skiff | sed 's/^/machine: /'
ps -eo pid,ppid,args | awk -v me=$$ '$1 != me && $2 != me' | grep -E 'stage1|/inspect|skiff|systemd --unit=skiff' | grep -v hostvm-runner | sed 's/^/process: /'
`+list+`
true`)
	if strings.TrimSpace(out.Stdout) != "" {
		t.Errorf("left behind in the guest:\n%s", out.Stdout)
	}
}

// inactive is a guest condition: unit is inactive or failed (not deactivating).
func inactive(unit string) string {
	return `case "$(systemctl show -P ActiveState ` + unit + `)" in inactive|failed) true ;; *) false ;; esac`
}

// startPod starts a pod in the background with skiff run (the UUID saved in
// /run/NAME.uuid, its output in /run/NAME.log) and waits until it is ready.
func startPod(t *testing.T, v *vm, name, args string) string {
	t.Helper()
	v.must(t, skiffCmd+` run --uuid-file-save=/run/`+name+`.uuid `+args+` >/run/`+name+`.log 2>&1 </dev/null &
for i in $(seq 200); do
  st=$( [ -s /run/`+name+`.uuid ] && skiff status $(cat /run/`+name+`.uuid) 2>/dev/null )
  case "$st" in *ready=true*) exit 0 ;; *state=exited*) break ;; esac
  sleep 1
done
cat /run/`+name+`.log; exit 1`)
	return strings.TrimSpace(v.must(t, "cat /run/"+name+".uuid"))
}

// statusJSON is what the tests read of skiff status --format=json.
type statusJSON struct {
	State    string `json:"state"`
	ExitCode *int   `json:"exitCode"`
	Apps     []struct {
		Name     string `json:"name"`
		ExitCode *int   `json:"exitCode"`
		Signal   string `json:"signal"`
	} `json:"apps"`
}

// podStatus is skiff status --format=json of the pod uuid.
func podStatus(t *testing.T, v *vm, uuid string) statusJSON {
	t.Helper()
	out := v.must(t, skiffCmd+" status --format=json "+uuid)
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("skiff status --format=json %s: %v\n%s", uuid, err, out)
	}
	return st
}

// journal returns the unit's journal (messages only).
func journal(t *testing.T, v *vm, unit string) string {
	return v.must(t, "journalctl --no-pager -o cat -u "+unit)
}

// 1. A generated Type=notify unit: active only after READY=1, output in the
// journal, registered with machined, stopped cleanly, nothing left.
func testUnit(t *testing.T, v *vm) {
	v.must(t, skiffCmd+` generate unit --unit-name=s1 --net=none --stop-timeout=10s --uuid-file-save=/run/s1.uuid `+notifyImg+
		` -- stdout s1-before-ready , sleep 4 , notify READY=1 , stdout s1-after-ready , sleep 3600 >/etc/systemd/system/s1.service
systemctl daemon-reload`)
	r := v.run(t, 300*time.Second, "systemctl start s1")
	if r.Code != 0 {
		t.Fatalf("systemctl start s1: %s\n%s", r, journal(t, v, "s1"))
	}
	p := show(t, v, "s1", "ActiveState", "SubState", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic", "MainPID")
	if p["ActiveState"] != "active" || p["SubState"] != "running" {
		t.Fatalf("after systemctl start: %v\n%s", p, journal(t, v, "s1"))
	}
	start, _ := strconv.ParseInt(p["ExecMainStartTimestampMonotonic"], 10, 64)
	active, _ := strconv.ParseInt(p["ActiveEnterTimestampMonotonic"], 10, 64)
	if d := time.Duration(active-start) * time.Microsecond; d < 4*time.Second {
		t.Errorf("the unit was active %v after skiff started, before the app's READY=1 (4 s after it started)", d)
	}
	uuid := strings.TrimSpace(v.must(t, "cat /run/s1.uuid"))
	waitGuest(t, v, 60*time.Second, "the app's output in the journal", "journalctl --no-pager -o cat -u s1 | grep -x s1-after-ready")
	contains(t, "journalctl -u s1", journal(t, v, "s1"), "s1-before-ready")
	contains(t, "machinectl list", v.must(t, "machinectl list --no-legend"), "skiff-"+uuid)

	r = v.run(t, 120*time.Second, "systemctl stop s1")
	if r.Code != 0 {
		t.Fatalf("systemctl stop s1: %s", r)
	}
	p = show(t, v, "s1", "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
	if p["ActiveState"] != "inactive" || p["Result"] != "success" {
		t.Errorf("after systemctl stop: %v (want inactive, success: stopped within TimeoutStopSec)", p)
	}
	// systemctl stop alone took the pod down: no mounts, cgroups, netns,
	// processes or machine registration of it (its directory stays for gc).
	leftovers(t, v, false)
	// The app got SIGTERM (not the stop timeout's SIGKILL), and the pod's
	// exit is recorded: 0, an app stopped on request with SIGTERM being clean.
	// The generated unit's ExecStopPost marks the ended pod for gc.
	st := podStatus(t, v, uuid)
	if (st.State != "exited" && st.State != "exited-garbage") || st.ExitCode == nil || *st.ExitCode != 0 ||
		len(st.Apps) != 1 || st.Apps[0].Signal != "SIGTERM" {
		t.Errorf("skiff status after systemctl stop: %s; want exited (or exited-garbage), exit code 0, the app ended by SIGTERM",
			v.must(t, skiffCmd+" status --format=json "+uuid))
	}
	clean(t, v, true)
	v.must(t, "rm -f /etc/systemd/system/s1.service; systemctl daemon-reload")
}

// appPids prints the pids of scenario 2's app (its command line starts with
// "/inspect stdout s2-up").
const appPids = `for p in /proc/[0-9]*; do tr '\0' ' ' <$p/cmdline 2>/dev/null | grep -q '^/inspect stdout s2-up' && echo ${p#/proc/}; done; true`

// 2. Delegate=yes: the pod's systemd and its app are in the unit's cgroup
// tree; systemctl kill and the unit's MemoryMax= reach them.
func testDelegate(t *testing.T, v *vm) {
	v.must(t, skiffCmd+` generate unit --unit-name=s2 --net=none --uuid-file-save=/run/s2.uuid `+inspectImg+
		` -- stdout s2-up , sleep 3600 >/etc/systemd/system/s2.service
mkdir -p /etc/systemd/system/s2.service.d
printf '[Service]\nMemoryMax=96M\n' >/etc/systemd/system/s2.service.d/memory.conf
systemctl daemon-reload`)
	if r := v.run(t, 300*time.Second, "systemctl start s2"); r.Code != 0 {
		t.Fatalf("systemctl start s2: %s\n%s", r, journal(t, v, "s2"))
	}
	waitGuest(t, v, 60*time.Second, "the app", "journalctl --no-pager -o cat -u s2 | grep -x s2-up")
	st := v.must(t, "systemctl status --no-pager -l s2")
	uuid := strings.TrimSpace(v.must(t, "cat /run/s2.uuid"))
	contains(t, "systemctl status s2", st, "skiff-"+uuid, "init.scope", "systemd --unit=skiff.target", "skiff-app-inspect.service", "/inspect stdout s2-up", "supervisor")
	// The app's own cgroup is in the unit's subtree, and the unit's memory.max covers it.
	out := v.must(t, `pid=$(`+appPids+` | head -1); echo "pid=$pid"; cat /proc/$pid/cgroup`)
	if !strings.Contains(out, "0::/system.slice/s2.service/") {
		t.Errorf("the app is not in the unit's cgroup:\n%s\nstatus:\n%s", out, st)
	}
	contains(t, "the unit's memory.max", v.must(t, "cat /sys/fs/cgroup/system.slice/s2.service/memory.max"), "100663296")
	// The unit's MemoryMax= holds for the pod: a second process in the
	// pod's app cgroup that allocates past it is OOM-killed within the unit.
	r := v.run(t, 120*time.Second, `uuid=$(cat /run/s2.uuid); `+skiffCmd+` enter $uuid /inspect alloc 200; echo rc=$?
cat /sys/fs/cgroup/system.slice/s2.service/memory.events`)
	contains(t, "an allocation past the unit's MemoryMax", r.Stdout, "oom_kill ")
	if strings.Contains(r.Stdout, "oom_kill 0") || strings.Contains(r.Stdout, "allocated=200") {
		t.Errorf("200 MiB allocated in a unit with MemoryMax=96M:\n%s", r)
	}
	// systemctl kill: SIGTERM to every process of the unit, the pod's systemd and the app included.
	v.must(t, "systemctl kill s2")
	waitGuest(t, v, 120*time.Second, "the unit to end after systemctl kill", inactive("s2"))
	if out := v.must(t, "ls /sys/fs/cgroup/system.slice/s2.service 2>/dev/null; "+appPids); strings.TrimSpace(out) != "" {
		t.Errorf("after systemctl kill the unit's cgroup or the app remain:\n%s", out)
	}
	clean(t, v, true)
	v.must(t, "systemctl reset-failed s2 || true; rm -rf /etc/systemd/system/s2.service /etc/systemd/system/s2.service.d; systemctl daemon-reload")
}

// 3. A generated .socket unit starts the pod on the first connection; the
// app answers on the socket-activated fd.
func testSocket(t *testing.T, v *vm) {
	v.must(t, skiffCmd+` generate unit --unit-name=s3 --socket=127.0.0.1:8081 --output-dir=/etc/systemd/system --net=none `+inspectImg+
		` -- listen-fds , serve-fd3 2
systemctl daemon-reload
systemctl start s3.socket`)
	if st := v.run(t, 30*time.Second, "systemctl is-active s3.service").Stdout; strings.TrimSpace(st) == "active" {
		t.Fatalf("s3.service active before any connection")
	}
	for i := 1; i <= 2; i++ {
		r := v.run(t, 300*time.Second, `exec 3<>/dev/tcp/127.0.0.1/8081 && read -t 240 line <&3; echo "$line"`)
		if want := "served=" + strconv.Itoa(i); strings.TrimSpace(r.Stdout) != want {
			t.Fatalf("connection %d: %s, want %s\n%s", i, r, want, journal(t, v, "s3.service"))
		}
	}
	waitGuest(t, v, 120*time.Second, "the pod to end after serving", inactive("s3.service"))
	j := journal(t, v, "s3.service")
	contains(t, "journalctl -u s3.service", j, "LISTEN_FDS=1", "listen_pid_match=true", "served=2")
	if p := show(t, v, "s3.service", "Result"); p["Result"] != "success" {
		t.Errorf("s3.service: %v\n%s", p, j)
	}
	if st := v.run(t, 30*time.Second, "systemctl is-active s3.socket").Stdout; strings.TrimSpace(st) != "active" {
		t.Errorf("the socket unit is %q after the pod ended, want active", st)
	}
	v.must(t, "systemctl stop s3.socket; rm -f /etc/systemd/system/s3.service /etc/systemd/system/s3.socket; systemctl daemon-reload")
	clean(t, v, true)
}

// 4. Restart=on-failure restarts an app that exits 3; ExecStopPost's
// skiff gc --mark-only succeeds each time.
func testRestart(t *testing.T, v *vm) {
	v.must(t, skiffCmd+` generate unit --unit-name=s4 --restart=on-failure --net=none `+inspectImg+
		` -- stdout s4-run , sleep 2 , exit 3 >/etc/systemd/system/s4.service
grep -x 'Restart=on-failure' /etc/systemd/system/s4.service
grep 'ExecStopPost=.*gc --mark-only' /etc/systemd/system/s4.service
systemctl daemon-reload
systemctl start s4`)
	waitGuest(t, v, 240*time.Second, "two restarts", `test "$(systemctl show -P NRestarts s4)" -ge 2`)
	v.must(t, "systemctl stop s4")
	j := journal(t, v, "s4")
	if n := strings.Count(j, "s4-run"); n < 3 {
		t.Errorf("the app ran %d times, want 3 or more (two restarts):\n%s", n, j)
	}
	contains(t, "journalctl -u s4", j, "status=3")
	// Each ExecStopPost (skiff gc --mark-only) ran and exited 0: systemd logs a failure otherwise.
	if strings.Contains(j, "ExecStopPost") || strings.Contains(j, "Control process exited") {
		t.Errorf("ExecStopPost failed:\n%s", j)
	}
	// ... and did its work: each ended pod was marked for removal (gc's
	// "marked UUID for removal" in the unit's journal), none removed, and
	// skiff list shows every one of them in exited-garbage.
	// (journald takes the last ExecStopPost's words in its own time.)
	r := v.run(t, 90*time.Second, `for i in $(seq 60); do
  n=$(journalctl --no-pager -o cat -u s4 | grep -c ' for removal$'); p=$(skiff list --no-legend | wc -l)
  [ $p -ge 3 ] && [ $n -ge $p ] && exit 0; sleep 1
done; echo "pods=$p marked=$n"; exit 1`)
	if r.Code != 0 {
		t.Errorf("want 3 or more pods kept, each marked by an ExecStopPost: %s\n%s", r.Stdout, journal(t, v, "s4"))
	}
	var pods []statusJSON
	list := v.must(t, skiffCmd+" list --format=json")
	if err := json.Unmarshal([]byte(list), &pods); err != nil {
		t.Fatalf("skiff list --format=json: %v\n%s", err, list)
	}
	for _, p := range pods {
		if p.State != "exited-garbage" {
			t.Errorf("a pod of the unit is %s after its ExecStopPost, want exited-garbage:\n%s", p.State, list)
		}
	}
	clean(t, v, true)
	v.must(t, "systemctl reset-failed s4 || true; rm -f /etc/systemd/system/s4.service; systemctl daemon-reload")
}

// 5. Pure cgroup v2: --memory, --cpu and --pids-limit are enforced; the app's
// limits are in its unit's cgroup below the pod's.
func testLimits(t *testing.T, v *vm) {
	r := v.run(t, 300*time.Second, skiffCmd+" run --net=none --uuid-file-save=/run/s5oom.uuid "+inspectImg+" --memory=64M -- alloc 256; echo rc=$?")
	if strings.Contains(r.Stdout, "allocated=256") || strings.Contains(r.Stdout, "rc=0") {
		t.Errorf("an app with --memory=64M allocated 256 MiB:\n%s", r)
	}
	st := v.must(t, "skiff status $(cat /run/s5oom.uuid)")
	t.Logf("status of the OOM pod:\n%s", st)
	contains(t, "the OOM-killed app's status", strings.ToLower(st), "oom")
	clean(t, v, true)

	// The fork bomb stops at the pids limit: ash gives up ("can't fork") once
	// the pod's processes (its systemd, the shell, the sleeps) reach 20.
	nums := make([]string, 40)
	for i := range nums {
		nums[i] = strconv.Itoa(i + 1)
	}
	r = v.run(t, 300*time.Second, skiffCmd+` run --net=none `+busyboxImg+` --pids-limit=20 -- sh -c 'for i in `+strings.Join(nums, " ")+`; do sleep 60 & echo started=$i; done'`)
	n := 0
	for _, l := range strings.Split(r.Stdout, "\n") {
		if v, ok := strings.CutPrefix(l, "started="); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if n < 3 || n >= 20 || r.Code == 0 || !strings.Contains(r.Stderr, "can't fork") {
		t.Errorf("with --pids-limit=20 the app started %d processes (want 3-19, then a failed fork):\n%s", n, r)
	}
	clean(t, v, true)

	// The limits are where the README says: the app's unit in the pod's systemd.
	startPod(t, v, "s5", "--net=none "+inspectImg+" --memory=64M --cpu=500m --pids-limit=50 -- sleep 3600")
	out := v.must(t, `uuid=$(cat /run/s5.uuid); pid=$(head -1 /sys/fs/cgroup/skiff/$uuid/system.slice/skiff-app-inspect.service/cgroup.procs); echo "pid=$pid"
cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup); echo "cgroup=$cg"
for f in memory.max cpu.max pids.max; do d=$cg; while [ "$d" != /sys/fs/cgroup ]; do [ -f $d/$f ] && [ "$(cat $d/$f)" != max ] && [ "$(cat $d/$f)" != "max 100000" ] && { echo "$f=$(cat $d/$f) at ${d#/sys/fs/cgroup}"; break; }; d=${d%/*}; done; done`)
	t.Logf("app cgroup limits:\n%s", out)
	contains(t, "the app's cgroup limits", out, "memory.max=67108864", "cpu.max=50000 100000", "pids.max=50")
	v.must(t, skiffCmd+" stop $(cat /run/s5.uuid); for i in $(seq 90); do skiff status $(cat /run/s5.uuid) | grep -qx state=exited && exit 0; sleep 1; done; exit 1")
	clean(t, v, true)
}

// 5. --private-users: the pod starts and its systemd gets a delegated cgroup2 subtree.
func testPrivateUsers(t *testing.T, v *vm) {
	startPod(t, v, "s5u", "--private-users --net=none "+inspectImg+" -- stdout s5u-up , sleep 3600")
	out := v.must(t, `uuid=$(cat /run/s5u.uuid); skiff status $uuid | grep private-users
d=/sys/fs/cgroup/skiff/$uuid
pid=$(head -1 $d/system.slice/skiff-app-inspect.service/cgroup.procs)
echo "app-uid=$(stat -c %u /proc/$pid)"
echo "pod-cgroup-owner=$(stat -c %u $d) procs-owner=$(stat -c %u $d/cgroup.procs) subtree-owner=$(stat -c %u $d/cgroup.subtree_control)"
echo "init-scope-owner=$(stat -c %u $d/init.scope)"
echo "app-cgroup=$(cat /proc/$pid/cgroup)"`)
	t.Logf("private users:\n%s", out)
	base := ""
	for _, l := range strings.Split(out, "\n") {
		if r, ok := strings.CutPrefix(l, "private-users="); ok {
			base, _, _ = strings.Cut(r, ":")
		}
	}
	if base == "" || base == "0" {
		t.Fatalf("no private uid range in skiff status:\n%s", out)
	}
	// The pod's systemd got its cgroup delegated (owned by the pod's root,
	// host uid BASE) and made its own tree in it; the app is in it and runs
	// as the pod's root, an unprivileged host user.
	contains(t, "the --private-users pod", out, "app-uid="+base+"\n",
		"pod-cgroup-owner="+base+" procs-owner="+base+" subtree-owner="+base, "init-scope-owner="+base,
		"app-cgroup=0::/skiff/"+strings.TrimSpace(v.must(t, "cat /run/s5u.uuid"))+"/system.slice/skiff-app-inspect.service")
	v.must(t, skiffCmd+" stop $(cat /run/s5u.uuid); for i in $(seq 90); do skiff status $(cat /run/s5u.uuid) | grep -qx state=exited && exit 0; sleep 1; done; exit 1")
	clean(t, v, true)
}

// 7. After systemctl kill -s KILL of the unit, skiff gc leaves the host clean.
func testKilledUnit(t *testing.T, v *vm) {
	v.must(t, skiffCmd+` generate unit --unit-name=s7 --uuid-file-save=/run/s7.uuid `+inspectImg+
		` -- stdout s7-up , sleep 3600 >/etc/systemd/system/s7.service
systemctl daemon-reload`)
	if r := v.run(t, 300*time.Second, "systemctl start s7"); r.Code != 0 {
		t.Fatalf("systemctl start s7: %s\n%s", r, journal(t, v, "s7"))
	}
	uuid := strings.TrimSpace(v.must(t, "cat /run/s7.uuid"))
	contains(t, "machinectl list", v.must(t, "machinectl list --no-legend"), "skiff-"+uuid)
	v.must(t, "systemctl kill -s KILL s7")
	waitGuest(t, v, 120*time.Second, "the unit to end after SIGKILL", inactive("s7"))
	clean(t, v, true)
	v.must(t, "systemctl reset-failed s7 || true; rm -f /etc/systemd/system/s7.service; systemctl daemon-reload")
}

// 6. The stage1 conformance suite against the default stage1, in the VM.
func testConformance(t *testing.T, v *vm) {
	tests := conformanceTests(t)
	if re := os.Getenv("SKIFF_HOSTVM_CONFORMANCE"); re != "" {
		tests = re // a subset, while debugging
	}
	// SKIFF_TEST_SLOW: the harness's waits get the kvm flavor's margin (TCG).
	r := v.run(t, 1500*time.Second, `cd /tmp && SKIFF_BIN=/usr/local/bin/skiff SKIFF_TEST_IMAGES=/opt/skiff-images SKIFF_TEST_SLOW=1 \
SKIFF_STAGE1=/usr/lib/skiff/stage1-default.oci.tar /opt/skiff-tools/functional.test -test.count=1 -test.timeout=20m \
-test.run '^(`+tests+`)$' 2>&1 | tail -n 200; exit ${PIPESTATUS[0]}`)
	if r.Code != 0 || !strings.Contains(r.Stdout, "PASS") {
		t.Errorf("the conformance suite in the VM:\n%s", r)
	}
	clean(t, v, false)
}

// conformanceTests is the stage1 conformance suite: the tests of
// tests/conformance_test.go, as `make test-kvm` takes them.
func conformanceTests(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "tests", "conformance_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]*)\(t \*testing\.T\)`).FindAllSubmatch(b, -1) {
		names = append(names, string(m[1]))
	}
	if len(names) < 10 {
		t.Fatalf("only %d conformance tests found in tests/conformance_test.go", len(names))
	}
	return strings.Join(names, "|")
}

// TestHostDebug (only with SKIFF_HOSTVM_DEBUG_DIR=DIR) boots the VM, installs
// skiff and runs every DIR/NAME.sh put there in the guest, writing its outcome
// to DIR/NAME.out, until DIR/quit appears: a shell into the test host for
// whoever debugs a scenario.
func TestHostDebug(t *testing.T) {
	dir := os.Getenv("SKIFF_HOSTVM_DEBUG_DIR")
	if dir == "" {
		t.Skip("SKIFF_HOSTVM_DEBUG_DIR is not set")
	}
	v := boot(t)
	testInstall(t, v)
	for {
		if _, err := os.Stat(filepath.Join(dir, "quit")); err == nil {
			return
		}
		scripts, _ := filepath.Glob(filepath.Join(dir, "*.sh"))
		for _, s := range scripts {
			b, _ := os.ReadFile(s)
			os.Remove(s)
			r, err := v.exec(600*time.Second, string(b))
			os.WriteFile(strings.TrimSuffix(s, ".sh")+".out", []byte(fmt.Sprintf("%s\nerr=%v\n", r, err)), 0o644)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
