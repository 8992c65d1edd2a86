package prepare

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/stage1/abi"
)

func TestCapabilities(t *testing.T) {
	c, err := Capabilities(nil, nil)
	if err != nil || len(c.Bounding) != len(DefaultCaps) {
		t.Fatalf("default: %v %v", c, err)
	}
	c, err = Capabilities([]string{"net_admin", "CAP_CHOWN"}, nil)
	if err != nil || !reflect.DeepEqual(c.Bounding, []string{"CAP_CHOWN", "CAP_NET_ADMIN"}) {
		t.Fatalf("retain: %v %v", c, err)
	}
	c, _ = Capabilities(nil, []string{"CAP_NET_RAW"})
	if contains(c.Bounding, "CAP_NET_RAW") || len(c.Bounding) != len(DefaultCaps)-1 {
		t.Fatalf("remove: %v", c.Bounding)
	}
	for _, bad := range [][2][]string{{{"CAP_BOGUS"}, nil}, {nil, {"bogus"}}, {{"CAP_CHOWN"}, {"CAP_KILL"}}} {
		if _, err := Capabilities(bad[0], bad[1]); err == nil {
			t.Errorf("Capabilities(%v, %v) accepted", bad[0], bad[1])
		}
	}
}

func TestSeccomp(t *testing.T) {
	s, err := Seccomp("")
	if err != nil || s.DefaultAction != specs.ActAllow || !contains(s.Syscalls[0].Names, "mount") {
		t.Fatalf("default profile: %+v %v", s, err)
	}
	s, err = Seccomp("mode=remove,errno=ENOSYS,@default,chmod")
	if err != nil || *s.Syscalls[0].ErrnoRet != 38 || !contains(s.Syscalls[0].Names, "chmod") {
		t.Fatalf("remove: %+v %v", s, err)
	}
	s, err = Seccomp("mode=retain,read,write,exit_group")
	if err != nil || s.DefaultAction != specs.ActErrno || s.Syscalls[0].Action != specs.ActAllow {
		t.Fatalf("retain: %+v %v", s, err)
	}
	for _, bad := range []string{"mode=keep,read", "errno=EBOGUS,read", "@nosuchset", "mode=remove"} {
		if _, err := Seccomp(bad); err == nil {
			t.Errorf("Seccomp(%q) accepted", bad)
		}
	}
}

