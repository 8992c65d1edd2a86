package vmnet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The pod of these tests, wired as the ptp plugin wires one: the host end
// vethh (in a throwaway "host" namespace) holds the gateway 172.16.99.1/32
// and a /32 route to the pod; the pod end eth0 holds 172.16.99.2/24 (and
// fd99::2/64), an on-link /32 route to the gateway, the subnet and the
// default route via the gateway. MTU 1400 to tell it from the default.
var (
	podMAC  = net.HardwareAddr{0x02, 0x00, 0xac, 0x10, 0x63, 0x02}
	podIP   = netip.MustParseAddr("172.16.99.2")
	gwIP    = netip.MustParseAddr("172.16.99.1")
	podMTU  = 1400
	podPort = 7777
)

type ptpPod struct {
	hostNS, podNS string
	host, pod     *netlink.Handle
}

func newPTPPod(t *testing.T) ptpPod {
	t.Helper()
	p := ptpPod{hostNS: newNetNS(t), podNS: newNetNS(t)}
	p.host, p.pod = handle(t, p.hostNS), handle(t, p.podNS)
	vethh := addVeth(t, p.host, "vethh", "eth0", p.podNS, podMTU, nil)
	eth0 := mustLink(t, p.pod, "eth0")
	if err := p.pod.LinkSetHardwareAddr(eth0, podMAC); err != nil {
		t.Fatal(err)
	}
	mustAddr(t, p.host, vethh, "172.16.99.1/32", 0)
	mustRoute(t, p.host, &netlink.Route{LinkIndex: vethh.Attrs().Index, Dst: ipNet(netip.PrefixFrom(podIP, 32)),
		Scope: netlink.SCOPE_LINK, Src: gwIP.AsSlice()})

	mustAddr(t, p.pod, eth0, "172.16.99.2/24", 0)
	mustAddr(t, p.pod, eth0, "fd99::2/64", unix.IFA_F_NODAD)
	subnet := ipNet(netip.MustParsePrefix("172.16.99.0/24"))
	// ptp replaces the kernel's prefix route by one via the gateway.
	if err := p.pod.RouteDel(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: subnet, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatalf("delete prefix route: %v", err)
	}
	mustRoute(t, p.pod, &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipNet(netip.PrefixFrom(gwIP, 32)),
		Scope: netlink.SCOPE_LINK, Src: podIP.AsSlice()})
	mustRoute(t, p.pod, &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: subnet, Gw: gwIP.AsSlice(), Src: podIP.AsSlice()})
	mustRoute(t, p.pod, &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: gwIP.AsSlice()})
	return p
}

// mustAttach runs Attach and closes the taps' files when the test ends.
func mustAttach(t *testing.T, netnsPath string, ifNames ...string) []Link {
	t.Helper()
	links, err := Attach(netnsPath, ifNames)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() {
		for _, l := range links {
			l.Tap.Close()
		}
	})
	return links
}

func TestAttachDescribesTheInterface(t *testing.T) {
	needRoot(t)
	p := newPTPPod(t)
	links := mustAttach(t, p.podNS, "eth0")
	if len(links) != 1 {
		t.Fatalf("got %d links, want 1", len(links))
	}
	got := links[0].Iface
	if got.Name != "eth0" || got.MAC != podMAC.String() || got.MTU != podMTU {
		t.Errorf("got name %q MAC %q MTU %d, want eth0 %s %d", got.Name, got.MAC, got.MTU, podMAC, podMTU)
	}
	if want := []string{"172.16.99.2/24", "fd99::2/64"}; !slices.Equal(sortedStrings(got.Addrs), want) {
		t.Errorf("addresses %v, want %v (no IPv6 link-local)", got.Addrs, want)
	}
	wantRoutes := []string{
		"0.0.0.0/0 via 172.16.99.1",
		"172.16.99.0/24 via 172.16.99.1 src 172.16.99.2",
		"172.16.99.1/32 src 172.16.99.2",
		"fd99::/64 metric 256",
	}
	if r := sortedStrings(got.Routes); !slices.Equal(r, wantRoutes) {
		t.Errorf("routes\n%s\nwant\n%s", strings.Join(r, "\n"), strings.Join(wantRoutes, "\n"))
	}
	args := strings.Join(links[0].QEMUArgs("net0", 3), " ")
	if want := "-netdev tap,id=net0,fd=3 -device virtio-net-device,netdev=net0,mac=" + podMAC.String(); args != want {
		t.Errorf("QEMUArgs: %s, want %s", args, want)
	}
}

