package vmnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Link is one interface of the pod's network namespace wired to a tap for
// the VM.
type Link struct {
	// Iface is what the guest's NIC must become; it goes into the guest's
	// configuration.
	Iface Iface
	// TapName is the tap's name in the namespace (tap0 for the first
	// interface, tap1 for the second, …).
	TapName string
	// Tap is the tap's queue, opened without IFF_VNET_HDR, close-on-exec:
	// hand it to QEMU (exec.Cmd.ExtraFiles) and close it once QEMU has
	// started. The tap is not persistent: it goes away when the last copy of
	// this file is closed.
	Tap *os.File
}

// QEMUArgs renders the QEMU arguments of a microvm virtio-net NIC for l,
// with netdev id id, the tap being QEMU's file descriptor fd (3+i for
// ExtraFiles[i]):
//
//	-netdev tap,id=ID,fd=FD -device virtio-net-device,netdev=ID,mac=MAC
//
// QEMU refuses vnet_hdr= next to fd=; it finds the tap has no vnet header.
func (l Link) QEMUArgs(id string, fd int) []string {
	return []string{
		"-netdev", "tap,id=" + id + ",fd=" + strconv.Itoa(fd),
		"-device", "virtio-net-device,netdev=" + id + ",mac=" + l.Iface.MAC,
	}
}

// Ifaces lists the guest side of links, in order: the guest's configuration.
func Ifaces(links []Link) []Iface {
	out := make([]Iface, len(links))
	for i, l := range links {
		out[i] = l.Iface
	}
	return out
}

// Attach wires each interface named in ifNames (eth0, eth1, … as
// networking.Result lists them) of the network namespace at netnsPath to a
// new tap for the VM, as the package documentation describes: it reads the
// interface's MAC, MTU, addresses and routes, creates a tap (tap0, tap1, …
// in ifNames' order) in the namespace with the same MTU and no IPv6
// address, sets it up, and redirects every frame between the two both ways
// with tc. It changes nothing in the namespace before it has read every
// interface, and undoes what it did on failure. The caller owns the
// returned taps' files (Link.Tap).
//
// Attach once per namespace: ethN's redirect outlives the tap (frames for a
// pod whose VM is gone are dropped), and a second Attach fails on ethN's
// ingress qdisc (EEXIST). Errors name the interface and the namespace.
//
// It works on a locked OS thread that joins the namespace and goes back to
// the caller's namespace afterwards.
func Attach(netnsPath string, ifNames []string) ([]Link, error) {
	var links []Link
	var inner error // attachAll's, which names the namespace itself
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		links, inner = attachAll(netnsPath, ifNames)
		return inner
	})
	if inner != nil {
		return nil, inner
	}
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", netnsPath, err)
	}
	return links, nil
}

// attachAll is Attach in the calling thread's namespace, netnsPath.
func attachAll(netnsPath string, ifNames []string) ([]Link, error) {
	var ifaces []nsIface
	for _, name := range ifNames {
		i, err := readIface(name)
		if err != nil {
			return nil, fmt.Errorf("%s in netns %s: %w", name, netnsPath, err)
		}
		ifaces = append(ifaces, i)
	}
	var done []*attachment
	for i, ifc := range ifaces {
		a, err := attach(ifc, "tap"+strconv.Itoa(i))
		if err != nil {
			for j := len(done) - 1; j >= 0; j-- {
				done[j].undo()
			}
			return nil, fmt.Errorf("%s in netns %s: %w", ifc.Name, netnsPath, err)
		}
		done = append(done, a)
	}
	links := make([]Link, len(done))
	for i, a := range done {
		links[i] = Link{Iface: a.iface.Iface, TapName: a.tap.Name, Tap: a.tap.Fds[0]}
	}
	return links, nil
}

// nsIface is an interface of the namespace as Attach read it.
type nsIface struct {
	Iface
	link netlink.Link
}

// readIface reads interface name of the calling thread's namespace.
func readIface(name string) (nsIface, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nsIface{}, fmt.Errorf("no such interface: %w", err)
	}
	attrs := l.Attrs()
	if len(attrs.HardwareAddr) != 6 {
		return nsIface{}, fmt.Errorf("not an Ethernet interface (hardware address %q)", attrs.HardwareAddr)
	}
	ifc := nsIface{Iface: Iface{Name: name, MAC: attrs.HardwareAddr.String(), MTU: attrs.MTU}, link: l}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nsIface{}, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := ifaceAddr(a); ok {
			ifc.Addrs = append(ifc.Addrs, p)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{LinkIndex: attrs.Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nsIface{}, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if rt, ok := ifaceRoute(r); ok {
			ifc.Routes = append(ifc.Routes, rt)
		}
	}
	return ifc, nil
}

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h).
const in6AddrGenModeNone = 1

// attachment is what attach made, for undo.
type attachment struct {
	iface   nsIface
	tap     *netlink.Tuntap
	ingress *netlink.Ingress // on iface.link, nil if not added
}

