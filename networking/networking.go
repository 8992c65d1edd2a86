// Package networking gives a pod its network: a persistent network namespace
// attached to CNI networks through libcni and the standard plugin binaries,
// port forwarding (the portmap plugin), and the pod's resolv.conf and hosts.
//
// Map:
//   - flags.go: --net and --port parsing (stage0 validates, stage1 re-reads).
//   - config.go: network configurations: built-in default and
//     default-restricted, .conflist/.conf files in net.d directories.
//   - networking.go: Setup and Teardown, the only calls that change the host.
//   - state.go: what Teardown needs, written under the pod's state directory
//     before each step, so Teardown works after a crash of whoever called Setup.
//   - netns.go: the persistent namespace (a bind mount, like `ip netns add`).
//   - dns.go: resolv.conf and hosts contents.
//   - localnet.go: the host-wide SKIFF-LOCALNET guard that keeps pods with
//     forwarded ports off the host's 127.0.0.0/8 (CVE-2020-8558). It is the
//     one thing Teardown leaves behind on purpose: installed once, under a
//     flock, by the first Setup with ports, never removed (as CNI's shared
//     CNI-HOSTPORT-* chains), so no teardown, crash or gc can reopen the hole
//     for another pod that still forwards a port.
package networking

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/utils"
)

// Request is what a pod's network is made of.
type Request struct {
	PodUUID    string        // CNI container ID; names the netns
	StateDir   string        // e.g. POD/stage1/net; created; Teardown reads it
	ConfDirs   []string      // searched in order, e.g. LOCAL_CONFIG/net.d then SYSTEM_CONFIG/net.d
	PluginDirs []string      // nil: DefaultPluginDirs()
	NetNSDir   string        // "": DefaultNetNSDir
	IPAMDir    string        // host-local leases of built-in networks; "": DefaultIPAMDir
	Networks   []Attachment  // eth0, eth1, … in order; at least one
	Ports      []PortMapping // forwarded to the first network whose plugins take portMappings
	Log        io.Writer     // plugins' stderr; nil discards it
}

// Check tells, without changing anything, whether Setup would find the
// networks n names and their plugins: stage0 calls it to refuse a bad --net
// before it writes a pod. The default network's firewall plugin, which Setup
// adds when the host's FORWARD policy drops (prepareDefault), is not checked
// here (asking iptables costs ~5 ms a run): Setup refuses its absence.
func Check(n Net, confDirs, pluginDirs []string) error {
	if n.Mode != ModeCNI {
		return nil
	}
	names := make([]string, len(n.Networks))
	for i, a := range n.Networks {
		names[i] = a.Name
	}
	confs, err := loadNetworks(names, confDirs, builtinOptions{})
	if err != nil {
		return err
	}
	if pluginDirs == nil {
		pluginDirs = DefaultPluginDirs()
	}
	for i, c := range confs {
		if err := checkPlugins(c.list, pluginDirs); err != nil {
			return &NetworkError{Network: names[i], Err: err}
		}
	}
	return nil
}

// Result is a pod's network once set up.
type Result struct {
	NetNS    string          `json:"netns"` // bind-mounted namespace: join it by path
	Networks []NetworkResult `json:"networks"`
	reserved []io.Closer     // the forwarded host ports, bound so nobody else takes them
	// setUp: Setup returned this Result (every ADD completed, in this
	// process); torn: its Teardown has begun. See Result.Teardown.
	setUp, torn bool
}

// Release gives up the host ports the pod holds (as podman's conmon does, the
// process that set the network up keeps each forwarded port bound for the
// pod's life, so a second pod or a host service cannot take it; they are
// released when that process ends, or here).
func (r *Result) Release() {
	if r == nil {
		return
	}
	for _, c := range r.reserved {
		c.Close()
	}
	r.reserved = nil
}

// NetworkResult is what one network gave the pod.
type NetworkResult struct {
	Name     string         `json:"name"`
	IfName   string         `json:"ifName"`
	IPs      []netip.Prefix `json:"ips,omitempty"`
	Gateways []netip.Addr   `json:"gateways,omitempty"`
	DNS      types.DNS      `json:"dns,omitempty"`
}