func TestAttachWiresTapAndInterface(t *testing.T) {
	needRoot(t)
	p := newPTPPod(t)
	links := mustAttach(t, p.podNS, "eth0")
	if links[0].TapName != "tap0" {
		t.Errorf("tap name %q, want tap0", links[0].TapName)
	}
	tap := mustLink(t, p.pod, "tap0")
	eth0 := mustLink(t, p.pod, "eth0")
	if tt, ok := tap.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
		t.Errorf("tap0 is %T %+v, want a tap", tap, tap)
	}
	if tap.Attrs().MTU != podMTU {
		t.Errorf("tap0 MTU %d, want %d", tap.Attrs().MTU, podMTU)
	}
	if tap.Attrs().Flags&net.FlagUp == 0 {
		t.Error("tap0 is not up")
	}
	if addrs, _ := p.pod.AddrList(tap, netlink.FAMILY_ALL); len(addrs) != 0 {
		t.Errorf("tap0 has addresses %v, want none", addrs)
	}
	// ethN keeps its addresses: ptp's DEL reads them to remove its
	// masquerade rules.
	if addrs, _ := p.pod.AddrList(eth0, netlink.FAMILY_V4); len(addrs) != 1 {
		t.Errorf("eth0 has IPv4 addresses %v, want its own", addrs)
	}
	checkRedirect(t, p.pod, eth0, tap)
	checkRedirect(t, p.pod, tap, eth0)
}

// checkRedirect checks that from has an ingress qdisc with one u32 filter
// redirecting everything to to.
func checkRedirect(t *testing.T, h *netlink.Handle, from, to netlink.Link) {
	t.Helper()
	name := from.Attrs().Name
	qs, err := h.QdiscList(from)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(qs, func(q netlink.Qdisc) bool { _, ok := q.(*netlink.Ingress); return ok }) {
		t.Errorf("%s: no ingress qdisc in %v", name, qs)
	}
	fs, err := h.FilterList(from, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		t.Fatalf("%s: list filters: %v", name, err)
	}
	if len(fs) != 1 {
		t.Fatalf("%s: %d ingress filters, want 1: %+v", name, len(fs), fs)
	}
	u, ok := fs[0].(*netlink.U32)
	if !ok || u.Protocol != unix.ETH_P_ALL {
		t.Fatalf("%s: filter %+v, want u32 for all protocols", name, fs[0])
	}
	if len(u.Actions) != 1 {
		t.Fatalf("%s: filter actions %+v, want one mirred", name, u.Actions)
	}
	m, ok := u.Actions[0].(*netlink.MirredAction)
	if !ok || m.MirredAction != netlink.TCA_EGRESS_REDIR || m.Ifindex != to.Attrs().Index || m.Attrs().Action != netlink.TC_ACT_STOLEN {
		t.Errorf("%s: action %+v, want an egress redirect to %s (index %d)", name, u.Actions[0], to.Attrs().Name, to.Attrs().Index)
	}
}

// TestAttachTrafficFlows plays the guest on the tap's file: the host
// namespace sends a UDP datagram to the pod's address; the host's ARP
// request and then the datagram must come out of the tap, and the answers
// written into the tap (an ARP reply, a UDP reply) must reach the host's
// socket.
func TestAttachTrafficFlows(t *testing.T) {
	needRoot(t)
	p := newPTPPod(t)
	links := mustAttach(t, p.podNS, "eth0")
	tap := links[0].Tap
	vethh := mustLink(t, p.host, "vethh")

	var conn *net.UDPConn
	inNS(t, p.hostNS, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: gwIP.AsSlice()})
		return err
	})
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.WriteToUDP([]byte("ping from the host"), &net.UDPAddr{IP: podIP.AsSlice(), Port: podPort}); err != nil {
		t.Fatal(err)
	}

	sawARP := false
	buf := make([]byte, 65536)
	for {
		if err := tap.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := tap.Read(buf)
		if err != nil {
			t.Fatalf("read the tap (ARP request seen: %v): %v", sawARP, err)
		}
		f := buf[:n]
		if arp, ok := parseARPRequest(f); ok && arp.target == podIP {
			sawARP = true
			if !bytes.Equal(arp.senderMAC, vethh.Attrs().HardwareAddr) || arp.sender != gwIP {
				t.Errorf("ARP request from %s %s, want from vethh %s %s", arp.senderMAC, arp.sender, vethh.Attrs().HardwareAddr, gwIP)
			}
			// Nobody else may answer: the redirect keeps the request
			// from the namespace's stack, which holds the address too.
			time.Sleep(100 * time.Millisecond)
			if neighReachable(t, p, vethh) {
				t.Error("the host learnt the pod's MAC before the guest answered: the namespace's stack saw the request")
			}
			writeFrame(t, tap, arpReply(podMAC, podIP, arp.senderMAC, arp.sender))
			continue
		}
		if u, ok := parseUDP(f); ok && u.dst == podIP && u.dstPort == podPort {
			if string(u.payload) != "ping from the host" {
				t.Fatalf("datagram %q, want the host's", u.payload)
			}
			if !bytes.Equal(f[0:6], podMAC) {
				t.Errorf("datagram to MAC %s, want the pod's %s", net.HardwareAddr(f[0:6]), podMAC)
			}
			writeFrame(t, tap, udpFrame(podMAC, net.HardwareAddr(f[6:12]), podIP, u.src, podPort, u.srcPort, []byte("pong from the guest")))
			break
		}
		// Anything else (the host's IPv6 router solicitations, DAD,
		// multicast listener reports) is for the guest too; not ours.
	}
	if !sawARP {
		t.Error("the datagram came without an ARP request")
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("the host got no answer from the guest: %v", err)
	}
	if string(buf[:n]) != "pong from the guest" || from.AddrPort() != netip.AddrPortFrom(podIP, uint16(podPort)) {
		t.Errorf("the host got %q from %s, want the guest's answer from %s:%d", buf[:n], from, podIP, podPort)
	}
}

