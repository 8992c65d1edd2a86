package vmnet

import (
	"encoding/json"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

var (
	macA = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
	macB = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}
)

// guestConfig is what a guest with two NICs gets, through JSON as the
// guest's config file carries it.
func guestConfig(t *testing.T) []Iface {
	t.Helper()
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	cfg := []Iface{{
		Name: "eth0", MAC: macA.String(), MTU: 1400,
		Addrs: []netip.Prefix{p("172.16.99.2/24"), p("fd99::2/64")},
		Routes: []Route{
			{Dst: p("0.0.0.0/0"), Gateway: a("172.16.99.1")},
			{Dst: p("172.16.99.0/24"), Gateway: a("172.16.99.1"), Src: a("172.16.99.2")},
			{Dst: p("172.16.99.1/32"), Src: a("172.16.99.2")},
			{Dst: p("fd99::/64"), Metric: 256},
			{Dst: p("::/0"), Gateway: a("fd99::1"), Metric: 1024},
		},
	}, {
		Name: "eth1", MAC: macB.String(), MTU: 9000,
		Addrs: []netip.Prefix{p("10.88.0.5/16")},
		Routes: []Route{
			{Dst: p("10.88.0.0/16"), Src: a("10.88.0.5")},
			{Dst: p("10.99.0.0/16"), Gateway: a("10.88.0.1"), Metric: 100},
			{Dst: p("10.77.0.0/16"), Gateway: a("192.0.2.1"), OnLink: true},
		},
	}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []Iface
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, cfg) {
		t.Fatalf("JSON round trip:\n%s\ngave %+v", b, out)
	}
	if s := string(b); !strings.Contains(s, `"gateway":"172.16.99.1"`) || strings.Contains(s, `"gateway":""`) {
		t.Errorf("JSON %s: want gateways as text, none for on-link routes", s)
	}
	return out
}

// readBack reads ifaces' interfaces (by name) as Attach would read them, in
// the namespace at path.
func readBack(t *testing.T, path string, ifaces []Iface) []Iface {
	t.Helper()
	var got []Iface
	inNS(t, path, func() error {
		for _, ifc := range ifaces {
			i, err := readIface(ifc.Name)
			if err != nil {
				return err
			}
			got = append(got, i.Iface)
		}
		return nil
	})
	return got
}

func checkConfigured(t *testing.T, path string, want []Iface) {
	t.Helper()
	got := readBack(t, path, want)
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.MAC != w.MAC || g.MTU != w.MTU {
			t.Errorf("%s: got name %s MAC %s MTU %d, want MAC %s MTU %d", w.Name, g.Name, g.MAC, g.MTU, w.MAC, w.MTU)
		}
		if gs, ws := sortedStrings(g.Addrs), sortedStrings(w.Addrs); !reflect.DeepEqual(gs, ws) {
			t.Errorf("%s: addresses %v, want %v", w.Name, gs, ws)
		}
		if gs, ws := sortedStrings(g.Routes), sortedStrings(w.Routes); !reflect.DeepEqual(gs, ws) {
			t.Errorf("%s: routes\n%s\nwant (and no prefix route of the kernel's)\n%s", w.Name, strings.Join(gs, "\n"), strings.Join(ws, "\n"))
		}
	}
	h := handle(t, path)
	for _, w := range want {
		if l := mustLink(t, h, w.Name); l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s is not up", w.Name)
		}
	}
	if l := mustLink(t, h, "lo"); l.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is not up")
	}
}

// TestConfigure plays the guest in a throwaway namespace whose two NICs
// (veths) carry each other's names, as the kernel may name them.
func TestConfigure(t *testing.T) {
	needRoot(t)
	cfg := guestConfig(t)
	guest := newNetNS(t)
	h := handle(t, guest)
	addVeth(t, h, "eth0", "peer0", "", 0, macB)
	addVeth(t, h, "eth1", "peer1", "", 0, macA)
	inNS(t, guest, func() error { return Configure(cfg) })
	checkConfigured(t, guest, cfg)
	if l := mustLink(t, h, "eth0"); l.Attrs().HardwareAddr.String() != macA.String() {
		t.Errorf("eth0 has MAC %s, want %s", l.Attrs().HardwareAddr, macA)
	}

	inNS(t, guest, func() error { return Configure(cfg) }) // again: nothing changes
	checkConfigured(t, guest, cfg)
}

func TestConfigureMissingNIC(t *testing.T) {
	needRoot(t)
	cfg := guestConfig(t)
	guest := newNetNS(t)
	addVeth(t, handle(t, guest), "eth0", "peer0", "", 0, macA)
	err := runInNS(guest, func() error { return Configure(cfg) })
	if err == nil || !strings.Contains(err.Error(), "eth1") || !strings.Contains(err.Error(), macB.String()) {
		t.Fatalf("err %v, want one naming eth1 and its MAC %s", err, macB)
	}
}

func TestConfigureNameTaken(t *testing.T) {
	needRoot(t)
	cfg := guestConfig(t)[:1]
	guest := newNetNS(t)
	h := handle(t, guest)
	addVeth(t, h, "eth0", "peer0", "", 0, nil) // not in the configuration
	addVeth(t, h, "enp0s1", "peer1", "", 0, macA)
	err := runInNS(guest, func() error { return Configure(cfg) })
	if err == nil || !strings.Contains(err.Error(), "eth0") || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("err %v, want one saying eth0 is taken", err)
	}
}

// TestConfigureReproducesAttachedInterface: what Attach reads from a pod's
// namespace, through JSON, makes the guest's NIC the same interface.
func TestConfigureReproducesAttachedInterface(t *testing.T) {
	needRoot(t)
	p := newPTPPod(t)
	links := mustAttach(t, p.podNS, "eth0")
	b, err := json.Marshal(Ifaces(links))
	if err != nil {
		t.Fatal(err)
	}
	var cfg []Iface
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	guest := newNetNS(t)
	addVeth(t, handle(t, guest), "enp0s1", "peer0", "", 0, podMAC)
	inNS(t, guest, func() error { return Configure(cfg) })
	checkConfigured(t, guest, Ifaces(links))
}
