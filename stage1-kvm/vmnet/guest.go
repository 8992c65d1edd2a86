package vmnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Configure gives the guest's NICs the identities the host read (Attach, in
// the guest's configuration): it sets lo up; finds each Iface's NIC by its
// MAC and renames it to Iface.Name (the kernel may have given that name to
// another of them); sets its MTU and addresses, without the kernel's prefix
// routes (the Iface lists the routes the pod's namespace has, and only
// those); sets it up; adds every on-link route, then every route via a
// gateway. Running it again changes nothing.
//
// It works in the calling thread's network namespace (the guest has only
// one) with netlink alone. The NICs must exist: load virtio_net first.
func Configure(ifaces []Iface) error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	nics, err := findNICs(ifaces)
	if err != nil {
		return err
	}
	if err := rename(ifaces, nics); err != nil {
		return err
	}
	for i, ifc := range ifaces {
		if err := configureNIC(ifc, nics[i]); err != nil {
			return fmt.Errorf("%s (MAC %s): %w", ifc.Name, ifc.MAC, err)
		}
	}
	for _, direct := range []bool{true, false} {
		for i, ifc := range ifaces {
			for _, r := range ifc.Routes {
				if r.direct() != direct {
					continue
				}
				if err := netlink.RouteReplace(netlinkRoute(r, nics[i].Attrs().Index)); err != nil {
					return fmt.Errorf("%s (MAC %s): add route %s: %w", ifc.Name, ifc.MAC, r, err)
				}
			}
		}
	}
	return nil
}

// findNICs returns the link whose MAC is each Iface's.
func findNICs(ifaces []Iface) ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the NICs: %w", err)
	}
	nics := make([]netlink.Link, len(ifaces))
	for i, ifc := range ifaces {
		mac, err := net.ParseMAC(ifc.MAC)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ifc.Name, err)
		}
		for j, other := range ifaces[:i] {
			if other.MAC == ifc.MAC || other.Name == ifc.Name {
				return nil, fmt.Errorf("%s (MAC %s) and interface %d, %s (MAC %s), share a name or a MAC", ifc.Name, ifc.MAC, j, other.Name, other.MAC)
			}
		}
		for _, l := range links {
			if bytes.Equal(l.Attrs().HardwareAddr, mac) {
				nics[i] = l
				break
			}
		}
		if nics[i] == nil {
			return nil, fmt.Errorf("%s: no NIC has MAC %s (is virtio_net loaded, and the NIC given to QEMU with mac=%s?)", ifc.Name, ifc.MAC, ifc.MAC)
		}
	}
	return nics, nil
}

// rename gives nics[i] the name ifaces[i].Name. The NICs to rename first
// get temporary names, so that two NICs can swap theirs.
func rename(ifaces []Iface, nics []netlink.Link) error {
	var todo []int
	for i, l := range nics {
		if l.Attrs().Name == ifaces[i].Name {
			continue
		}
		if err := netlink.LinkSetDown(l); err != nil { // a NIC that is up cannot be renamed
			return fmt.Errorf("%s (MAC %s): set %s down: %w", ifaces[i].Name, ifaces[i].MAC, l.Attrs().Name, err)
		}
		if err := netlink.LinkSetName(l, "skiffnet"+strconv.Itoa(i)); err != nil {
			return fmt.Errorf("%s (MAC %s): rename %s: %w", ifaces[i].Name, ifaces[i].MAC, l.Attrs().Name, err)
		}
		todo = append(todo, i)
	}
	for _, i := range todo {
		name := ifaces[i].Name
		if err := netlink.LinkSetName(nics[i], name); err != nil {
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("the name is taken by a NIC that is not in the configuration: %w", err)
			}
			return fmt.Errorf("%s (MAC %s): rename: %w", name, ifaces[i].MAC, err)
		}
		l, err := netlink.LinkByIndex(nics[i].Attrs().Index)
		if err != nil {
			return fmt.Errorf("%s (MAC %s): %w", name, ifaces[i].MAC, err)
		}
		nics[i] = l
	}
	return nil
}

// configureNIC sets l's MTU and addresses and sets it up.
func configureNIC(ifc Iface, l netlink.Link) error {
	if ifc.MTU > 0 && l.Attrs().MTU != ifc.MTU {
		if err := netlink.LinkSetMTU(l, ifc.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", ifc.MTU, err)
		}
	}
	for _, p := range ifc.Addrs {
		a := &netlink.Addr{IPNet: ipNet(p), Flags: unix.IFA_F_NOPREFIXROUTE}
		if p.Addr().Is6() {
			// The pod's namespace already had the address on this link; a
			// tentative one would make the apps' first connections fail.
			a.Flags |= unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(l, a); err != nil {
			return fmt.Errorf("add address %s: %w", p, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// direct tells whether r reaches its destination without a gateway.
// Configure adds these first: routes via a gateway need them.
func (r Route) direct() bool { return !r.Gateway.IsValid() }

// netlinkRoute is the route r through the link with index linkIndex.
func netlinkRoute(r Route, linkIndex int) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: linkIndex,
		Dst:       ipNet(r.Dst),
		Priority:  r.Metric,
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if r.Dst.Addr().Is4() {
		nr.Family = unix.AF_INET
	} else {
		nr.Family = unix.AF_INET6
	}
	if r.Gateway.IsValid() {
		nr.Gw = r.Gateway.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Flags = unix.RTNH_F_ONLINK
	}
	return nr
}