// attach creates tap tapName beside ifc, in the calling thread's namespace,
// and redirects between them. On failure it undoes what it did.
func attach(ifc nsIface, tapName string) (_ *attachment, err error) {
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: tapName},
		Mode:      netlink.TUNTAP_MODE_TAP,
		// IFF_TUN_EXCL: fail rather than attach to a tap someone else made.
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_TUN_EXCL,
		NonPersist: true,
		Queues:     1, // keep the file open and return it in Fds
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return nil, fmt.Errorf("create tap %s: %w", tapName, err)
	}
	a := &attachment{iface: ifc, tap: tap}
	defer func() {
		if err != nil {
			a.undo()
		}
	}()
	// No link-local address: the namespace's stack then sends nothing (no
	// DAD, router or multicast listener messages) to the guest.
	if err := netlink.LinkSetIP6AddrGenMode(tap, in6AddrGenModeNone); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return nil, fmt.Errorf("tap %s: no IPv6 link-local address: %w", tapName, err)
	}
	if err := netlink.LinkSetMTU(tap, ifc.MTU); err != nil {
		return nil, fmt.Errorf("tap %s: set MTU %d: %w", tapName, ifc.MTU, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return nil, fmt.Errorf("set tap %s up: %w", tapName, err)
	}
	if _, err := addIngress(tap); err != nil {
		return nil, fmt.Errorf("tap %s: %w", tapName, err)
	}
	if a.ingress, err = addIngress(ifc.link); err != nil {
		return nil, err
	}
	if err := addRedirect(tap, ifc.link); err != nil {
		return nil, fmt.Errorf("tap %s: %w", tapName, err)
	}
	if err := addRedirect(ifc.link, tap); err != nil {
		return nil, err
	}
	return a, nil
}

// undo removes what attach made, best effort: the ingress qdisc of the
// namespace's interface (its filters go with it), then the tap (its qdisc
// and filter go with it) and its file.
func (a *attachment) undo() {
	if a.ingress != nil {
		_ = netlink.QdiscDel(a.ingress)
	}
	_ = netlink.LinkDel(a.tap)
	for _, f := range a.tap.Fds {
		f.Close()
	}
}

// addIngress adds the ingress qdisc to l. An existing one is an error:
// someone else uses l's ingress and the redirect would change their setup.
func addIngress(l netlink.Link) (*netlink.Ingress, error) {
	q := ingressOf(l)
	if err := netlink.QdiscAdd(q); err != nil {
		return nil, fmt.Errorf("add ingress qdisc: %w", err)
	}
	return q, nil
}

// ingressOf is l's ingress qdisc.
func ingressOf(l netlink.Link) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
}

// addRedirect sends every frame arriving on from out of to: a u32 filter
// with one zero key (it matches everything; cls_matchall may not be built)
// under from's ingress qdisc, with a mirred egress redirect that steals the
// frame from from's stack.
func addRedirect(from, to netlink.Link) error {
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("add redirect filter to %s: %w", to.Attrs().Name, err)
	}
	return nil
}

// Interfaces names the interfaces of the network namespace at netnsPath
// that Attach would wire to the VM: every one but the loopback, in index
// order. It is for a namespace someone else configured (an OCI bundle's,
// which netavark or CNI filled for podman): the VM gets what is there.
func Interfaces(netnsPath string) ([]string, error) {
	var names []string
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list interfaces: %w", err)
		}
		for _, l := range links {
			if l.Attrs().Flags&net.FlagLoopback == 0 {
				names = append(names, l.Attrs().Name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", netnsPath, err)
	}
	return names, nil
}

// Detach undoes Attach in a namespace that outlives the VM (an OCI
// bundle's, which its caller tears down): it removes the ingress qdisc of
// each link's interface (its redirect goes with it), so the interface's
// own stack gets its frames again, and the tap if it is still there (it
// goes when QEMU's and the caller's files of it are closed). Call it once
// QEMU has exited.
func Detach(netnsPath string, links []Link) error {
	if len(links) == 0 {
		return nil
	}
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		var errs []error
		for _, l := range links {
			if tap, err := netlink.LinkByName(l.TapName); err == nil {
				if err := netlink.LinkDel(tap); err != nil {
					errs = append(errs, fmt.Errorf("delete tap %s: %w", l.TapName, err))
				}
			}
			link, err := netlink.LinkByName(l.Iface.Name)
			if err != nil {
				continue // gone with its namespace's other end
			}
			if err := netlink.QdiscDel(ingressOf(link)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("%s: remove the ingress qdisc: %w", l.Iface.Name, err))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("netns %s: %w", netnsPath, err)
	}
	return nil
}

// IsNetNS checks that p is a network namespace (a bind mount of one, or a
// /proc/PID/ns/net), not another kind of namespace or a file.
func IsNetNS(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is not a network namespace", p)
	}
	return nil
}
