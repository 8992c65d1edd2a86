package networking

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/utils"
)

// Mode is how a pod is networked.
type Mode string

const (
	ModeCNI  Mode = "cni"  // its own netns, attached to CNI networks
	ModeHost Mode = "host" // the host's netns
	ModeNone Mode = "none" // its own netns with only lo
)

// Built-in network names.
const (
	NetDefault           = "default"
	NetDefaultRestricted = "default-restricted"
)

// Net is a parsed --net flag.
type Net struct {
	Mode     Mode
	Networks []Attachment // ModeCNI only, in flag order: eth0, eth1, …
}

// Attachment is one network of a pod and the CNI_ARGS it passes to the
// network's plugins (e.g. IP=10.1.2.3 for host-local).
type Attachment struct {
	Name string
	Args [][2]string
}

// ParseNetFlag parses --net: "none", "host", or comma-separated network names,
// each optionally followed by ":K=V;K2=V2" CNI_ARGS, as in
// "default,backend:IP=10.90.0.7". A network appears at most once, and no two
// networks ask for the same IP=.
func ParseNetFlag(s string) (Net, error) {
	switch s {
	case string(ModeHost):
		return Net{Mode: ModeHost}, nil
	case string(ModeNone):
		return Net{Mode: ModeNone}, nil
	case "":
		return Net{}, errors.New("--net is empty; use default, none, host or network names")
	}
	n := Net{Mode: ModeCNI}
	seen := map[string]bool{}
	ips := map[netip.Addr]string{}
	for _, part := range strings.Split(s, ",") {
		name, args, _ := strings.Cut(part, ":")
		if name == string(ModeHost) || name == string(ModeNone) {
			return Net{}, fmt.Errorf("--net=%s: %q cannot be combined with other networks", s, name)
		}
		if err := utils.ValidateNetworkName(name); err != nil {
			return Net{}, fmt.Errorf("--net=%s: invalid network name %q", s, name)
		}
		if seen[name] {
			return Net{}, fmt.Errorf("--net=%s: network %q given twice", s, name)
		}
		seen[name] = true
		a := Attachment{Name: name}
		if args != "" {
			for _, kv := range strings.Split(args, ";") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return Net{}, fmt.Errorf("network %q: argument %q is not KEY=VALUE", name, kv)
				}
				if k == "IP" {
					ip, err := netip.ParseAddr(v)
					if err != nil {
						return Net{}, fmt.Errorf("network %q: IP=%s is not an IP address", name, v)
					}
					if other, dup := ips[ip]; dup {
						return Net{}, fmt.Errorf("network %q: duplicate IP=%s (also asked for network %q)", name, v, other)
					}
					ips[ip] = name
				}
				a.Args = append(a.Args, [2]string{k, v})
			}
		}
		n.Networks = append(n.Networks, a)
	}
	return n, nil
}

// String renders n as a --net value that ParseNetFlag reads back (stage0
// passes it to stage1 this way).
func (n Net) String() string {
	if n.Mode != ModeCNI {
		return string(n.Mode)
	}
	parts := make([]string, len(n.Networks))
	for i, a := range n.Networks {
		parts[i] = a.Name
		for j, kv := range a.Args {
			sep := ";"
			if j == 0 {
				sep = ":"
			}
			parts[i] += sep + kv[0] + "=" + kv[1]
		}
	}
	return strings.Join(parts, ",")
}

// CheckPorts refuses port forwarding where there is no pod network to forward to.
func (n Net) CheckPorts(ports []PortMapping) error {
	if len(ports) > 0 && n.Mode != ModeCNI {
		return fmt.Errorf("port %s: --port needs a pod network, not --net=%s; with --net=host the app binds host ports itself", ports[0], n.Mode)
	}
	return nil
}

// PortMapping forwards a host port to a port of the pod (the portmap plugin's
// portMappings capability).
type PortMapping struct {
	HostIP   string `json:"hostIP,omitempty"` // empty: every host address
	HostPort int    `json:"hostPort"`
	PodPort  int    `json:"containerPort"`
	Protocol string `json:"protocol"` // tcp or udp
	// Name is set instead of PodPort for rkt's NAME:HOSTPORT form; the caller
	// resolves it to PodPort from the image's declared ports.
	Name string `json:"-"`
}

func (p PortMapping) String() string {
	pod := strconv.Itoa(p.PodPort)
	if p.Name != "" && p.PodPort == 0 {
		return p.Name + ":" + strconv.Itoa(p.HostPort)
	}
	s := strconv.Itoa(p.HostPort) + ":" + pod + "/" + p.Protocol
	if p.HostIP != "" {
		ip := p.HostIP
		if strings.Contains(ip, ":") {
			ip = "[" + ip + "]"
		}
		s = ip + ":" + s
	}
	return s
}

// ParsePort parses --port=[HOSTIP:]HOSTPORT:PODPORT[/tcp|udp] (IPv6 host
// addresses in brackets) and rkt's NAME:HOSTPORT.
func ParsePort(s string) (PortMapping, error) {
	p := PortMapping{Protocol: "tcp"}
	rest := s
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		p.Protocol = strings.ToLower(rest[i+1:])
		rest = rest[:i]
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return p, fmt.Errorf("port %s: protocol %q is not tcp or udp", s, p.Protocol)
		}
	}
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return p, fmt.Errorf("port %s: unterminated [host address]", s)
		}
		p.HostIP, rest = rest[1:end], rest[end+2:]
	}
	f := strings.Split(rest, ":")
	switch {
	case len(f) == 3 && p.HostIP == "":
		p.HostIP, f = f[0], f[1:]
	case len(f) != 2:
		return p, fmt.Errorf("port %s: want [HOSTIP:]HOSTPORT:PODPORT[/tcp|udp]", s)
	}
	if p.HostIP != "" {
		ip, err := netip.ParseAddr(p.HostIP)
		if err != nil {
			return p, fmt.Errorf("port %s: host address %q is not an IP address", s, p.HostIP)
		}
		p.HostIP = ip.String()
	}
	second, err := parsePortNumber(f[1])
	if err != nil {
		return p, fmt.Errorf("port %s: %w", s, err)
	}
	first, err := parsePortNumber(f[0])
	switch {
	case err == nil:
		p.HostPort, p.PodPort = first, second
	case p.HostIP == "" && isPortName(f[0]): // NAME:HOSTPORT
		p.Name, p.HostPort = f[0], second
	default:
		return p, fmt.Errorf("port %s: host port %w", s, err)
	}
	return p, nil
}

func parsePortNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// isPortName tells an image's port name (appc: lowercase letters, digits,
// dashes, starting with a letter) from a number.
func isPortName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// CheckPortsFree binds each host port of ports and lets it go at once, so
// that a port something already holds (a host service, another pod's
// forward) is refused before a pod is made for it, as the pod's network
// would refuse it (stage1 binds them again for the pod's life).
func CheckPortsFree(ports []PortMapping) error {
	for _, p := range ports {
		c, err := bindPort(p)
		if err != nil {
			return &PortError{Port: p, Err: fmt.Errorf("%w (%v); choose another host port", ErrPortInUse, err)}
		}
		c.Close()
	}
	return nil
}
