package main

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestOCICgroupPath(t *testing.T) {
	for _, c := range []struct {
		path    string
		systemd bool
		want    string
	}{
		{"", false, "/skiff-oci/x"},
		{"/k8s.io/abc", false, "/k8s.io/abc"},
		{"k8s.io/abc", false, "/k8s.io/abc"},
		{"system.slice:crio:abc", true, "/system.slice/crio-abc.scope"},
		{"kubepods-besteffort-pod1.slice:cri-containerd:abc", true,
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"},
		{":libpod:abc", true, "/system.slice/libpod-abc.scope"},
		{"-.slice::machine.slice", true, "/machine.slice"},
		{"bad", true, "/system.slice/skiff-oci-x.scope"},
	} {
		if got := ociCgroupPath(c.path, "x", c.systemd); got != c.want {
			t.Errorf("ociCgroupPath(%q, systemd=%v) = %q, want %q", c.path, c.systemd, got, c.want)
		}
	}
}

func TestOCIMountsSkipWhatStage1GivesAndResolveBindSources(t *testing.T) {
	ms := ociMounts([]specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev/", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue"},
		{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind"}},
		{Destination: "/etc/hosts", Type: "none", Source: "/tmp/hosts", Options: []string{"bind", "ro", "mode=755"}},
	}, "/b")
	if len(ms) != 3 || ms[0].Source != "mqueue" || ms[1].Source != "/b/data" || ms[2].Source != "/tmp/hosts" ||
		len(ms[2].Options) != 2 {
		t.Errorf("ociMounts: %+v", ms)
	}
}

func TestParseOCIFDs(t *testing.T) {
	if n, tty, err := parseOCIFDs("2:tty"); n != 2 || !tty || err != nil {
		t.Errorf("2:tty: %d %v %v", n, tty, err)
	}
	if n, tty, err := parseOCIFDs("0"); n != 0 || tty || err != nil {
		t.Errorf("0: %d %v %v", n, tty, err)
	}
	for _, bad := range []string{"", "-1", "1:console", "x"} {
		if _, _, err := parseOCIFDs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestOCISysInOrder(t *testing.T) {
	r := "/opt/stage2/app/rootfs"
	ms := []specs.Mount{{Destination: r}, {Destination: r + "/proc"}, {Destination: r + "/sys", Type: "sysfs"},
		{Destination: r + "/dev"}, {Destination: r + "/dev/shm", Source: "shm"},
		{Destination: r + "/dev/mqueue"}, {Destination: r + "/data"}, {Destination: r + "/sys/firmware"}}
	config := []specs.Mount{{Destination: "/proc"}, {Destination: "/dev"}, {Destination: "/dev/mqueue", Type: "mqueue"},
		{Destination: "/sys/"}, {Destination: "/data", Type: "bind", Source: "/d"}}
	got := ociSysInOrder(ms, r, config, 2)
	var order []string
	for _, m := range got {
		order = append(order, strings.TrimPrefix(m.Destination, r))
	}
	if want := ",/proc,/dev,/dev/shm,/dev/mqueue,/sys,/data,/sys/firmware"; strings.Join(order, ",") != want {
		t.Errorf("order %s, want %s", strings.Join(order, ","), want)
	}
	// a bundle mount below /sys before it in the config: /sys stays first
	config[2].Destination = "/sys/kernel/x"
	ms[5].Destination = r + "/sys/kernel/x"
	if got := ociSysInOrder(ms, r, config, 2); got[2].Destination != r+"/sys" {
		t.Errorf("/sys moved past a mount below it: %v", got)
	}
}
