package main

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestHostIDIn(t *testing.T) {
	ms := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 1000, HostID: 300000, Size: 10}}
	for id, want := range map[int]int{0: 100000, 999: 100999, 1000: 300000, 1009: 300009, 1010: 65534, 70000: 65534} {
		if got := hostIDIn(ms, id); got != want {
			t.Errorf("hostIDIn(%d) = %d, want %d", id, got, want)
		}
	}
}

func TestCheckOCIUsers(t *testing.T) {
	user := []specs.LinuxNamespace{{Type: specs.UserNamespace}}
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	for _, c := range []struct {
		l    specs.Linux
		want string // "" when accepted
	}{
		{specs.Linux{}, ""},
		{specs.Linux{Namespaces: user, UIDMappings: m, GIDMappings: m}, ""},
		{specs.Linux{UIDMappings: m, GIDMappings: m}, "without a user namespace"},
		{specs.Linux{Namespaces: user, UIDMappings: m}, "without linux.gidMappings"},
		{specs.Linux{Namespaces: user, UIDMappings: []specs.LinuxIDMapping{{ContainerID: 1, HostID: 100000, Size: 10}}, GIDMappings: m},
			"uidMappings does not map id 0"},
		{specs.Linux{Namespaces: user, UIDMappings: append(m, specs.LinuxIDMapping{ContainerID: 70000, HostID: 1, Size: 0}), GIDMappings: m},
			"is empty"},
	} {
		err := checkOCIUsers(&c.l)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("checkOCIUsers(%+v) = %v, want %q", c.l, err, c.want)
		}
	}
	if !sameMappings(m, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}) || sameMappings(m, nil) {
		t.Error("sameMappings")
	}
}
