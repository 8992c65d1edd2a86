package vmnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The tests need root: they make network namespaces, veths and taps. Each
// namespace is a throwaway (named skiff-vmnet-PID-N under /run/netns) and
// everything a test makes lives inside one, so deleting the namespaces
// undoes it all; TestMain checks that the test process's own namespace
// (bar other pods' CNI veths) and the package's namespaces under /run/netns
// are left as they were.

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	before, err := hostSnapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmnet tests: snapshot the host:", err)
		os.Exit(1)
	}
	code := m.Run()
	after, err := hostSnapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmnet tests: snapshot the host:", err)
		os.Exit(1)
	}
	if before != after {
		fmt.Fprintf(os.Stderr, "vmnet tests changed the host:\nbefore: %s\nafter:  %s\n", before, after)
		code = 1
	}
	os.Exit(code)
}

// cniVeth matches the host ends CNI's ptp and bridge plugins make: other
// tests' pods come and go while these run.
var cniVeth = regexp.MustCompile(`^veth[0-9a-f]{8}$`)

// hostSnapshot describes the test process's network namespace (links and
// their qdiscs) and the named namespaces.
func hostSnapshot() (string, error) {
	var b strings.Builder
	links, err := netlink.LinkList()
	if err != nil {
		return "", err
	}
	for _, l := range links {
		if cniVeth.MatchString(l.Attrs().Name) {
			continue // a concurrent pod's (CNI's ptp names its host ends so)
		}
		qs, err := netlink.QdiscList(l)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s(%d qdiscs) ", l.Attrs().Name, len(qs))
	}
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		return "", err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "skiff-vmnet-") {
			fmt.Fprintf(&b, "netns:%s ", e.Name())
		}
	}
	return b.String(), nil
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces, veths and taps (run go test as root)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("needs /dev/net/tun: %v", err)
	}
}

var nsCount atomic.Int32

// newNetNS makes a throwaway named network namespace, deleted when the test
// ends, and returns its path.
func newNetNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("skiff-vmnet-%d-%d", os.Getpid(), nsCount.Add(1))
	errc := make(chan error, 1)
	go func() {
		// NewNamed moves this thread into the new namespace: lock it, and
		// unlock it only once it is back (otherwise Go ends the thread).
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		if serr := netns.Set(orig); serr == nil {
			runtime.UnlockOSThread()
		} else if err == nil {
			err = serr
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		_ = netns.DeleteNamed(name)
		t.Fatalf("new netns %s: %v", name, err)
	}
	path := "/run/netns/" + name
	t.Cleanup(func() { // netns.DeleteNamed, but fine with a test that unmounted it
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("unmount netns %s: %v", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove netns %s: %v", path, err)
		}
	})
	return path
}

// handle opens a netlink handle in the namespace at path, closed when the
// test ends (a handle holds the namespace alive: close it earlier with the
// returned function when that matters).
func handle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", path, err)
	}
	t.Cleanup(h.Close)
	return h
}

// inNS runs f on a locked thread in the namespace at path.
func inNS(t *testing.T, path string, f func() error) {
	t.Helper()
	if err := runInNS(path, f); err != nil {
		t.Fatalf("in %s: %v", path, err)
	}
}

func runInNS(path string, f func() error) error {
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return f() })
}

// addVeth makes a veth pair, name in the namespace of h and peer in the
// namespace at peerNS ("" for the same one), both up, with mtu (0: the
// default) and name's MAC mac (nil: random).
func addVeth(t *testing.T, h *netlink.Handle, name, peer, peerNS string, mtu int, mac net.HardwareAddr) netlink.Link {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac}, PeerName: peer}
	var peerH *netlink.Handle = h
	if peerNS != "" {
		nsh, err := netns.GetFromPath(peerNS)
		if err != nil {
			t.Fatal(err)
		}
		defer nsh.Close()
		v.PeerNamespace = netlink.NsFd(nsh)
		peerH = handle(t, peerNS)
		defer peerH.Close()
	}
	if mtu != 0 {
		v.PeerMTU = uint32(mtu)
	}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s/%s: %v", name, peer, err)
	}
	l := mustLink(t, h, name)
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	if err := peerH.LinkSetUp(mustLink(t, peerH, peer)); err != nil {
		t.Fatal(err)
	}
	return mustLink(t, h, name)
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func mustAddr(t *testing.T, h *netlink.Handle, l netlink.Link, cidr string, flags int) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags = flags
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, l.Attrs().Name, err)
	}
}

func mustRoute(t *testing.T, h *netlink.Handle, r *netlink.Route) {
	t.Helper()
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("add route %s: %v", r, err)
	}
}

// eventually polls cond for up to 5 s.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func sortedStrings[T fmt.Stringer](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	slices.Sort(out)
	return out
}
