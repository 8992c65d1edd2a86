package networking

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestHasRules(t *testing.T) {
	rules := subnetMasqRules(MasqChain, "172.16.28.0/24")
	listing := `-P POSTROUTING ACCEPT
-N SKIFF-MASQ
-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE
-A POSTROUTING -s 172.16.28.0/24 -m comment --comment "skiff: default network masquerade" -j SKIFF-MASQ
-A SKIFF-MASQ -d 172.16.28.0/24 -m comment --comment "skiff: default network masquerade" -j ACCEPT
-A SKIFF-MASQ ! -d 224.0.0.0/4 -m comment --comment "skiff: default network masquerade" -j MASQUERADE
`
	if !hasRules(listing, rules) {
		t.Errorf("all rules listed, not found")
	}
	// iptables may print a rule's matches in another order.
	reordered := `-A POSTROUTING -m comment --comment "skiff: default network masquerade" -s 172.16.28.0/24 -j SKIFF-MASQ
-A SKIFF-MASQ -m comment --comment "skiff: default network masquerade" -d 172.16.28.0/24 -j ACCEPT
-A SKIFF-MASQ ! -d 224.0.0.0/4 -j MASQUERADE -m comment --comment "skiff: default network masquerade"
`
	if !hasRules(reordered, rules) {
		t.Errorf("reordered rules not found")
	}
	for _, missing := range []string{
		// no jump
		`-A SKIFF-MASQ -d 172.16.28.0/24 -m comment --comment "skiff: default network masquerade" -j ACCEPT
-A SKIFF-MASQ ! -d 224.0.0.0/4 -m comment --comment "skiff: default network masquerade" -j MASQUERADE`,
		// the multicast exception lost its "!"
		`-A POSTROUTING -s 172.16.28.0/24 -m comment --comment "skiff: default network masquerade" -j SKIFF-MASQ
-A SKIFF-MASQ -d 172.16.28.0/24 -m comment --comment "skiff: default network masquerade" -j ACCEPT
-A SKIFF-MASQ -d 224.0.0.0/4 -m comment --comment "skiff: default network masquerade" -j MASQUERADE`,
		// another subnet
		`-A POSTROUTING -s 172.16.29.0/24 -m comment --comment "skiff: default network masquerade" -j SKIFF-MASQ
-A SKIFF-MASQ -d 172.16.28.0/24 -m comment --comment "skiff: default network masquerade" -j ACCEPT
-A SKIFF-MASQ ! -d 224.0.0.0/4 -m comment --comment "skiff: default network masquerade" -j MASQUERADE`,
		"",
	} {
		if hasRules(missing, rules) {
			t.Errorf("found in a listing without them:\n%s", missing)
		}
	}
}

// Concurrent Setups on the default network (goroutines: the flock is per
// open file, so they contend as processes do) add the chain's rules and the
// jump once each, and a chain emptied by hand is filled again. A chain and a
// subnet of the test's own stand in for SKIFF-MASQ's.
func TestSubnetMasqOnceUnderConcurrency(t *testing.T) {
	requireRoot(t)
	chain, subnet := fmt.Sprintf("SKIFF-MQTEST-%d", os.Getpid()), "198.18.7.0/24"
	nat := func(args ...string) error {
		_, err := xtables("iptables", append([]string{"-t", "nat"}, args...)...)
		return err
	}
	t.Cleanup(func() {
		for nat("-D", "POSTROUTING", "-s", subnet, "-m", "comment", "--comment", subnetMasqComment, "-j", chain) == nil {
		}
		_ = nat("-F", chain)
		_ = nat("-X", chain)
	})
	count := func() (jumps, rules int) {
		out, err := exec.Command("iptables", "-w", "-t", "nat", "-S").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(l, "-A POSTROUTING ") && strings.HasSuffix(l, "-j "+chain):
				jumps++
			case strings.HasPrefix(l, "-A "+chain+" "):
				rules++
			}
		}
		return jumps, rules
	}
	for round := 0; round < 3; round++ {
		if round == 2 {
			if err := nat("-F", chain); err != nil {
				t.Fatal(err)
			}
		}
		concurrently(t, 8, func() error { return ensureMasq(chain, subnet) })
		if jumps, rules := count(); jumps != 1 || rules != 2 {
			t.Errorf("round %d: %d jumps to %s and %d rules in it, want 1 and 2", round, jumps, chain, rules)
		}
	}
}

// The default network's traffic leaves the host masqueraded: a remote host
// (a netns behind a veth of its own, with no route back to the pods'
// subnet) sees the host's address as the pod's, and answers.
func TestDefaultNetworkIsMasqueraded(t *testing.T) {
	e := newEnv(t)
	res := e.setup(e.request(NetDefault))
	remote := filepath.Join(t.TempDir(), "remote")
	if err := createNetNS(remote); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeNetNS(remote) })
	hostEnd, remoteEnd := fmt.Sprintf("skmq%dh", rand.IntN(1e6)), fmt.Sprintf("skmq%dr", rand.IntN(1e6))
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("link", "add", hostEnd, "type", "veth", "peer", "name", remoteEnd)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostEnd).Run() })
	l, err := netlink.LinkByName(remoteEnd)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(remote)
	if err != nil {
		t.Fatal(err)
	}
	err = netlink.LinkSetNsFd(l, int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ip("addr", "add", "198.51.100.1/30", "dev", hostEnd)
	ip("link", "set", hostEnd, "up")
	inNetNS(t, remote, func() error {
		for _, args := range [][]string{{"addr", "add", "198.51.100.2/30", "dev", remoteEnd}, {"link", "set", remoteEnd, "up"}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %v: %v: %s", args, err, out)
			}
		}
		return nil
	})
	srv := serveIn(t, remote, "198.51.100.2:0", func(c net.Conn) string { return c.RemoteAddr().(*net.TCPAddr).IP.String() })
	mustReach(t, res.NetNS, srv.Addr().String(), "198.51.100.1")
}
