package networking

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseNetFlag(t *testing.T) {
	good := map[string]Net{
		"none":    {Mode: ModeNone},
		"host":    {Mode: ModeHost},
		"default": {Mode: ModeCNI, Networks: []Attachment{{Name: "default"}}},
		"a,b:IP=10.1.2.3;X=y": {Mode: ModeCNI, Networks: []Attachment{{Name: "a"},
			{Name: "b", Args: [][2]string{{"IP", "10.1.2.3"}, {"X", "y"}}}}},
	}
	for in, want := range good {
		got, err := ParseNetFlag(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseNetFlag(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("%q round-trips as %q", in, got.String())
		}
	}
	bad := map[string]string{
		"":                            "empty",
		"default,host":                `"host" cannot be combined`,
		"a,a":                         "given twice",
		"a:IP=10.0.0.1,b:IP=10.0.0.1": "duplicate IP=10.0.0.1",
		"a:IP=nope":                   "not an IP",
		"a:noequals":                  "not KEY=VALUE",
		"bad name!":                   "invalid network name",
	}
	for in, want := range bad {
		if _, err := ParseNetFlag(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNetFlag(%q) = %v; want an error with %q", in, err, want)
		}
	}
}

func TestParsePort(t *testing.T) {
	good := map[string]PortMapping{
		"8080:80":               {HostPort: 8080, PodPort: 80, Protocol: "tcp"},
		"53:53/udp":             {HostPort: 53, PodPort: 53, Protocol: "udp"},
		"127.0.0.1:8080:80/tcp": {HostIP: "127.0.0.1", HostPort: 8080, PodPort: 80, Protocol: "tcp"},
		"[::1]:8080:80":         {HostIP: "::1", HostPort: 8080, PodPort: 80, Protocol: "tcp"},
		"http:8080":             {Name: "http", HostPort: 8080, Protocol: "tcp"},
	}
	for in, want := range good {
		got, err := ParsePort(in)
		if err != nil || got != want {
			t.Errorf("ParsePort(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if again, _ := ParsePort(got.String()); again != got {
			t.Errorf("%q round-trips as %q", in, got.String())
		}
	}
	for _, in := range []string{"80", "0:80", "8080:70000", "8080:80/sctp", "x.y:8080:80", "1:2:3:4", "[::1:80:80"} {
		if _, err := ParsePort(in); err == nil || !strings.HasPrefix(err.Error(), "port "+in+":") {
			t.Errorf("ParsePort(%q) = %v; want an error naming the port", in, err)
		}
	}
}

func TestPortsNeedAPodNetwork(t *testing.T) {
	p := []PortMapping{{HostPort: 8080, PodPort: 80, Protocol: "tcp"}}
	for _, m := range []Mode{ModeHost, ModeNone} {
		if err := (Net{Mode: m}).CheckPorts(p); err == nil || !strings.Contains(err.Error(), "port 8080:80/tcp") {
			t.Errorf("--net=%s --port: %v", m, err)
		}
	}
	if err := (Net{Mode: ModeCNI}).CheckPorts(p); err != nil {
		t.Error(err)
	}
}

func TestResolvConf(t *testing.T) {
	host := []byte("# host\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch lan\noptions edns0\n")
	cni := NetworkResult{}
	cni.DNS.Nameservers = []string{"10.0.0.53"}
	cni.DNS.Search = []string{"cluster"}
	cases := []struct {
		o    DNSOptions
		nets []NetworkResult
		want string
	}{
		{DNSOptions{Servers: []string{"none"}}, nil, ""},
		{DNSOptions{Servers: []string{"host"}}, nil, string(host)},
		{DNSOptions{Servers: []string{"1.1.1.1"}, Search: []string{"corp"}, Options: []string{"ndots:2"}}, []NetworkResult{cni},
			"nameserver 1.1.1.1\nsearch corp\noptions ndots:2\n"},
		{DNSOptions{}, []NetworkResult{cni}, "nameserver 10.0.0.53\nsearch cluster\noptions edns0\n"},
		{DNSOptions{}, nil, "nameserver 192.0.2.53\nsearch lan\noptions edns0\n"},
	}
	for _, c := range cases {
		got := string(ResolvConf(c.o, host, c.nets...))
		got = strings.TrimPrefix(got, "# written by skiff\n")
		if got != c.want {
			t.Errorf("ResolvConf(%+v) = %q; want %q", c.o, got, c.want)
		}
	}
	if err := (DNSOptions{Servers: []string{"host", "1.1.1.1"}}).Validate(); err == nil {
		t.Error("--dns=host,1.1.1.1 accepted")
	}
}

func TestHosts(t *testing.T) {
	e, err := ParseHostsEntry("10.0.0.9=db")
	if err != nil {
		t.Fatal(err)
	}
	got := string(Hosts("web1.corp", []netip.Addr{netip.MustParseAddr("172.16.28.2")}, []HostEntry{e}))
	for _, w := range []string{"127.0.0.1\tlocalhost\n", "172.16.28.2\tweb1.corp web1\n", "10.0.0.9\tdb\n"} {
		if !strings.Contains(got, w) {
			t.Errorf("hosts %q lacks %q", got, w)
		}
	}
	if !strings.Contains(string(Hosts("solo", nil, nil)), "127.0.1.1\tsolo\n") {
		t.Error("no address: hostname not on 127.0.1.1")
	}
	for _, bad := range []string{"db", "x=db", "10.0.0.9=", "10.0.0.9=a b"} {
		if _, err := ParseHostsEntry(bad); err == nil {
			t.Errorf("ParseHostsEntry(%q) accepted", bad)
		}
	}
}

// Files are read in lexical order and the first directory wins; a file named
// like a built-in network replaces it; .conf files are single-plugin lists.
func TestLoadNetworks(t *testing.T) {
	local, system := t.TempDir(), t.TempDir()
	write := func(dir, name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(local, "20-a.conflist", `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}`)
	write(local, "10-a.conflist", `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"ptp"}]}`)
	write(system, "a.conflist", `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"macvlan"}]}`)
	write(system, "b.conf", `{"cniVersion":"1.0.0","name":"b","type":"ipvlan"}`)
	write(system, "default.conflist", `{"cniVersion":"1.0.0","name":"default","plugins":[{"type":"vlan"}]}`)
	got, err := loadNetworks([]string{"a", "b", "default", "default-restricted"}, []string{local, system}, builtinOptions{ipamDir: "/ipam", ports: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"ptp", "ipvlan", "vlan", "ptp"} {
		if typ := got[i].list.Plugins[0].Network.Type; typ != want {
			t.Errorf("network %s: first plugin %s, want %s", got[i].list.Name, typ, want)
		}
	}
	if got[3].source != "built-in" || !strings.Contains(string(got[3].list.Bytes), `"dataDir":"/ipam"`) {
		t.Errorf("default-restricted: %s %s", got[3].source, got[3].list.Bytes)
	}
}

func TestCheckPortsFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	busy := PortMapping{HostIP: "127.0.0.1", HostPort: port, PodPort: 80, Protocol: "tcp"}
	if err := CheckPortsFree([]PortMapping{busy}); !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("a held port: %v", err)
	}
	l.Close()
	if err := CheckPortsFree([]PortMapping{busy, busy}); err != nil {
		t.Errorf("a free port, twice: %v", err)
	}
}

func TestSetSysctlOnlyNetworkKeys(t *testing.T) {
	for _, k := range []string{"kernel.core_pattern", "net/../kernel/x", "net.ipv4/../../kernel.x", "net..x"} {
		if err := SetSysctl("/nonexistent", k, "0"); err == nil || !strings.Contains(err.Error(), "not a network sysctl") {
			t.Errorf("%s: %v", k, err)
		}
	}
}

// Setup chains the firewall plugin to the built-in default network when the
// host's FORWARD policy drops, and refuses the network when that plugin is
// missing; a conflist of the user's named default is left as it is.
func TestPrepareDefaultAddsTheFirewallWhenForwardDrops(t *testing.T) {
	forwardPolicyDrops = func() bool { return true }
	defer func() { forwardPolicyDrops = forwardDrops }()
	plugins := func(confs []netConfig) (types []string) {
		for _, p := range confs[0].list.Plugins {
			types = append(types, p.Network.Type)
		}
		return types
	}
	fakePlugins := func(names ...string) string {
		dir := t.TempDir()
		for _, p := range names {
			if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	load := func(confDirs ...string) []netConfig {
		confs, err := loadNetworks([]string{NetDefault}, confDirs, builtinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return confs
	}
	confs := load()
	if err := prepareDefault([]string{NetDefault}, confs, builtinOptions{}, []string{fakePlugins("ptp", "host-local", "firewall")}); err != nil {
		t.Fatal(err)
	}
	if got := plugins(confs); !reflect.DeepEqual(got, []string{"ptp", "firewall"}) {
		t.Errorf("plugins %v, want ptp and firewall", got)
	}
	err := prepareDefault([]string{NetDefault}, load(), builtinOptions{}, []string{fakePlugins("ptp", "host-local")})
	if !errors.Is(err, ErrPluginNotFound) || !strings.Contains(err.Error(), "firewall") {
		t.Errorf("without the firewall plugin: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "10-default.conflist"), []byte(`{"cniVersion":"1.0.0","name":"default","plugins":[{"type":"bridge"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	confs = load(dir)
	if err := prepareDefault([]string{NetDefault}, confs, builtinOptions{}, nil); err != nil || !reflect.DeepEqual(plugins(confs), []string{"bridge"}) {
		t.Errorf("the user's default: %v, plugins %v", err, plugins(confs))
	}
}
