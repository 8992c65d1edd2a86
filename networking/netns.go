package networking

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/mnt"
)

// createNetNS makes a new network namespace that lives as long as its bind
// mount at path (as `ip netns add` does), so it outlives this process; lo is up.
func createNetNS(path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	defer func() {
		if err != nil {
			_ = removeNetNS(path)
		}
	}()
	done := make(chan error, 1)
	go func() {
		// unshare changes only this thread, which is locked to this goroutine
		// and goes back to its namespace before it is unlocked; if it cannot,
		// it stays locked and Go ends it with the goroutine.
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		err = unix.Mount(self, path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind-mount network namespace at %s: %w", path, err)
		}
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		return err
	}
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return linkUp("lo") })
}

// removeNetNS unmounts and removes a netns made by createNetNS; the namespace
// goes when its last user does. A missing or unmounted path is fine.
func removeNetNS(path string) error {
	if err := mnt.DetachAndRemove(path); err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	return nil
}

// netNSExists tells whether path is a network namespace mount.
func netNSExists(path string) bool { return ns.IsNSorErr(path) == nil }

// linkUp sets interface name up in the calling thread's network namespace.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// standInNetNS makes a new netns at path holding, for each interface the pod
// had, a veth of that name (dummy links need a module not every kernel has)
// with the pod's recorded addresses. It is for
// DEL after the pod's netns vanished: ptp and bridge find what masquerade
// rules to remove from the addresses of the pod's interface, and skip that
// step (leaking the rules) when there is no namespace to look in.
func standInNetNS(path string, ifaces map[string][]netip.Prefix) error {
	if err := createNetNS(path); err != nil {
		return err
	}
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		for name, addrs := range ifaces {
			l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "peer-" + name}
			if err := netlink.LinkAdd(l); err != nil {
				return fmt.Errorf("add stand-in %s: %w", name, err)
			}
			for _, a := range addrs {
				ipn := &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}
				if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
					return fmt.Errorf("address stand-in %s: %w", name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		_ = removeNetNS(path)
	}
	return err
}

// observedResult rebuilds a CNI result from the addresses of ifName in the
// netns at path, for DEL after a crash during ADD (libcni caches a result
// only once the whole chain succeeded). Plugins such as firewall need it to
// know which rules are the pod's. nil when the interface is not there.
func observedResult(path, ifName, cniVersion string) types.Result {
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: ifName, Sandbox: path}}}
	mac, addrs, _ := linkAddrs(path, ifName)
	r.Interfaces[0].Mac = mac.String()
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			r.IPs = append(r.IPs, &current.IPConfig{Interface: current.Int(0), Address: *a.IPNet})
		}
	}
	if len(r.IPs) == 0 {
		return nil
	}
	v, err := r.GetAsVersion(cniVersion)
	if err != nil {
		return nil
	}
	return v
}

// linkHasAddrs tells whether the namespace bound at path has a link ifName
// that holds every address of ips.
func linkHasAddrs(path, ifName string, ips []netip.Prefix) bool {
	_, addrs, err := linkAddrs(path, ifName)
	if err != nil || len(ips) == 0 {
		return false
	}
	held := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			held[ip.Unmap()] = true
		}
	}
	for _, p := range ips {
		if !held[p.Addr().Unmap()] {
			return false
		}
	}
	return true
}

// linkAddrs reads the hardware address and the addresses of link ifName in
// the netns at path (what it could read of them, and the first error).
func linkAddrs(path, ifName string) (net.HardwareAddr, []netlink.Addr, error) {
	var mac net.HardwareAddr
	var addrs []netlink.Addr
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return err
		}
		mac = l.Attrs().HardwareAddr
		addrs, err = netlink.AddrList(l, netlink.FAMILY_ALL)
		return err
	})
	return mac, addrs, err
}

// SetSysctl writes value to the network sysctl key (dotted, "net.ipv4.X") in
// the network namespace bound at path, from a thread that joins it for the
// write (its /proc/sys/net is that namespace's).
func SetSysctl(path, key, value string) error {
	if !strings.HasPrefix(key, "net.") || strings.Contains(key, "..") || strings.ContainsAny(key, "/\x00") {
		return fmt.Errorf("sysctl %s: not a network sysctl", key)
	}
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		f, err := os.OpenFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("set %s=%s in the pod's network namespace: %w", key, value, err)
	}
	return nil
}