// IPs lists the pod's addresses, network by network.
func (r *Result) IPs() []netip.Addr {
	var ips []netip.Addr
	for _, n := range r.Networks {
		for _, p := range n.IPs {
			ips = append(ips, p.Addr())
		}
	}
	return ips
}

// NetworkError is a failure of one network.
type NetworkError struct {
	Network string
	Err     error
}

func (e *NetworkError) Error() string {
	return oneLine(fmt.Sprintf("network %q: %v", e.Network, e.Err))
}
func (e *NetworkError) Unwrap() error { return e.Err }

// PortError is a failure of one port forwarding.
type PortError struct {
	Port PortMapping
	Err  error
}

func (e *PortError) Error() string { return oneLine(fmt.Sprintf("port %s: %v", e.Port, e.Err)) }
func (e *PortError) Unwrap() error { return e.Err }

// Sentinels of Setup's errors.
var (
	ErrPortInUse      = errors.New("host port is already in use")
	ErrNoPortForward  = errors.New("no network of the pod forwards ports")
	ErrAlreadySetUp   = errors.New("network state already exists")
	ErrNoNetworks     = errors.New("no networks to attach")
	ErrUnresolvedPort = errors.New("named port not resolved to a pod port")
)

func oneLine(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r", ""))
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' }), "; ")
}

func (r *Request) defaults() {
	if r.PluginDirs == nil {
		r.PluginDirs = DefaultPluginDirs()
	}
	if r.NetNSDir == "" {
		r.NetNSDir = DefaultNetNSDir
	}
	if r.IPAMDir == "" {
		r.IPAMDir = DefaultIPAMDir
	}
	if r.Log == nil {
		r.Log = io.Discard
	}
}

// Setup creates the pod's network namespace (bind-mounted at
// NetNSDir/PodUUID, lo up) and runs CNI ADD for each network in order
// (eth0, eth1, …). Everything is checked that can be before anything is
// changed (networks exist and parse, plugins exist, host ports are free); on a
// later failure Setup undoes what it did and returns an error naming the
// network or port. The state it writes under StateDir lets Teardown undo it all
// even if this process dies.
func Setup(ctx context.Context, req Request) (_ *Result, err error) {
	req.defaults()
	if err := utils.ValidateContainerID(req.PodUUID); err != nil {
		return nil, fmt.Errorf("pod %q: %w", req.PodUUID, err)
	}
	if len(req.Networks) == 0 {
		return nil, ErrNoNetworks
	}
	names := make([]string, len(req.Networks))
	for i, a := range req.Networks {
		names[i] = a.Name
	}
	bo := builtinOptions{ipamDir: req.IPAMDir, ports: len(req.Ports) > 0}
	confs, err := loadNetworks(names, req.ConfDirs, bo)
	if err != nil {
		return nil, err
	}
	for i, c := range confs {
		if err := checkPlugins(c.list, req.PluginDirs); err != nil {
			return nil, &NetworkError{Network: names[i], Err: err}
		}
	}
	if err := prepareDefault(names, confs, bo, req.PluginDirs); err != nil {
		return nil, err
	}
	portNet, reserved, err := reservePorts(req.Ports, confs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			(&Result{reserved: reserved}).Release()
		}
	}()
	if portNet >= 0 {
		if err := ensureLocalnetGuard(); err != nil {
			return nil, &PortError{Port: req.Ports[0], Err: fmt.Errorf("cannot install the %s rule that keeps pods off the host's loopback: %w; check that iptables works", LocalnetChain, err)}
		}
	}
	if builtinDefault(names, confs) >= 0 {
		if err := ensureSubnetMasq(DefaultSubnet); err != nil {
			return nil, &NetworkError{Network: NetDefault, Err: fmt.Errorf("cannot install the %s rules that masquerade %s: %w; check that iptables works", MasqChain, DefaultSubnet, err)}
		}
	}
	if err := os.MkdirAll(req.StateDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(req.StateDir, stateFile)); err == nil {
		return nil, fmt.Errorf("pod %s: %w in %s; tear it down first", req.PodUUID, ErrAlreadySetUp, req.StateDir)
	}
	st := &state{Version: stateVersion, PodUUID: req.PodUUID, NetNS: filepath.Join(req.NetNSDir, req.PodUUID),
		PluginDirs: req.PluginDirs}
	if err := st.write(req.StateDir); err != nil { // before the netns: a crash leaves nothing unnamed
		return nil, err
	}
	defer func() {
		if err != nil {
			if cerr := teardown(context.WithoutCancel(ctx), req.StateDir, st, req.Log, false); cerr != nil {
				err = fmt.Errorf("%w; undoing it also failed, 'skiff gc' retries: %v", err, cerr)
			}
		}
	}()
	if err := createNetNS(st.NetNS); err != nil {
		return nil, fmt.Errorf("pod %s: network namespace: %w", req.PodUUID, err)
	}
	cni := newCNI(req.StateDir, st.PluginDirs, req.Log)
	res := &Result{NetNS: st.NetNS, reserved: reserved}
	for i, c := range confs {
		a := attached{Name: names[i], IfName: "eth" + strconv.Itoa(i), Config: c.list.Bytes, Args: cniArgs(req.Networks[i].Args)}
		if i == portNet {
			a.CapabilityArgs = map[string]any{"portMappings": req.Ports}
		}
		st.Networks = append(st.Networks, a)
		if err := st.write(req.StateDir); err != nil {
			return nil, err
		}
		r, err := cni.AddNetworkList(ctx, c.list, st.runtimeConf(a))
		if err != nil {
			return nil, &NetworkError{Network: names[i], Err: err}
		}
		nr, err := networkResult(a, r)
		if err != nil {
			return nil, &NetworkError{Network: names[i], Err: err}
		}
		st.Networks[i].Result = &nr
		res.Networks = append(res.Networks, nr)
	}
	if err := st.write(req.StateDir); err != nil {
		return nil, err
	}
	res.setUp = true
	return res, nil
}

