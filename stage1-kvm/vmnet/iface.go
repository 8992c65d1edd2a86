package vmnet

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Iface is one guest NIC as the guest must configure it: the identity of
// interface Name in the pod's network namespace. It is JSON: the host writes
// it into the guest's configuration file.
type Iface struct {
	// Name is the interface's name in the namespace (eth0, eth1, …); the
	// guest renames its NIC to it.
	Name string `json:"name"`
	// MAC is the interface's hardware address ("02:42:ac:10:1c:02"): QEMU
	// gives it to the virtio-net NIC (mac=), and the guest finds its NIC by it.
	MAC string `json:"mac"`
	MTU int    `json:"mtu"`
	// Addrs are the interface's addresses with their prefix lengths, IPv6
	// link-local ones excepted (the guest's kernel makes its own, from the
	// same MAC).
	Addrs []netip.Prefix `json:"addrs,omitempty"`
	// Routes are the main table's unicast routes through the interface,
	// including the kernel's prefix routes (the guest adds its addresses
	// without them, so the routes here are all it gets).
	Routes []Route `json:"routes,omitempty"`
}

// Route is one route through an Iface.
type Route struct {
	Dst netip.Prefix `json:"dst"` // 0.0.0.0/0 or ::/0 for a default route
	// Gateway is the next hop; the zero Addr makes an on-link route (scope
	// link), such as ptp's route to its gateway.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// Src is the preferred source address (ip route … src).
	Src    netip.Addr `json:"src,omitzero"`
	Metric int        `json:"metric,omitempty"`
	// OnLink marks a gateway that no route makes reachable: it is on the
	// link all the same (ip route … onlink).
	OnLink bool `json:"onlink,omitempty"`
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	if r.OnLink {
		s += " onlink"
	}
	return s
}

// ifaceAddr converts a netlink address; ok is false for an address the
// guest must not copy (IPv6 link-local).
func ifaceAddr(a netlink.Addr) (p netip.Prefix, ok bool) {
	if a.IPNet == nil {
		return p, false
	}
	p, ok = prefixOf(a.IPNet)
	if !ok || (p.Addr().Is6() && p.Addr().IsLinkLocalUnicast()) {
		return p, false
	}
	return p, true
}

// ifaceRoute converts a netlink route; ok is false for a route the guest
// must not copy: other tables and types, multipath, IPv6 link-local and
// multicast destinations (the guest's kernel makes those itself), routes
// learnt from router advertisements (the guest learns them itself, from the
// same routers).
func ifaceRoute(r netlink.Route) (Route, bool) {
	if r.Table != unix.RT_TABLE_MAIN || r.Type != unix.RTN_UNICAST || len(r.MultiPath) > 0 || r.Protocol == unix.RTPROT_RA {
		return Route{}, false
	}
	var out Route
	if r.Dst == nil { // older netlink versions leave a default route's Dst nil
		if r.Family == unix.AF_INET6 {
			out.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			out.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
	} else {
		d, ok := prefixOf(r.Dst)
		if !ok {
			return Route{}, false
		}
		out.Dst = d
	}
	if a := out.Dst.Addr(); a.Is6() && out.Dst.Bits() > 0 && (a.IsLinkLocalUnicast() || a.IsMulticast()) {
		return Route{}, false
	}
	out.Gateway, _ = addrOf(r.Gw)
	out.Src, _ = addrOf(r.Src)
	out.Metric = r.Priority
	out.OnLink = r.Flags&unix.RTNH_F_ONLINK != 0
	return out, true
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := addrOf(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

func addrOf(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
