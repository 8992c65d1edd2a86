package abi

import (
	"reflect"
	"testing"
	"time"
)

// What stage0 renders, every stage1 parses back unchanged.
func TestRunFlagsRoundTrip(t *testing.T) {
	in := RunFlags{Net: "default,backend:IP=10.1.2.3", Hostname: "web1", Interactive: true, Debug: true,
		Ports: []string{"8080:80/tcp", "127.0.0.1:53:53/udp"}, DNS: []string{"10.0.0.53", "10.0.0.54"},
		DNSSearch: []string{"corp"}, DNSOpt: []string{"ndots:2"}, HostsEntry: []string{"10.0.0.9=db"},
		NetConfDirs: []string{"/etc/skiff/net.d", "/usr/lib/skiff/net.d"}, StopTimeout: 7 * time.Second,
		ListenFDsApp: "web", PrivateUsers: IDRange{Base: 524288, Size: PrivateUsersSize}}
	args, dropped := in.Args(InterfaceVersion)
	if len(dropped) != 0 {
		t.Fatalf("dropped %v", dropped)
	}
	out, uuid, err := ParseRunFlags(append(args, "the-uuid"))
	if err != nil || uuid != "the-uuid" || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v\nuuid %q err %v", in, out, uuid, err)
	}
	if f, _, _ := ParseRunFlags([]string{"u"}); f.Net != "none" {
		t.Errorf("default --net %q, want none", f.Net)
	}
	for _, bad := range [][]string{{}, {"a", "b"}, {"--bogus", "u"}, {"--stop-timeout=soon", "u"},
		{"--private-users=0:65536", "u"}, {"--private-users=524288", "u"}, {"--private-users=4294967295:2", "u"}} {
		if _, _, err := ParseRunFlags(bad); err == nil {
			t.Errorf("ParseRunFlags(%q) accepted", bad)
		}
	}
}

func TestPodCode(t *testing.T) {
	t0 := time.Now()
	exits := []AppExit{{Code: 0, ExitedAt: t0}, {Code: 3, ExitedAt: t0.Add(time.Second)}, {Code: 5, ExitedAt: t0.Add(-time.Second)}}
	if c := PodCode(exits); c != 5 {
		t.Errorf("PodCode = %d, want 5 (the first to fail)", c)
	}
	if c := PodCode(exits[:1]); c != 0 {
		t.Errorf("PodCode = %d, want 0", c)
	}
}
