package main

import (
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
