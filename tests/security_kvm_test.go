//go:build functional && kvm

package tests

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
)

// The kvm guest must not steer the host (issue #13, point 4). Root in the
// guest — here an app with every capability and no seccomp filter or masked
// paths, which reaches the guest's own root through /proc/1/root — attacks
// everything the host later reads, executes or writes; the host must follow
// no link it planted, execute nothing it wrote, read nothing of it without a
// bound, and stop, status and gc must work as usual.

// allCaps is every capability the guest's kernel has (the host's bounding
// set does not matter in a VM).
const allCaps = "--caps-retain=CAP_CHOWN,CAP_DAC_OVERRIDE,CAP_DAC_READ_SEARCH,CAP_FOWNER,CAP_FSETID,CAP_KILL," +
	"CAP_SETGID,CAP_SETUID,CAP_SETPCAP,CAP_LINUX_IMMUTABLE,CAP_NET_BIND_SERVICE,CAP_NET_BROADCAST,CAP_NET_ADMIN," +
	"CAP_NET_RAW,CAP_IPC_LOCK,CAP_IPC_OWNER,CAP_SYS_MODULE,CAP_SYS_RAWIO,CAP_SYS_CHROOT,CAP_SYS_PTRACE,CAP_SYS_PACCT," +
	"CAP_SYS_ADMIN,CAP_SYS_BOOT,CAP_SYS_NICE,CAP_SYS_TIME,CAP_SYS_TTY_CONFIG,CAP_MKNOD,CAP_LEASE,CAP_AUDIT_WRITE," +
	"CAP_AUDIT_CONTROL,CAP_SETFCAP,CAP_MAC_OVERRIDE,CAP_MAC_ADMIN,CAP_SYSLOG,CAP_WAKE_ALARM,CAP_BLOCK_SUSPEND"

// hostileKVM is a prepared kvm pod whose app runs /attack/attack.sh (a host
// directory mounted read-only), written once the pod's host paths are known.
type hostileKVM struct {
	e      *env
	uuid   string
	podDir string // where the pod runs (pods/run/UUID)
	attack string // the host directory mounted at /attack
	marker string // what a host-side payload leaves when the host runs it
}

