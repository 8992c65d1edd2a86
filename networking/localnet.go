package networking

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/lockfile"
)

// The portmap plugin with snat (what makes a forwarded port answer on the
// host's 127.0.0.1) sets net.ipv4.conf.IF.route_localnet=1 on the pod's
// host-side interface. The kernel then routes packets that arrive there for
// 127.0.0.0/8 to the host's loopback services: a pod that routes 127.0.0.0/8
// via its gateway reaches anything the host binds to 127.0.0.1
// (CVE-2020-8558). As kube-proxy does, a rule in filter INPUT drops such
// packets unless they are part of a connection the host made or a DNAT
// (which is how a port forward's own traffic arrives):
//
//	-N SKIFF-LOCALNET
//	-A SKIFF-LOCALNET ! -i lo ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
//	-I INPUT -j SKIFF-LOCALNET
//
// The kvm flavor is exposed the same way (the guest's NIC is the pod's eth0,
// behind the same host veth) and is covered by the same guard, which
// networking.Setup installs for both flavors.
//
// The chain is shared by every pod and by both stage1 flavors; it is
// installed, idempotently, by the Setup of any pod that forwards a port and
// is left in place afterwards (as kube-proxy leaves KUBE-FIREWALL): it only
// drops packets nothing on a correct host sends, and removing it while another
// pod still forwards a port would reopen the hole. `iptables -D INPUT -j
// SKIFF-LOCALNET; iptables -F SKIFF-LOCALNET; iptables -X SKIFF-LOCALNET`
// removes it by hand.
const LocalnetChain = "SKIFF-LOCALNET"

var localnetRule = []string{"!", "-i", "lo", "!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8",
	"-m", "comment", "--comment", "skiff: pods must not reach host loopback, CVE-2020-8558",
	"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"}

// localnetLock serializes the check-then-add of concurrent Setups, so the
// rule is added once.
var localnetLock = "/run/skiff/localnet.lock"

// ensureLocalnetGuard installs the SKIFF-LOCALNET chain and its jump from
// INPUT if they are missing.
func ensureLocalnetGuard() error {
	return ensureGuard(LocalnetChain)
}

// ensureGuard installs chain with localnetRule, jumped to first from
// INPUT, each exactly once however many Setups run at the same time.
func ensureGuard(chain string) error {
	return withRulesLock(func() error { return addGuard(chain) })
}

// withRulesLock runs fn holding localnetLock, which serializes the
// check-then-add of skiff's host-wide rules (SKIFF-LOCALNET, SKIFF-MASQ)
// between processes.
func withRulesLock(fn func() error) error {
	// 0711 as stage1 keeps it: a pod with private users walks through it.
	if err := os.MkdirAll(filepath.Dir(localnetLock), 0o711); err != nil {
		return err
	}
	f, err := lockfile.Open(localnetLock)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	return fn()
}

func addGuard(chain string) error {
	if iptables("-S", chain) != nil {
		if err := iptables("-N", chain); err != nil {
			return err
		}
	}
	rule := append([]string{chain}, localnetRule...)
	if iptables(append([]string{"-C"}, rule...)...) != nil {
		if err := iptables(append([]string{"-A"}, rule...)...); err != nil {
			return err
		}
	}
	if iptables("-C", "INPUT", "-j", chain) != nil {
		if err := iptables("-I", "INPUT", "1", "-j", chain); err != nil {
			return err
		}
	}
	return nil
}

func iptables(args ...string) error {
	_, err := xtables("iptables", args...)
	return err
}