// forwardPolicyDrops is forwardDrops (a variable for the tests).
var forwardPolicyDrops = forwardDrops

// builtinDefault is the index in names of the built-in default network, or
// -1 (not named, or a conflist of the user's named default).
func builtinDefault(names []string, confs []netConfig) int {
	if i := slices.Index(names, NetDefault); i >= 0 && confs[i].source == "built-in" {
		return i
	}
	return -1
}

// prepareDefault chains the firewall plugin to the built-in default network,
// if names has it, when the host's FORWARD policy drops (confs gets the
// network again with it, its plugin checked).
func prepareDefault(names []string, confs []netConfig, bo builtinOptions, pluginDirs []string) error {
	i := builtinDefault(names, confs)
	if i < 0 || !forwardPolicyDrops() {
		return nil
	}
	bo.firewall = true
	b, _ := builtin(NetDefault, bo)
	l, err := libcni.NetworkConfFromBytes(b)
	if err == nil {
		err = checkPlugins(l, pluginDirs)
	}
	if err != nil {
		return &NetworkError{Network: NetDefault, Err: err}
	}
	confs[i].list = l
	return nil
}

// Teardown undoes Setup from what StateDir records: CNI DEL for each network
// in reverse order, then the network namespace. It works after a crash of the
// process that called Setup, when the namespace is already gone, and when
// there is nothing to do (no state); running it twice is fine. What fails
// stays recorded, so a later Teardown retries it.
func Teardown(ctx context.Context, stateDir string) error {
	return (*Result)(nil).Teardown(ctx, stateDir)
}

