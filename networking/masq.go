package networking

import (
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// A masquerading network (bridge or ptp with "ipMasq": true) gets, from its
// plugin's ADD, a chain CNI-<hash> in the nat table and a rule in POSTROUTING
// that sends the pod's address there, both commented
// `name: "NETWORK" id: "POD-UUID"`. Its DEL removes the rule by the pod's
// address, then the chain. What an ADD added after the DEL ran (an ADD
// outliving a killed `skiff run`, before plugins died with it), or that a DEL
// cut short left, the plugin's next DEL cannot see once the address is
// released; dropMasqLeftovers removes it by name and pod instead.

// masqChain is the chain the plugins name for network name and container id:
// "CNI-" and the first 24 hex digits of SHA-512(name+id)
// (plugins/pkg/utils.FormatChainName).
func masqChain(name, id string) string {
	sum := sha512.Sum512([]byte(name + id))
	return fmt.Sprintf("CNI-%x", sum)[:28]
}

// masqComment is the comment on the plugins' rules
// (plugins/pkg/utils.FormatComment).
func masqComment(name, id string) string {
	return fmt.Sprintf("name: %q id: %q", name, id)
}

// masqFamilies says which of iptables (IPv4) and ip6tables (IPv6) a
// conflist's masquerading plugins use: none when no plugin masquerades; by
// its IPAM subnets otherwise (IPv4 alone when they say nothing, as with dhcp).
func masqFamilies(conf []byte) (v4, v6 bool) {
	var l struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if json.Unmarshal(conf, &l) != nil {
		return false, false
	}
	for _, p := range l.Plugins {
		if m, _ := p["ipMasq"].(bool); !m {
			continue
		}
		var subnets []string
		collectSubnets(p["ipam"], &subnets)
		if len(subnets) == 0 {
			v4 = true
		}
		for _, s := range subnets {
			if strings.Contains(s, ":") {
				v6 = true
			} else {
				v4 = true
			}
		}
	}
	return v4, v6
}

func collectSubnets(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "subnet" {
				*out = append(*out, s)
			} else {
				collectSubnets(x, out)
			}
		}
	case []any:
		for _, x := range v {
			collectSubnets(x, out)
		}
	}
}

// dropMasqLeftovers removes network name's masquerade rules and chain for
// pod id from the nat table, if the conflist masquerades. Nothing there is
// not an error.
func dropMasqLeftovers(name, id string, conf []byte) error {
	v4, v6 := masqFamilies(conf)
	var errs []string
	for _, f := range []struct {
		use  bool
		tool string
	}{{v4, "iptables"}, {v6, "ip6tables"}} {
		if !f.use {
			continue
		}
		if err := dropMasqRules(f.tool, name, id); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("masquerade rules of pod %s on network %q: %s", id, name, strings.Join(errs, "; "))
	}
	return nil
}

func dropMasqRules(tool, name, id string) error {
	chain, comment := masqChain(name, id), masqComment(name, id)
	out, err := xtables(tool, "-t", "nat", "-S", "POSTROUTING")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		args, err := splitRule(line)
		if err != nil || len(args) < 2 || args[0] != "-A" || args[1] != "POSTROUTING" || !masqRuleOf(args[2:], chain, comment) {
			continue
		}
		del := append([]string{"-t", "nat", "-D", "POSTROUTING"}, args[2:]...)
		if out, err := xtables(tool, del...); err != nil && !ruleGone(out) {
			return err
		}
	}
	if _, err := xtables(tool, "-t", "nat", "-S", chain); err != nil {
		return nil // no chain
	}
	for _, op := range []string{"-F", "-X"} {
		if out, err := xtables(tool, "-t", "nat", op, chain); err != nil && !ruleGone(out) {
			return err
		}
	}
	return nil
}

// xtables runs tool (iptables or ip6tables) with -w and args, and returns
// what it printed (stdout and stderr together) and, when it failed, an error
// that names the command and says what it printed.
func xtables(tool string, args ...string) ([]byte, error) {
	out, err := exec.Command(tool, append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// masqRuleOf says whether rule (the arguments after "-A POSTROUTING") jumps
// to chain or carries comment.
func masqRuleOf(rule []string, chain, comment string) bool {
	for i := 0; i+1 < len(rule); i++ {
		switch rule[i] {
		case "-j", "--jump", "-g", "--goto":
			if rule[i+1] == chain {
				return true
			}
		case "--comment":
			if rule[i+1] == comment {
				return true
			}
		}
	}
	return false
}

// ruleGone says whether iptables failed because what it was to remove is
// gone already (removed in between by the plugin or another gc).
func ruleGone(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "does not exist") || strings.Contains(s, "does a matching rule exist") ||
		strings.Contains(s, "No chain/target/match by that name")
}

// splitRule splits a line of `iptables -S` into arguments: words separated by
// spaces, a double-quoted word taken whole with \" and \\ unescaped.
func splitRule(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case quoted && c == '"':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '"':
			quoted, inWord = true, true
		case c == ' ' || c == '\t':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