func prepareHostile(t *testing.T, e *env, apps ...[]string) *hostileKVM {
	t.Helper()
	h := &hostileKVM{e: e, attack: filepath.Join(t.TempDir(), "attack"), marker: filepath.Join(t.TempDir(), "pwned")}
	if err := os.MkdirAll(h.attack, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--insecure-options=image,seccomp,paths", "prepare"}, e.stage1...)
	args = append(args, "--volume="+h.attack+":/attack:ro")
	for i, app := range apps {
		if i > 0 {
			args = append(args, "---")
		}
		args = append(append(args, e.image("busybox"), allCaps), app...)
	}
	h.uuid = strings.TrimSpace(e.ok(args...).stdout)
	h.podDir = filepath.Join(e.dir, "pods", "run", h.uuid)
	return h
}

// file writes a file of the attack (a payload the guest copies, or the
// script itself).
func (h *hostileKVM) file(t *testing.T, rel, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(h.attack, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// payload is a host-side script that records that the host ran it (as
// what), then does what the real program would.
func (h *hostileKVM) payload(what, real string) string {
	return fmt.Sprintf("#!/bin/sh\necho %s >> %s\nexec %s \"$@\"\n", what, h.marker, real)
}

func (h *hostileKVM) ran(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile(h.marker); err == nil {
		t.Errorf("the host executed what the guest wrote: %s", strings.Join(strings.Fields(string(b)), ", "))
	}
}

// noDevices checks that the guest made no block device on the host
// (overlayfs's whiteouts are character devices 0/0; no block device is
// ever legitimate there).
func noDevices(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeDevice != 0 && d.Type()&fs.ModeCharDevice == 0 {
			t.Errorf("the guest made a block device on the host: %s", p)
		}
		return nil
	})
}

// A running pod's guest rewrites what the host executes (the network
// teardown state, pod.json's stage1 entrypoints), plants a link where the
// host rotates the log, makes a block device, writes its configuration and
// outside its shares; then the host stops it, reads its status and
// collects it.
func TestKVMHostileGuestCannotSteerTheHost(t *testing.T) {
	e := kvmEnv(t)
	h := prepareHostile(t, e, []string{"--name=web", "--", "/bin/sh", "/attack/attack.sh"})
	var m abi.PodManifest
	b, err := os.ReadFile(filepath.Join(e.dir, "pods", "prepared", h.uuid, abi.PodManifestFile))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		t.Fatal(err)
	}
	// pod.json with an extra stage1 layer of the guest's, topmost, whose
	// stop entrypoint is the guest's payload.
	realStop := ""
	for _, l := range m.Stage1.Rootfs.Layers {
		if p := filepath.Join(l, m.Stage1.Entrypoints[abi.EntrypointStop]); realStop == "" {
			if _, err := os.Stat(p); err == nil {
				realStop = p
			}
		}
	}
	evilRoot := filepath.Join(h.podDir, "evilroot")
	m.Stage1.Rootfs.Layers = append(m.Stage1.Rootfs.Layers, evilRoot)
	evilPod, _ := json.Marshal(m)
	h.file(t, "pod.json", string(evilPod), 0o644)
	h.file(t, "evilroot/"+m.Stage1.Entrypoints[abi.EntrypointStop], h.payload("stop-entrypoint", realStop), 0o755)
	// CNI "plugins" of the guest's, each running the real one afterwards.
	for _, p := range []string{"ptp", "bridge", "host-local", "portmap", "firewall", "tuning", "loopback"} {
		h.file(t, "evil/"+p, h.payload("cni-"+p, "/usr/lib/cni/"+p), 0o755)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.MkdirAll(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "pod.log"), []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(t.TempDir(), "canary")
	if err := os.WriteFile(canary, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host := h.podDir
	h.file(t, "attack.sh", `
G=/proc/1/root
try() { "$@" 2>/dev/null && echo "did: $*"; }
for P in $G/skiff/pod $G/skiff/out $G/skiff/config; do
  try cp -r /attack/evil /attack/evilroot $P/
  try chmod -R 755 $P/evil $P/evilroot
  try cp /attack/pod.json $P/pod.json
  if [ -f $P/stage1/net/net.json ]; then
    try sed -i 's|"pluginDirs": \[|"pluginDirs": ["`+host+`/evil",|' $P/stage1/net/net.json
  fi
  [ -f $P/stage1/net/net.json ] || try mkdir -p $P/stage1/net
  [ -f $P/stage1/net/net.json ] || try sh -c "echo '{\"version\":1,\"podUUID\":\"`+h.uuid+`\",\"netns\":\"/run/skiff/netns/`+h.uuid+`\",\"pluginDirs\":[\"`+host+`/evil\"],\"networks\":[]}' > $P/stage1/net/net.json"
  try rm -rf $P/logs
  try ln -s `+victim+` $P/logs
  try sh -c "echo '{\"hostname\":\"owned\"}' > $P/guest.json"
  try sh -c "echo '{\"hostname\":\"owned\"}' > $P/stage1/guest.json"
  try sh -c "echo owned > $P/../../../../../..`+canary+`"
done
# out of the app's cgroup (and its device policy), then a block device in
# the rootfs share (the host's loop0, if QEMU made it on the host)
echo $$ > $G/sys/fs/cgroup/cgroup.procs
try mknod /blk b 7 0
echo attacked
# enough output to rotate the log (8 MiB) through the planted link
i=0; while [ $i -lt 9 ]; do head -c 1048576 /dev/zero | tr '\0' x | fold -w 1000; i=$((i+1)); done
echo rotated
exec sleep 1000
`, 0o644)

	cmd, out, errb := e.startBackground("--insecure-options=seccomp,paths", "run-prepared", "--net=default", h.uuid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	until := func(what string) {
		t.Helper()
		waitFor(t, 5*time.Minute, what, func() bool {
			select {
			case err := <-exited:
				t.Fatalf("run ended before %s: %v\nstdout: %.2000s\nstderr: %s", what, err, out.String(), errb.String())
			default:
			}
			return strings.Contains(out.String(), what)
		})
	}
	until("attacked")
	t.Logf("guest: %s", strings.SplitN(out.String(), "attacked", 2)[0])
	until("rotated")
	e.ok("stop", h.uuid)
	if err := <-exited; err != nil {
		t.Logf("run: %v; stderr: %s", err, errb.String())
	}
	st := e.status(h.uuid)
	if st.ExitCode == nil {
		t.Errorf("status after stop: %+v", st)
	}
	h.ran(t)
	if ents, _ := os.ReadDir(victim); len(ents) != 1 {
		t.Errorf("the host rotated the log through the guest's link: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(victim, "pod.log")); string(b) != "precious\n" {
		t.Errorf("the host wrote the log through the guest's link: %.40q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(h.podDir, "stage1/guest/guest.json")); strings.Contains(string(b), "owned") {
		t.Errorf("the guest rewrote its configuration on the host: %s", b)
	}
	if b, _ := os.ReadFile(canary); string(b) != "host\n" {
		t.Errorf("the guest wrote outside its shares: canary now %q", b)
	}
	noDevices(t, filepath.Join(h.podDir, abi.AppsDir))
	if b, err := os.ReadFile(filepath.Join(h.podDir, abi.PodManifestFile)); err != nil || strings.Contains(string(b), "evilroot") {
		t.Errorf("pod.json rewritten by the guest (%v)", err)
	}
	e.ok("gc", "--grace-period=0s")
	h.ran(t)
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "pods", "run")); len(ents) != 0 {
		t.Errorf("gc left %d pods", len(ents))
	}
}

// The guest forges its exit records — a link to a host file that holds a
// clean exit, a record larger than any reader's bound — and powers the VM
// off before the apps' units can write theirs: the host follows neither,
// and the pod fails with 125 instead of the forged 0.
func TestKVMHostileExitRecords(t *testing.T) {
	e := kvmEnv(t)
	h := prepareHostile(t, e,
		[]string{"--name=web", "--", "/bin/sh", "/attack/attack.sh"},
		[]string{"--name=db", "--", "/bin/sleep", "1000"})
	forged := filepath.Join(t.TempDir(), "exit.json")
	if err := os.WriteFile(forged, []byte(`{"app":"web","code":0,"exitedAt":"2026-01-01T00:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h.file(t, "attack.sh", `
A=/proc/1/root/skiff/apps
ln -sf `+forged+` $A/web/exit.json
{ printf '{"app":"db","code":0,"exitedAt":"2026-01-01T00:00:00Z"'; head -c 6000000 /dev/zero | tr '\0' ' '; printf '}'; } > $A/db/exit.tmp
mv $A/db/exit.tmp $A/db/exit.json
ln -sf /etc/shadow /proc/1/root/skiff/out/ready
sync
echo planted
poweroff -f
`, 0o644)
	r := e.skiff("--insecure-options=seccomp,paths", "run-prepared", "--net=none", h.uuid)
	if r.code != 125 {
		t.Errorf("exit %d, want 125: the host took a forged record (stdout %q, stderr %q)", r.code, r.stdout, r.stderr)
	}
	st := e.status(h.uuid)
	for _, a := range st.Apps {
		if a.ExitCode == nil || *a.ExitCode == 0 {
			t.Errorf("app %s: exit %v, want the host's own 125", a.Name, a.ExitCode)
		}
	}
	for _, name := range []string{"web", "db"} {
		p := filepath.Join(h.podDir, abi.AppsDir, name, abi.AppExitFile)
		if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() || fi.Size() > 4096 {
			t.Errorf("app %s: the host's exit record %v, %v; want a small regular file", name, fi, err)
		}
	}
	e.ok("gc", "--grace-period=0s")
}