// Teardown is the package-level Teardown (a nil Result) for the process that
// set the network up, which knows more: every ADD completed (none can outlive it and
// add after the DEL) and, the first time, no DEL has run before. A DEL that
// then succeeds in the pod's namespace, with the ADD's result cached, has
// removed what its plugins added (a masquerading plugin removes its rule and
// chain by the link's addresses), so the search for leftovers
// (dropMasqLeftovers: two iptables runs a network) is skipped; any other
// time it runs, as after a crash.
func (r *Result) Teardown(ctx context.Context, stateDir string) error {
	st, err := readState(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	first := r != nil && r.setUp && !r.torn
	if r != nil {
		r.torn = true
	}
	return teardown(ctx, stateDir, st, io.Discard, first)
}

// Load reads the result of a Setup from stateDir (for status).
func Load(stateDir string) (*Result, error) {
	st, err := readState(stateDir)
	if err != nil {
		return nil, err
	}
	res := &Result{NetNS: st.NetNS}
	for _, a := range st.Networks {
		if a.Result != nil {
			res.Networks = append(res.Networks, *a.Result)
		}
	}
	return res, nil
}

// sweepMasq is dropMasqLeftovers (a variable for the tests).
var sweepMasq = dropMasqLeftovers

// teardown undoes what st records. first: the caller set the network up
// itself and this is its first teardown (Result.Teardown).
func teardown(ctx context.Context, stateDir string, st *state, log io.Writer, first bool) error {
	cni := newCNI(stateDir, st.PluginDirs, log)
	netns := st.NetNS
	if !netNSExists(netns) {
		ifaces := map[string][]netip.Prefix{}
		for _, a := range st.Networks {
			if a.Result != nil {
				ifaces[a.IfName] = a.Result.IPs
			}
		}
		if len(ifaces) == 0 || standInNetNS(netns, ifaces) != nil {
			netns = "" // plugins then release what they can (the IPAM lease)
		}
	}
	var failed []attached
	var msgs []string
	for i := len(st.Networks) - 1; i >= 0; i-- {
		a := st.Networks[i]
		l, err := libcni.NetworkConfFromBytes(a.Config)
		if err == nil {
			rt := st.runtimeConf(a)
			rt.NetNS = netns
			cached, _ := cni.GetNetworkListCachedResult(l, rt)
			if cached == nil && netns != "" {
				l = withPrevResult(l, observedResult(netns, a.IfName, l.CNIVersion))
			}
			// The plugins' DEL finds what to remove by the link's
			// addresses, which the pod's root may have changed.
			intact := first && netns != "" && cached != nil && a.Result != nil && linkHasAddrs(netns, a.IfName, a.Result.IPs)
			err = cni.DelNetworkList(ctx, l, rt)
			if err != nil && masqChainGone(err) {
				fmt.Fprintf(log, "network %q: %v (already removed: taken as done)\n", a.Name, err)
				err = nil
			}
			// What the DEL could not see goes by name and pod: with no
			// recorded result (the ADD's caller died before recording it)
			// or no netns, the plugins' DEL knows no address to remove a
			// masquerade rule by; and even with both, a DEL after one cut
			// short finds the link gone, takes that for done and leaves
			// the rule and chain (bridge and ptp take the addresses from
			// the link). So this runs after every DEL (two iptables -S when
			// nothing is left) but the first DEL of the process that set
			// the network up, with its result cached and the pod's link
			// still holding the addresses the ADD gave it.
			if !intact || err != nil {
				if merr := sweepMasq(a.Name, st.PodUUID, a.Config); err == nil {
					err = merr
				}
			}
		}
		if err != nil {
			failed = append([]attached{a}, failed...)
			msgs = append(msgs, (&NetworkError{Network: a.Name, Err: err}).Error())
		}
	}
	if err := removeNetNS(st.NetNS); err != nil {
		msgs = append(msgs, err.Error())
	}
	if len(msgs) > 0 {
		st.Networks = failed
		_ = st.write(stateDir)
		return fmt.Errorf("pod %s: network teardown: %s", st.PodUUID, strings.Join(msgs, "; "))
	}
	if err := os.RemoveAll(filepath.Join(stateDir, cacheDir)); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(stateDir, stateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(stateDir) // only if empty
	return nil
}

// masqChainGone says whether a plugin's DEL failed only because an iptables
// chain it removes last is gone already: a DEL cut short (a killed gc) after
// it removed the chain, retried. iptables-nft reports that with exit status 2,
// which the plugins' "not exist" check (exit status 1 only) does not take for
// missing, so without this the retry would fail for ever and the pod could
// never be collected. Everything before the chain's removal (IPAM, the link)
// was done by the DEL that removed it; the leak checks in the tests see the
// rest.
func masqChainGone(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "iptables") && strings.Contains(msg, "Chain '") && strings.Contains(msg, "' does not exist")
}

// withPrevResult gives each plugin of l prevResult r (libcni adds its cached
// result only when it has one).
func withPrevResult(l *libcni.NetworkConfigList, r types.Result) *libcni.NetworkConfigList {
	if r == nil {
		return l
	}
	out := *l
	out.Plugins = nil
	for _, p := range l.Plugins {
		q, err := libcni.InjectConf(p, map[string]any{"prevResult": r})
		if err != nil {
			return l
		}
		out.Plugins = append(out.Plugins, q)
	}
	return &out
}

func newCNI(stateDir string, pluginDirs []string, log io.Writer) *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir(pluginDirs, filepath.Join(stateDir, cacheDir), &pluginExec{stderr: log})
}