func neighReachable(t *testing.T, p ptpPod, vethh netlink.Link) bool {
	t.Helper()
	ns, err := p.host.NeighList(vethh.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.IP.Equal(podIP.AsSlice()) && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE) != 0 {
			return true
		}
	}
	return false
}

func TestAttachRefusesMissingInterface(t *testing.T) {
	needRoot(t)
	p := newPTPPod(t)
	_, err := Attach(p.podNS, []string{"eth0", "eth7"})
	if err == nil || !strings.Contains(err.Error(), "eth7") || !strings.Contains(err.Error(), p.podNS) {
		t.Fatalf("err %v, want one naming eth7 and %s", err, p.podNS)
	}
	checkUntouched(t, p)
}

func TestAttachUndoesOnFailure(t *testing.T) {
	needRoot(t)
	p := newPTPPod(t)
	// eth1's ingress is already taken: Attach fails there, after it wired
	// eth0, and must unwire eth0.
	eth1 := addVeth(t, p.pod, "eth1", "peer1", "", 0, nil)
	taken := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: eth1.Attrs().Index,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := p.pod.QdiscAdd(taken); err != nil {
		t.Fatal(err)
	}
	_, err := Attach(p.podNS, []string{"eth0", "eth1"})
	if err == nil || !strings.Contains(err.Error(), "eth1") || !strings.Contains(err.Error(), p.podNS) || !errors.Is(err, unix.EEXIST) {
		t.Fatalf("err %v, want EEXIST naming eth1 and %s", err, p.podNS)
	}
	checkUntouched(t, p)
	if qs, _ := p.pod.QdiscList(eth1); !slices.ContainsFunc(qs, func(q netlink.Qdisc) bool { _, ok := q.(*netlink.Ingress); return ok }) {
		t.Error("Attach removed eth1's ingress qdisc, which it did not make")
	}
}

// checkUntouched checks that p's namespace has no tap and eth0 no ingress
// qdisc.
func checkUntouched(t *testing.T, p ptpPod) {
	t.Helper()
	links, err := p.pod.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if _, ok := l.(*netlink.Tuntap); ok {
			t.Errorf("tap %s left in the namespace", l.Attrs().Name)
		}
	}
	qs, err := p.pod.QdiscList(mustLink(t, p.pod, "eth0"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if _, ok := q.(*netlink.Ingress); ok {
			t.Error("eth0's ingress qdisc left behind")
		}
	}
}

func TestAttachMissingNetNS(t *testing.T) {
	needRoot(t)
	_, err := Attach("/run/netns/skiff-vmnet-no-such-netns", []string{"eth0"})
	if err == nil || !strings.Contains(err.Error(), "/run/netns/skiff-vmnet-no-such-netns") {
		t.Fatalf("err %v, want one naming the namespace", err)
	}
}

