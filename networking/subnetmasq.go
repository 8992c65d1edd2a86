package networking

import (
	"slices"
	"strings"
)

// The built-in default network's traffic to the world is masqueraded by one
// host-wide chain for its whole subnet, not by its plugin (ptp "ipMasq"), which
// adds a chain and a rule per pod at ADD (9 iptables runs) and removes them at
// DEL (6 more): most of a `skiff run --net=default`'s own time. As podman's
// netavark does per network:
//
//	-t nat -N SKIFF-MASQ
//	-t nat -A SKIFF-MASQ -d 172.16.28.0/24 -j ACCEPT         (pod to pod: unchanged)
//	-t nat -A SKIFF-MASQ ! -d 224.0.0.0/4 -j MASQUERADE      (multicast: unchanged)
//	-t nat -A POSTROUTING -s 172.16.28.0/24 -j SKIFF-MASQ
//
// each rule with a comment, the same two rules the plugin puts in each pod's
// chain, for the addresses its host-local IPAM hands out. Setup checks the
// rules (`iptables -t nat -S` of POSTROUTING and of the chain) and installs what is missing
// (idempotently, under the lock SKIFF-LOCALNET's installation takes); like
// SKIFF-LOCALNET they stay when the pods are gone: they act only on packets
// from the default subnet, which only its pods have. `iptables -t nat -D
// POSTROUTING -s 172.16.28.0/24 -m comment --comment "skiff: default network
// masquerade" -j SKIFF-MASQ; iptables -t nat -F SKIFF-MASQ; iptables -t nat
// -X SKIFF-MASQ` removes them by hand. Pods set up with the plugin's ipMasq
// (by an older skiff) keep theirs, which their DEL removes as before.
const MasqChain = "SKIFF-MASQ"

const subnetMasqComment = "skiff: default network masquerade"

// subnetMasqRules are the rules of chain (MasqChain) for subnet, then its
// jump from POSTROUTING: each the chain's name and the rule's arguments.
func subnetMasqRules(chain, subnet string) [][]string {
	c := []string{"-m", "comment", "--comment", subnetMasqComment}
	return [][]string{
		append([]string{chain, "-d", subnet}, append(c, "-j", "ACCEPT")...),
		append([]string{chain, "!", "-d", "224.0.0.0/4"}, append(c, "-j", "MASQUERADE")...),
		append([]string{"POSTROUTING", "-s", subnet}, append(c, "-j", chain)...),
	}
}

// ensureSubnetMasq installs MasqChain for subnet and its jump if any of it is
// missing.
func ensureSubnetMasq(subnet string) error { return ensureMasq(MasqChain, subnet) }

// ensureMasq is ensureSubnetMasq with the chain's name (the tests' own).
func ensureMasq(chain, subnet string) error {
	rules := subnetMasqRules(chain, subnet)
	// The common case: two iptables runs (POSTROUTING and the chain, not
	// the whole nat table, which on a Kubernetes node is thousands of rules).
	post, err1 := xtables("iptables", "-t", "nat", "-S", "POSTROUTING")
	listed, err2 := xtables("iptables", "-t", "nat", "-S", chain)
	if err1 == nil && err2 == nil && hasRules(string(post)+"\n"+string(listed), rules) {
		return nil
	}
	return withRulesLock(func() error {
		if _, err := xtables("iptables", "-t", "nat", "-S", chain); err != nil {
			if _, err := xtables("iptables", "-t", "nat", "-N", chain); err != nil {
				return err
			}
		}
		for _, r := range rules { // the jump last: no packet reaches a half-made chain
			if _, err := xtables("iptables", append([]string{"-t", "nat", "-C"}, r...)...); err == nil {
				continue
			}
			if _, err := xtables("iptables", append([]string{"-t", "nat", "-A"}, r...)...); err != nil {
				return err
			}
		}
		return nil
	})
}

// hasRules tells whether `iptables -S` output holds each of rules (a chain
// and its arguments, in any order iptables prints them).
func hasRules(listing string, rules [][]string) bool {
	var have [][]string
	for _, line := range strings.Split(listing, "\n") {
		if args, err := splitRule(line); err == nil && len(args) > 2 && args[0] == "-A" {
			slices.Sort(args[2:])
			have = append(have, args[1:])
		}
	}
	for _, r := range rules {
		want := slices.Clone(r)
		slices.Sort(want[1:])
		if !slices.ContainsFunc(have, func(h []string) bool { return slices.Equal(h, want) }) {
			return false
		}
	}
	return true
}
