package networking

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// DNSOptions are the --dns, --dns-search and --dns-opt flags.
type DNSOptions struct {
	Servers []string // IP addresses, or the single word "host" or "none"
	Search  []string
	Options []string
}

// DNS modes given as the only --dns value.
const (
	DNSHost = "host" // the host's resolv.conf as it is
	DNSNone = "none" // leave the image's resolv.conf alone
)

// Validate checks the --dns values.
func (o DNSOptions) Validate() error {
	for _, s := range o.Servers {
		if (s == DNSHost || s == DNSNone) && len(o.Servers) == 1 {
			continue
		}
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("--dns=%s: want IP addresses, or host or none alone", s)
		}
	}
	return nil
}

// ResolvConf returns the pod's /etc/resolv.conf, or nil when the image's is to
// be left alone (--dns=none). hostConf is the host's resolv.conf. In order:
// --dns=host copies hostConf; servers, search domains and options come from
// the flags, else from the networks' DNS results, else from hostConf
// (without loopback servers, which mean nothing inside the pod's netns).
func ResolvConf(o DNSOptions, hostConf []byte, nets ...NetworkResult) []byte {
	switch {
	case len(o.Servers) == 1 && o.Servers[0] == DNSNone:
		return nil
	case len(o.Servers) == 1 && o.Servers[0] == DNSHost:
		return hostConf
	}
	var cni DNSOptions
	for _, n := range nets {
		cni.Servers = append(cni.Servers, n.DNS.Nameservers...)
		if n.DNS.Domain != "" {
			cni.Search = append(cni.Search, n.DNS.Domain)
		}
		cni.Search = append(cni.Search, n.DNS.Search...)
		cni.Options = append(cni.Options, n.DNS.Options...)
	}
	host := parseResolvConf(hostConf)
	pick := func(lists ...[]string) []string {
		for _, l := range lists {
			if len(l) > 0 {
				return unique(l)
			}
		}
		return nil
	}
	var b bytes.Buffer
	b.WriteString("# written by skiff\n")
	for _, s := range pick(o.Servers, cni.Servers, host.Servers) {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if s := pick(o.Search, cni.Search, host.Search); len(s) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s, " "))
	}
	if s := pick(o.Options, cni.Options, host.Options); len(s) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(s, " "))
	}
	return b.Bytes()
}

func parseResolvConf(b []byte) DNSOptions {
	var o DNSOptions
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil && !a.IsLoopback() {
				o.Servers = append(o.Servers, f[1])
			}
		case "search", "domain":
			o.Search = f[1:]
		case "options":
			o.Options = append(o.Options, f[1:]...)
		}
	}
	return o
}

func unique(l []string) []string {
	var out []string
	for _, s := range l {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// HostEntry is one --hosts-entry=IP=NAME.
type HostEntry struct {
	IP   netip.Addr
	Name string
}

// ParseHostsEntry parses --hosts-entry=IP=NAME.
func ParseHostsEntry(s string) (HostEntry, error) {
	ip, name, ok := strings.Cut(s, "=")
	a, err := netip.ParseAddr(ip)
	if !ok || err != nil || name == "" || strings.ContainsAny(name, " \t\n#") {
		return HostEntry{}, fmt.Errorf("--hosts-entry=%s: want IP=NAME", s)
	}
	return HostEntry{IP: a, Name: name}, nil
}

// Hosts returns the pod's /etc/hosts: localhost, the hostname on the pod's
// first address (127.0.1.1 without one), then the extra entries.
func Hosts(hostname string, ips []netip.Addr, extra []HostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("# written by skiff\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if hostname != "" {
		ip := netip.MustParseAddr("127.0.1.1")
		if len(ips) > 0 {
			ip = ips[0]
		}
		names := hostname
		if short, _, ok := strings.Cut(hostname, "."); ok {
			names += " " + short
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, names)
	}
	for _, e := range extra {
		fmt.Fprintf(&b, "%s\t%s\n", e.IP, e.Name)
	}
	return b.Bytes()
}
