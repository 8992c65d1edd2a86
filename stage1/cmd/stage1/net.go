package main

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

// The pod's network: CNI networks set up on the host side before the sandbox
// starts (it joins their network namespace), the host's network, or a fresh
// namespace with only loopback (libcontainer makes it). Everything teardown
// needs lives in s1Net, so gc can tear it down after a crash.
const s1Net = abi.Stage1Dir + "/net"

type podNet struct {
	mode  networking.Mode
	res   *networking.Result
	files []specs.Mount // /etc/resolv.conf and /etc/hosts for every app
}

// setupNet sets the pod's network up as the run flags ask.
func setupNet(ctx context.Context, o runOpts, m *abi.PodManifest) (*podNet, error) {
	nf, err := networking.ParseNetFlag(o.Net)
	if err != nil {
		return nil, err
	}
	n := &podNet{mode: nf.Mode}
	if nf.Mode == networking.ModeCNI {
		// The built-in networks' address leases are host-wide (the networking
		// package's default directory), whatever skiff's --dir: pods of two
		// data directories must not get the same address.
		req := networking.Request{
			PodUUID: m.UUID, StateDir: abs(s1Net), ConfDirs: o.NetConfDirs, Networks: nf.Networks,
			Ports: o.ports,
		}
		if o.Debug {
			req.Log = os.Stderr
		}
		if n.res, err = networking.Setup(ctx, req); err != nil {
			return nil, err
		}
	}
	if err := n.writeFiles(o); err != nil {
		n.teardown()
		return nil, err
	}
	return n, nil
}

// netNSPath is the namespace the sandbox joins ("" for its own or the host's).
func (n *podNet) netNSPath() string {
	if n.res == nil {
		return ""
	}
	return n.res.NetNS
}

// writeFiles writes the apps' resolv.conf and hosts and records the networks
// for status.
func (n *podNet) writeFiles(o runOpts) error {
	if err := os.MkdirAll(s1Net, 0o755); err != nil {
		return err
	}
	var results []networking.NetworkResult
	var ips []netip.Addr
	var status []abi.NetworkStatus
	if n.res != nil {
		results, ips = n.res.Networks, n.res.IPs()
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
	if n.mode == networking.ModeNone && len(o.dns.Servers) == 0 {
		o.dns.Servers = []string{networking.DNSNone} // no way out: keep the image's
	}
	if resolv := networking.ResolvConf(o.dns, hostConf, results...); resolv != nil {
		if err := n.addFile("resolv.conf", resolv); err != nil {
			return err
		}
	}
	return n.addFile("hosts", networking.Hosts(o.Hostname, ips, o.hosts))
}

func (n *podNet) addFile(name string, data []byte) error {
	p := filepath.Join(s1Net, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return err
	}
	n.files = append(n.files, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: abs(p), Options: []string{"bind", "ro"}})
	return nil
}

// teardown undoes the CNI setup; safe to call more than once.
func (n *podNet) teardown() error {
	if n == nil || n.mode != networking.ModeCNI {
		return nil
	}
	defer n.res.Release()
	if err := networking.Teardown(context.Background(), abs(s1Net)); err != nil {
		return fmt.Errorf("tear the pod's network down: %w", err)
	}
	return nil
}
