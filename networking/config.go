package networking

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// Address ranges of the built-in networks (rkt used 172.16.28.0/24 for default).
const (
	DefaultSubnet           = "172.16.28.0/24"
	DefaultRestrictedSubnet = "172.16.29.0/24"
)

// Default locations.
const (
	DefaultNetNSDir = "/run/skiff/netns"            // persistent netns bind mounts, one per pod
	DefaultIPAMDir  = "/var/lib/skiff/cni/networks" // host-local leases of the built-in networks
)

// ErrUnknownNetwork: no configuration has the network's name.
var ErrUnknownNetwork = errors.New("no such network")

// ErrPluginNotFound: a plugin binary is in none of the plugin directories.
var ErrPluginNotFound = errors.New("plugin not found")

// builtinOptions shape the built-in networks for one pod: plugins the pod does
// not need are left out, since every plugin costs iptables calls at ADD and DEL.
type builtinOptions struct {
	ipamDir  string // host-local leases
	ports    bool   // the pod forwards ports: chain portmap
	firewall bool   // the host's FORWARD policy drops: chain the firewall plugin (Setup's prepareDefault asks)
}

// builtin returns the conflist of a built-in network.
//
//   - default: ptp veth, host-local in DefaultSubnet, a default route,
//     masquerade (SKIFF-MASQ for the subnet, not the plugin's ipMasq:
//     subnetmasq.go); port forwarding (portmap with snat, so 127.0.0.1
//     works) when the pod forwards ports; the firewall plugin (accepts the
//     pod's traffic in FORWARD) when the host's FORWARD policy is DROP.
//   - default-restricted: ptp, host-local in DefaultRestrictedSubnet, no
//     default route and no masquerade: the pod reaches the host, nothing
//     further; port forwarding still works.
func builtin(name string, o builtinOptions) ([]byte, bool) {
	ipam := func(subnet string, routes ...map[string]string) map[string]any {
		m := map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": subnet}}}, "dataDir": o.ipamDir}
		if len(routes) > 0 {
			m["routes"] = routes
		}
		return m
	}
	var plugins []any
	switch name {
	case NetDefault:
		// Masqueraded by SKIFF-MASQ for the whole subnet (subnetmasq.go).
		plugins = []any{map[string]any{"type": "ptp", "ipMasq": false, "ipam": ipam(DefaultSubnet, map[string]string{"dst": "0.0.0.0/0"})}}
		if o.firewall {
			plugins = append(plugins, map[string]any{"type": "firewall", "backend": "iptables"})
		}
	case NetDefaultRestricted:
		plugins = []any{map[string]any{"type": "ptp", "ipMasq": false, "ipam": ipam(DefaultRestrictedSubnet)}}
	default:
		return nil, false
	}
	if o.ports {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	}
	b, err := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": name, "plugins": plugins})
	return b, err == nil
}

// forwardDrops tells whether the host's iptables FORWARD policy is DROP, so a
// NATed pod needs the firewall plugin to let its traffic through.
func forwardDrops() bool {
	out, err := exec.Command("iptables", "-w", "-S", "FORWARD", "1").Output()
	if err != nil {
		return false
	}
	return strings.HasPrefix(string(out), "-P FORWARD DROP")
}

// netConfig is one network's configuration, ready for libcni.
type netConfig struct {
	list   *libcni.NetworkConfigList
	source string // file name, or "built-in"
}

// loadNetworks finds each named network: the first file in confDirs (in
// order, each in lexical order) whose "name" matches, else a built-in one.
// Every .conflist and .conf in confDirs must parse: a broken file is an error
// even when another network is asked for, so it is found early.
func loadNetworks(names, confDirs []string, bo builtinOptions) ([]netConfig, error) {
	found := map[string]netConfig{}
	for _, dir := range confDirs {
		files, err := libcni.ConfFiles(dir, []string{".conflist", ".conf", ".json"})
		if err != nil {
			return nil, fmt.Errorf("network configuration directory %s: %w", dir, err)
		}
		for _, f := range files {
			l, err := loadFile(f)
			if err != nil {
				return nil, err
			}
			if _, dup := found[l.Name]; !dup {
				found[l.Name] = netConfig{list: l, source: f}
			}
		}
	}
	out := make([]netConfig, 0, len(names))
	for _, name := range names {
		c, ok := found[name]
		if !ok {
			b, isBuiltin := builtin(name, bo)
			if !isBuiltin {
				return nil, &NetworkError{Network: name, Err: fmt.Errorf("%w: no .conflist or .conf named %q in %s and no built-in one (built-in: %s, %s)",
					ErrUnknownNetwork, name, strings.Join(confDirs, ", "), NetDefault, NetDefaultRestricted)}
			}
			l, err := libcni.NetworkConfFromBytes(b)
			if err != nil {
				return nil, &NetworkError{Network: name, Err: err}
			}
			c = netConfig{list: l, source: "built-in"}
		}
		out = append(out, c)
	}
	return out, nil
}

// loadFile reads a .conflist, or a single-plugin .conf wrapped as a list.
func loadFile(path string) (*libcni.NetworkConfigList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bad := func(err error) error {
		var head struct{ Name string }
		if json.Unmarshal(b, &head) == nil && head.Name != "" {
			return &NetworkError{Network: head.Name, Err: fmt.Errorf("malformed configuration %s: %w", path, err)}
		}
		return fmt.Errorf("malformed network configuration %s: %w", path, err)
	}
	var l *libcni.NetworkConfigList
	if filepath.Ext(path) == ".conflist" {
		l, err = libcni.NetworkConfFromBytes(b)
		if err == nil && len(l.Plugins) == 0 {
			err = errors.New("no plugins")
		}
	} else {
		var c *libcni.PluginConfig
		if c, err = libcni.NetworkPluginConfFromBytes(b); err == nil {
			l, err = libcni.ConfListFromConf(c)
		}
	}
	if err != nil {
		return nil, bad(err)
	}
	if l.Name == "" {
		return nil, bad(errors.New("no name"))
	}
	return l, nil
}

// checkPlugins makes sure each plugin of the list, and each IPAM plugin it
// delegates to, exists in pluginDirs: failing here costs nothing to undo.
func checkPlugins(l *libcni.NetworkConfigList, pluginDirs []string) error {
	for _, p := range l.Plugins {
		types := []string{p.Network.Type}
		if p.Network.IPAM.Type != "" {
			types = append(types, p.Network.IPAM.Type)
		}
		for _, t := range types {
			if _, err := invoke.FindInPath(t, pluginDirs); err != nil {
				return fmt.Errorf("%w: %q is in none of %s; install containernetworking-plugins or set CNI_PATH",
					ErrPluginNotFound, t, strings.Join(pluginDirs, ":"))
			}
		}
	}
	return nil
}

// hasCapability tells whether a plugin of the list declares capability c.
func hasCapability(l *libcni.NetworkConfigList, c string) bool {
	for _, p := range l.Plugins {
		if p.Network.Capabilities[c] {
			return true
		}
	}
	return false
}

// DefaultPluginDirs are where plugins are looked for: $CNI_PATH, then
// Debian's /usr/lib/cni, then the upstream /opt/cni/bin.
func DefaultPluginDirs() []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv("CNI_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return append(dirs, "/usr/lib/cni", "/opt/cni/bin")
}
