package networking

import (
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestDefaultPodAndHostReachEachOther(t *testing.T) {
	e := newEnv(t)
	res := e.setup(e.request(NetDefault))
	if len(res.Networks) != 1 || res.Networks[0].IfName != "eth0" || len(res.Networks[0].IPs) != 1 {
		t.Fatalf("result %+v", res)
	}
	ip := res.Networks[0].IPs[0].Addr()
	if !netip.MustParsePrefix(DefaultSubnet).Contains(ip) {
		t.Fatalf("pod IP %s not in %s", ip, DefaultSubnet)
	}
	if !defaultRoute(t, res.NetNS) {
		t.Error("default network: pod has no default route")
	}
	gw := res.Networks[0].Gateways[0]
	l := listenIn(t, "", net.JoinHostPort(gw.String(), "0"), "host")
	mustReach(t, res.NetNS, l.Addr().String(), "host")
	pl := listenIn(t, res.NetNS, ":0", "pod")
	mustReach(t, "", net.JoinHostPort(ip.String(), strconv.Itoa(pl.Addr().(*net.TCPAddr).Port)), "pod")
}

func TestTwoPodsOnDefaultReachEachOther(t *testing.T) {
	e := newEnv(t)
	a := e.setup(e.request(NetDefault))
	b := e.setup(e.request(NetDefault))
	ipA, ipB := a.IPs()[0], b.IPs()[0]
	if ipA == ipB {
		t.Fatalf("both pods got %s", ipA)
	}
	l := listenIn(t, b.NetNS, ":0", "b")
	mustReach(t, a.NetNS, net.JoinHostPort(ipB.String(), strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), "b")
}

func TestDefaultRestrictedReachesHostOnly(t *testing.T) {
	e := newEnv(t)
	res := e.setup(e.request(NetDefaultRestricted))
	if !netip.MustParsePrefix(DefaultRestrictedSubnet).Contains(res.IPs()[0]) {
		t.Fatalf("pod IP %s not in %s", res.IPs()[0], DefaultRestrictedSubnet)
	}
	if defaultRoute(t, res.NetNS) {
		t.Error("default-restricted: pod has a default route")
	}
	l := listenIn(t, "", net.JoinHostPort(res.Networks[0].Gateways[0].String(), "0"), "host")
	mustReach(t, res.NetNS, l.Addr().String(), "host")
}

// freePort returns a TCP port that is free on the host right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hostIPv4 is one of the host's own non-loopback IPv4 addresses, if any.
func hostIPv4() (netip.Addr, bool) {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			ip, _ := netip.AddrFromSlice(n.IP.To4())
			if !netip.MustParsePrefix("172.16.0.0/12").Contains(ip) {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

func TestPortForwardingFromLoopbackAndHostAddress(t *testing.T) {
	e := newEnv(t)
	r := e.request(NetDefault)
	hostPort := freePort(t)
	r.Ports = []PortMapping{{HostPort: hostPort, PodPort: 8080, Protocol: "tcp"}}
	res := e.setup(r)
	listenIn(t, res.NetNS, ":8080", "forwarded")
	mustReach(t, "", net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort)), "forwarded")
	if ip, ok := hostIPv4(); ok {
		mustReach(t, "", net.JoinHostPort(ip.String(), strconv.Itoa(hostPort)), "forwarded")
	} else {
		t.Log("no non-loopback host address: forwarding from it not checked")
	}
	// A forwarded port sets route_localnet on the host's veth; the guard
	// that keeps the pod off the host's loopback is in place (exactly
	// once, checkNoLeaks makes sure).
	if out, err := exec.Command("iptables-save").Output(); err != nil || !strings.Contains(string(out), localnetGuard[1][len("iptables-save "):]) {
		t.Errorf("no %s guard after a Setup with ports (%v):\n%s", LocalnetChain, err, out)
	}
}

func TestPortForwardingToOneHostIP(t *testing.T) {
	e := newEnv(t)
	r := e.request(NetDefaultRestricted)
	hostPort := freePort(t)
	p, err := ParsePort("127.0.0.1:" + strconv.Itoa(hostPort) + ":8080/tcp")
	if err != nil {
		t.Fatal(err)
	}
	r.Ports = []PortMapping{p}
	res := e.setup(r)
	listenIn(t, res.NetNS, ":8080", "restricted")
	mustReach(t, "", net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort)), "restricted")
}

// A custom bridge network from a conflist in net.d, attached as eth1 beside default.
func TestCustomBridgeNetwork(t *testing.T) {
	e := newEnv(t)
	e.writeConf("20-lab.conflist", `{"cniVersion":"1.0.0","name":"lab","plugins":[
	  {"type":"bridge","bridge":"skifftest0","isGateway":true,
	   "ipam":{"type":"host-local","subnet":"10.199.7.0/24","dataDir":"`+e.base.IPAMDir+`"}}]}`)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "skifftest0").Run() }) // bridge stays after DEL, by design of the plugin
	r := e.request(NetDefault, "lab")
	r.Networks[1].Args = [][2]string{{"IP", "10.199.7.42"}}
	res := e.setup(r)
	if len(res.Networks) != 2 || res.Networks[1].IfName != "eth1" || res.Networks[1].IPs[0].Addr() != netip.MustParseAddr("10.199.7.42") {
		t.Fatalf("result %+v", res.Networks)
	}
	l := listenIn(t, res.NetNS, ":0", "lab")
	mustReach(t, "", net.JoinHostPort("10.199.7.42", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), "lab")
	loaded, err := Load(r.StateDir)
	if err != nil || len(loaded.Networks) != 2 || loaded.NetNS != res.NetNS {
		t.Fatalf("Load: %+v, %v", loaded, err)
	}
}

// A conflist named like a built-in one replaces it.
func TestConflistOverridesBuiltin(t *testing.T) {
	e := newEnv(t)
	e.writeConf("default.conflist", `{"cniVersion":"1.0.0","name":"default","plugins":[
	  {"type":"ptp","ipam":{"type":"host-local","subnet":"10.199.8.0/24","dataDir":"`+e.base.IPAMDir+`"}}]}`)
	res := e.setup(e.request(NetDefault))
	if !netip.MustParsePrefix("10.199.8.0/24").Contains(res.IPs()[0]) {
		t.Fatalf("pod IP %s: the built-in default was used", res.IPs()[0])
	}
}