func TestResources(t *testing.T) {
	oom := -500
	r, err := Resources{Memory: "64M", CPU: "500m", CPUShares: 512, PidsLimit: 100, OOMScoreAdj: &oom}.LinuxResources()
	if err != nil || *r.Memory.Limit != 64<<20 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 512 || *r.Pids.Limit != 100 {
		t.Fatalf("%+v %v", r, err)
	}
	if r, _ := (Resources{CPU: "1.5"}).LinuxResources(); *r.CPU.Quota != 150000 {
		t.Errorf("--cpu=1.5: quota %d", *r.CPU.Quota)
	}
	bad := 2000
	for _, b := range []Resources{{Memory: "lots"}, {Memory: "1"}, {CPU: "-1"}, {CPU: "x"}, {PidsLimit: -1}, {OOMScoreAdj: &bad}} {
		if _, err := b.LinuxResources(); err == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

func TestVolumesAndMounts(t *testing.T) {
	src := t.TempDir()
	v, m, err := ParseVolume("data,kind=host,source=" + src + ",readOnly=true")
	if err != nil || m != nil || v.Kind != abi.VolumeHost || !v.ReadOnly {
		t.Fatalf("long form: %+v %v %v", v, m, err)
	}
	short, sm, err := ParseVolume(src + ":/srv/data:ro")
	if err != nil || sm == nil || sm.Target != "/srv/data" || !short.ReadOnly || short.Source != src {
		t.Fatalf("short form: %+v %+v %v", short, sm, err)
	}
	empty, _, err := ParseVolume("scratch,kind=empty,mode=0700,uid=5")
	if err != nil || empty.Mode != 0o700 || empty.UID != 5 {
		t.Fatalf("empty: %+v %v", empty, err)
	}
	for _, bad := range []string{"x,kind=host,source=" + filepath.Join(src, "missing"), "x,kind=host,source=rel",
		"x,kind=weird", "x,kind=empty,source=/tmp", "Bad_Name,kind=empty", "x,kind=empty,bogus=1", ":/x", src + ":/x:rx"} {
		if _, _, err := ParseVolume(bad); err == nil {
			t.Errorf("ParseVolume(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"volume=x", "target=/x", "volume=x,target=rel", "volume=x,target=/x,extra=1"} {
		if _, err := ParseMount(bad); err == nil {
			t.Errorf("ParseMount(%q) accepted", bad)
		}
	}
	vols := map[string]abi.Volume{"data": v, "scratch": empty}
	mounts, added, err := AppMounts("web", vols, []MountArg{{"data", "/data"}, {"scratch", "/tmp/s"}},
		map[string]struct{}{"/data": {}, "/cache": {}})
	if err != nil || len(mounts) != 3 || len(added) != 1 {
		t.Fatalf("AppMounts: %+v %+v %v", mounts, added, err)
	}
	if mounts[0].Source != src || !contains(mounts[0].Options, "ro") || mounts[1].Source != "volumes/scratch" || mounts[2].Destination != "/cache" {
		t.Errorf("mounts: %+v", mounts)
	}
	if _, _, err := AppMounts("web", vols, []MountArg{{"nope", "/x"}}, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("mount of an undefined volume: %v", err)
	}
	if _, _, err := AppMounts("web", vols, []MountArg{{"data", "/x"}, {"scratch", "/x/"}}, nil); err == nil {
		t.Error("two mounts on one target accepted")
	}
}

// A host volume is idmapped only when asked (issue #13, point 12): the
// option reaches the apps' mounts as the runtime-spec idmap/ridmap option.
func TestVolumeIDMapOption(t *testing.T) {
	src := t.TempDir()
	plain, _, err := ParseVolume("data,kind=host,source=" + src)
	if err != nil || plain.IDMap {
		t.Fatalf("default: %+v %v", plain, err)
	}
	long, _, err := ParseVolume("data,kind=host,source=" + src + ",idmap=true,recursive=false")
	if err != nil || !long.IDMap {
		t.Fatalf("idmap=true: %+v %v", long, err)
	}
	short, _, err := ParseVolume(src + ":/d:ro,idmap")
	if err != nil || !short.IDMap || !short.ReadOnly {
		t.Fatalf("short form ro,idmap: %+v %v", short, err)
	}
	for _, bad := range []string{"e,kind=empty,idmap=true", "d,kind=host,source=" + src + ",idmap=maybe", src + ":/d:idmapped"} {
		if _, _, err := ParseVolume(bad); err == nil {
			t.Errorf("ParseVolume(%q) accepted", bad)
		}
	}
	vols := map[string]abi.Volume{"plain": plain, "long": long, "short": short}
	ms, _, err := AppMounts("a", vols, []MountArg{{"plain", "/p"}, {"long", "/l"}, {"short", "/s"}}, nil)
	if err != nil || len(ms) != 3 {
		t.Fatalf("AppMounts: %+v %v", ms, err)
	}
	if contains(ms[0].Options, "idmap") || contains(ms[0].Options, "ridmap") {
		t.Errorf("a host volume without idmap is idmapped: %v", ms[0].Options)
	}
	if !contains(ms[1].Options, "idmap") || !contains(ms[1].Options, "bind") {
		t.Errorf("idmap=true,recursive=false: options %v, want bind and idmap", ms[1].Options)
	}
	if !contains(ms[2].Options, "ridmap") || !contains(ms[2].Options, "rbind") || !contains(ms[2].Options, "ro") {
		t.Errorf("short form ro,idmap: options %v, want rbind, ro and ridmap", ms[2].Options)
	}
}

func TestAppSpecIsolation(t *testing.T) {
	img := ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}
	s, _, err := AppSpec("a", AppArgs{Readonly: true, NoNewPrivs: true, Group: "20", SuppGIDs: []uint32{7}}, img, Pod{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Root.Readonly || !s.Process.NoNewPrivileges || s.Linux.Seccomp == nil || len(s.Linux.MaskedPaths) == 0 {
		t.Errorf("spec: %+v %+v", s.Root, s.Linux)
	}
	if s.Process.User.GID != 20 || s.Process.User.AdditionalGids[0] != 7 {
		t.Errorf("user: %+v", s.Process.User)
	}
	s, _, _ = AppSpec("a", AppArgs{}, img, Pod{NoSeccomp: true, NoPaths: true})
	if s.Linux.Seccomp != nil || s.Linux.MaskedPaths != nil {
		t.Errorf("insecure options ignored: %+v", s.Linux)
	}
	if _, _, err := AppSpec("a", AppArgs{Seccomp: "@default"}, img, Pod{NoSeccomp: true}); err == nil {
		t.Error("--seccomp with --insecure-options=seccomp accepted")
	}
}