// cniArgs adds IgnoreUnknown=1 to args, as every runtime does: a plugin
// that does not know IP= (bridge, ptp) then leaves it to the one that does
// (host-local).
func cniArgs(args [][2]string) [][2]string {
	if len(args) == 0 {
		return nil
	}
	return append([][2]string{{"IgnoreUnknown", "1"}}, args...)
}

// reservePorts validates the port mappings and binds each host port, which
// both checks that it is free (portmap's DNAT would silently shadow a host
// service or another pod) and keeps it for this pod. It returns the index of
// the network that forwards them (-1 without ports) and the bound sockets.
func reservePorts(ports []PortMapping, confs []netConfig) (_ int, reserved []io.Closer, err error) {
	if len(ports) == 0 {
		return -1, nil, nil
	}
	defer func() {
		if err != nil {
			(&Result{reserved: reserved}).Release()
			reserved = nil
		}
	}()
	seen := map[string]bool{}
	for _, p := range ports {
		if p.PodPort == 0 {
			return -1, reserved, &PortError{Port: p, Err: ErrUnresolvedPort}
		}
		key := fmt.Sprintf("%d/%s", p.HostPort, p.Protocol)
		if seen[key] {
			return -1, reserved, &PortError{Port: p, Err: fmt.Errorf("host port %s is forwarded twice", key)}
		}
		seen[key] = true
		c, err := bindPort(p)
		if err != nil {
			return -1, reserved, &PortError{Port: p, Err: fmt.Errorf("%w (%v); choose another host port", ErrPortInUse, err)}
		}
		reserved = append(reserved, c)
	}
	for i, c := range confs {
		if hasCapability(c.list, "portMappings") {
			return i, reserved, nil
		}
	}
	return -1, reserved, &PortError{Port: ports[0], Err: fmt.Errorf("%w: no plugin of the pod's networks declares the portMappings capability (add portmap)", ErrNoPortForward)}
}

func bindPort(p PortMapping) (io.Closer, error) {
	addr := net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort))
	if p.Protocol == "udp" {
		return net.ListenPacket("udp", addr)
	}
	return net.Listen("tcp", addr)
}

// networkResult keeps what a pod's user cares about from a CNI result: the
// addresses of the pod's own interfaces, gateways, DNS.
func networkResult(a attached, r types.Result) (NetworkResult, error) {
	nr := NetworkResult{Name: a.Name, IfName: a.IfName}
	cr, err := current.NewResultFromResult(r)
	if err != nil {
		return nr, fmt.Errorf("read result: %w", err)
	}
	for _, ip := range cr.IPs {
		if ip.Interface != nil && *ip.Interface < len(cr.Interfaces) && cr.Interfaces[*ip.Interface].Sandbox == "" {
			continue // the host side
		}
		if p, ok := prefixOf(ip.Address); ok {
			nr.IPs = append(nr.IPs, p)
		}
		if g, ok := netip.AddrFromSlice(ip.Gateway); ok {
			nr.Gateways = append(nr.Gateways, g.Unmap())
		}
	}
	nr.DNS = cr.DNS
	return nr, nil
}

func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