// TestTapGoesWithItsFileAndTheNetNS confirms that nothing needs tearing
// down: the tap goes when its file is closed; with the file open, the
// namespace outlives its unmount (as networking.Teardown does it) and then
// goes, with everything in it, when the file is closed.
func TestTapGoesWithItsFileAndTheNetNS(t *testing.T) {
	needRoot(t)
	p := newPTPPod(t)
	links, err := Attach(p.podNS, []string{"eth0"})
	if err != nil {
		t.Fatal(err)
	}
	links[0].Tap.Close()
	if !eventually(func() bool { _, err := p.pod.LinkByName("tap0"); return err != nil }) {
		t.Fatal("tap0 is still there after its file was closed")
	}
	// eth0's redirect stays, to nothing: frames for a pod whose VM is gone
	// are dropped. A second Attach is refused.
	if _, err := Attach(p.podNS, []string{"eth0"}); !errors.Is(err, unix.EEXIST) {
		t.Errorf("second Attach: %v, want EEXIST", err)
	}

	p = newPTPPod(t)
	links, err = Attach(p.podNS, []string{"eth0"})
	if err != nil {
		t.Fatal(err)
	}
	defer links[0].Tap.Close()
	p.pod.Close() // the handle's sockets hold the namespace too
	if err := unix.Unmount(p.podNS, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := p.host.LinkByName("vethh"); err != nil {
		t.Fatal("the namespace went while the tap's file was open:", err)
	}
	links[0].Tap.Close()
	if !eventually(func() bool { _, err := p.host.LinkByName("vethh"); return err != nil }) {
		t.Fatal("the namespace (seen by its veth's host end) outlived the tap's file")
	}
}

// Frames, as the guest sees them.

type arpPacket struct {
	senderMAC      net.HardwareAddr
	sender, target netip.Addr
}

func parseARPRequest(f []byte) (arpPacket, bool) {
	if len(f) < 42 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_ARP ||
		binary.BigEndian.Uint16(f[14:16]) != 1 || binary.BigEndian.Uint16(f[16:18]) != unix.ETH_P_IP ||
		binary.BigEndian.Uint16(f[20:22]) != 1 {
		return arpPacket{}, false
	}
	return arpPacket{
		senderMAC: net.HardwareAddr(slices.Clone(f[22:28])),
		sender:    netip.AddrFrom4([4]byte(f[28:32])),
		target:    netip.AddrFrom4([4]byte(f[38:42])),
	}, true
}

func arpReply(mac net.HardwareAddr, ip netip.Addr, toMAC net.HardwareAddr, to netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], toMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(f[14:16], 1) // Ethernet
	binary.BigEndian.PutUint16(f[16:18], unix.ETH_P_IP)
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:22], 2) // reply
	copy(f[22:28], mac)
	ip4 := ip.As4()
	copy(f[28:32], ip4[:])
	copy(f[32:38], toMAC)
	to4 := to.As4()
	copy(f[38:42], to4[:])
	return f
}

type udpPacket struct {
	src, dst         netip.Addr
	srcPort, dstPort int
	payload          []byte
}

func parseUDP(f []byte) (udpPacket, bool) {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP {
		return udpPacket{}, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_UDP || len(ip) < ihl+8 {
		return udpPacket{}, false
	}
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total > len(ip) || total < ihl+8 {
		return udpPacket{}, false
	}
	u := ip[ihl:total]
	return udpPacket{
		src:     netip.AddrFrom4([4]byte(ip[12:16])),
		dst:     netip.AddrFrom4([4]byte(ip[16:20])),
		srcPort: int(binary.BigEndian.Uint16(u[0:2])),
		dstPort: int(binary.BigEndian.Uint16(u[2:4])),
		payload: u[8:],
	}, true
}

// udpFrame builds an Ethernet frame with an IPv4 UDP datagram (UDP
// checksum 0: none, allowed over IPv4).
func udpFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, srcPort, dstPort int, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_IP)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], ipChecksum(ip))
	u := f[34:]
	binary.BigEndian.PutUint16(u[0:2], uint16(srcPort))
	binary.BigEndian.PutUint16(u[2:4], uint16(dstPort))
	binary.BigEndian.PutUint16(u[4:6], uint16(8+len(payload)))
	copy(u[8:], payload)
	return f
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i : i+2]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func writeFrame(t *testing.T, tap *os.File, f []byte) {
	t.Helper()
	if _, err := tap.Write(f); err != nil {
		t.Fatalf("write a frame into the tap: %v", err)
	}
}

// An OCI bundle's namespace: Interfaces lists what the caller put there
// (not lo), and Detach leaves it as Attach found it (no tap, no ingress
// qdisc on eth0, whose own stack gets its frames again), twice over.
func TestInterfacesAndDetach(t *testing.T) {
	needRoot(t)
	p := newPTPPod(t)
	names, err := Interfaces(p.podNS)
	if err != nil || !slices.Equal(names, []string{"eth0"}) {
		t.Fatalf("Interfaces: %v, %v; want [eth0]", names, err)
	}
	for range 2 {
		links := mustAttach(t, p.podNS, names...)
		for _, l := range links {
			l.Tap.Close() // QEMU's copy would keep it; the test's goes here
		}
		if err := Detach(p.podNS, links); err != nil {
			t.Fatalf("Detach: %v", err)
		}
		if _, err := p.pod.LinkByName("tap0"); err == nil {
			t.Error("tap0 is still there after Detach")
		}
		eth0 := mustLink(t, p.pod, "eth0")
		qs, err := p.pod.QdiscList(eth0)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(qs, func(q netlink.Qdisc) bool { _, ok := q.(*netlink.Ingress); return ok }) {
			t.Errorf("eth0 keeps its ingress qdisc after Detach: %v", qs)
		}
	}
	if err := Detach(p.podNS, nil); err != nil {
		t.Errorf("Detach of nothing: %v", err)
	}
}
