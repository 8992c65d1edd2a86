// Package podnet is a pod's network as every stage1 flavor sets it up from the
// run flags: CNI networks set up on the host side (package networking) in a
// network namespace of the pod's, the host's network, or a namespace with only
// loopback; the apps' /etc/resolv.conf and /etc/hosts; the networks recorded
// for status. Everything teardown needs lives in the pod's stage1/net
// directory, so gc can tear it down after a crash.
package podnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/networking"
	"github.com/skiff-project/skiff/stage1/abi"
)

// StateDir is the pod's network state, relative to the pod directory.
const StateDir = abi.Stage1Dir + "/net"

// Options are the run flags that shape the pod's network.
type Options struct {
	Net      string // --net
	ConfDirs []string
	Ports    []networking.PortMapping
	DNS      networking.DNSOptions
	Hosts    []networking.HostEntry
	Hostname string
	Debug    bool // plugins' stderr to ours
	// AnyUserLowPorts sets net.ipv4.ip_unprivileged_port_start to 0 in the
	// pod's CNI network namespace, as Docker does in every container's: a pod
	// with a user namespace of its own (--private-users) has no capability in
	// that namespace, which belongs to the host's user namespace, so its root
	// could not bind a port below 1024 otherwise.
	AnyUserLowPorts bool
}

// FromFlags parses the network part of the run flags.
func FromFlags(rf abi.RunFlags) (Options, error) {
	o := Options{Net: rf.Net, ConfDirs: rf.NetConfDirs, Hostname: rf.Hostname, Debug: rf.Debug,
		DNS: networking.DNSOptions{Servers: rf.DNS, Search: rf.DNSSearch, Options: rf.DNSOpt}}
	for _, p := range rf.Ports {
		pm, err := networking.ParsePort(p)
		if err != nil {
			return o, err
		}
		o.Ports = append(o.Ports, pm)
	}
	for _, h := range rf.HostsEntry {
		he, err := networking.ParseHostsEntry(h)
		if err != nil {
			return o, err
		}
		o.Hosts = append(o.Hosts, he)
	}
	return o, nil
}

// Net is the pod's network once set up.
type Net struct {
	Mode   networking.Mode
	Result *networking.Result // CNI networks only
	// Files are bind mounts of /etc/resolv.conf and /etc/hosts for every app
	// (sources absolute, under the pod directory).
	Files []specs.Mount
}

// Setup sets the pod's network up as o asks. The working directory is the
// pod directory.
func Setup(ctx context.Context, uuid string, o Options) (*Net, error) {
	nf, err := networking.ParseNetFlag(o.Net)
	if err != nil {
		return nil, err
	}
	n := &Net{Mode: nf.Mode}
	if nf.Mode == networking.ModeCNI {
		// The built-in networks' address leases are host-wide (the networking
		// package's default directory), whatever skiff's --dir: pods of two
		// data directories must not get the same address.
		req := networking.Request{
			PodUUID: uuid, StateDir: abs(StateDir), ConfDirs: o.ConfDirs, Networks: nf.Networks,
			Ports: o.Ports,
		}
		if o.Debug {
			req.Log = os.Stderr
		}
		if n.Result, err = networking.Setup(ctx, req); err != nil {
			return nil, err
		}
		if o.AnyUserLowPorts {
			if err := networking.SetSysctl(n.Result.NetNS, "net.ipv4.ip_unprivileged_port_start", "0"); err != nil {
				n.Teardown()
				return nil, err
			}
		}
	}
	if err := n.writeFiles(o); err != nil {
		n.Teardown()
		return nil, err
	}
	return n, nil
}

// NetNSPath is the namespace the pod joins ("" for its own or the host's).
func (n *Net) NetNSPath() string {
	if n.Result == nil {
		return ""
	}
	return n.Result.NetNS
}

// writeFiles writes the apps' resolv.conf and hosts and records the networks
// for status.
func (n *Net) writeFiles(o Options) error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return err
	}
	var results []networking.NetworkResult
	var ips []netip.Addr
	var status []abi.NetworkStatus
	if n.Result != nil {
		results, ips = n.Result.Networks, n.Result.IPs()
		for _, r := range results {
			st := abi.NetworkStatus{Name: r.Name, IfName: r.IfName}
			for _, ip := range r.IPs {
				st.IPs = append(st.IPs, ip.String())
			}
			status = append(status, st)
		}
	}
	if err := abi.WriteJSON(abi.NetworksFile, status); err != nil {
		return err
	}
	hostConf, _ := os.ReadFile("/etc/resolv.conf")
	if n.Mode == networking.ModeNone && len(o.DNS.Servers) == 0 {
		o.DNS.Servers = []string{networking.DNSNone} // no way out: keep the image's
	}
	if resolv := networking.ResolvConf(o.DNS, hostConf, results...); resolv != nil {
		if err := n.addFile("resolv.conf", resolv); err != nil {
			return err
		}
	}
	return n.addFile("hosts", networking.Hosts(o.Hostname, ips, o.Hosts))
}

func (n *Net) addFile(name string, data []byte) error {
	p := filepath.Join(StateDir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return err
	}
	n.Files = append(n.Files, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: abs(p), Options: []string{"bind", "ro"}})
	return nil
}

// Teardown undoes the CNI setup and gives up the pod's host ports; safe to
// call more than once.
func (n *Net) Teardown() error {
	if n == nil || n.Mode != networking.ModeCNI {
		return nil
	}
	defer n.Result.Release()
	if err := n.Result.Teardown(context.Background(), abs(StateDir)); err != nil {
		return fmt.Errorf("tear the pod's network down: %w", err)
	}
	return nil
}

// TeardownDir undoes the CNI setup of the pod whose directory is podDir, from
// what Setup recorded there: gc's way after a crash of run. Safe to call more
// than once, and when the pod had no CNI network.
func TeardownDir(podDir string) error {
	if err := networking.Teardown(context.Background(), abs(filepath.Join(podDir, StateDir))); err != nil {
		return fmt.Errorf("tear the pod's network down: %w", err)
	}
	return nil
}

func abs(p string) string {
	a, _ := filepath.Abs(p)
	return a
}
