// Package vmnet gives the kvm stage1's microVM the pod's CNI interfaces: the
// guest's NICs take over the identities of eth0, eth1, … in the pod's
// network namespace, so that the network looks to everyone outside the VM
// exactly as it does with the default stage1.
//
// # The interworking model: tc redirect
//
// It is kata-containers' "tcfilter" model (firecracker's tc-redirect-tap
// plugin does the same). networking.Setup leaves the pod's network namespace
// holding ethN (for the built-in networks a ptp veth) with the pod's MAC,
// addresses and routes. On the host, [Attach] creates beside each ethN a tap
// device tapN in the same namespace and ties the two together with tc: an
// ingress qdisc on each and a u32 match-all filter whose action is a mirred
// egress redirect to the other. Every frame that arrives on ethN leaves
// through tapN, to QEMU (which holds the tap's file) and the guest's
// virtio-net NIC; every frame the guest sends leaves through ethN. The guest's
// NIC has ethN's MAC, MTU, addresses and routes ([Iface], which the host
// writes into the guest's configuration and [Configure] applies inside the
// guest), so for the host's veth end, the host's routes, portmap's DNAT (from
// 127.0.0.1 too), the masquerade rules and other pods, the guest is the pod:
// the CNI plugins and their configuration do not change at all.
//
// Why not something else:
//   - A bridge of ethN and tapN: a bridge port's addresses are not used, so
//     the pod's address would have to move to the bridge (where the
//     namespace's own stack, not the guest, would answer for it) or be
//     removed (and ptp's DEL then leaks masquerade rules, see below). A
//     bridge also learns MACs, floods unknown destinations and, where
//     br_netfilter is loaded, runs every frame through netfilter in the
//     namespace too. Two redirect filters forward every frame as it is.
//   - Routing or proxy ARP in the namespace: the guest would need addresses
//     other than the pod's (or the namespace NAT), packets would be routed
//     (TTL, rp_filter, conntrack in the namespace), and the host would see
//     the namespace's MAC instead of the pod's. The redirect is layer 2 and
//     transparent to whatever the CNI plugin set up, IPv6 neighbour discovery
//     included.
//
// # What stays in the namespace, and teardown
//
// ethN keeps its addresses and routes. The namespace's IP stack never sees
// a frame that arrives on ethN (the ingress redirect takes it first), so it
// cannot answer ARP or neighbour solicitations for the pod's address, send
// resets, or otherwise compete with the guest; and the CNI DEL of ptp and
// bridge reads ethN's addresses to find the masquerade rules to remove, so
// flushing them would leak those rules at teardown (networking keeps a
// stand-in interface with the pod's addresses for the same reason). The one
// effect: a process inside the namespace that connects to the pod's address
// reaches the namespace itself, not the guest; skiff runs none there. The
// taps get no IPv6 link-local address, so the namespace never sends anything
// to the guest itself.
//
// Nothing needs tearing down: the taps are not persistent, so each goes away
// when its last file is closed (QEMU's, once run closed its own copy), and
// with the namespace in any case; the tap file holds a reference on the
// namespace, so networking.Teardown's unmount frees it when QEMU has exited.
// The qdiscs and filters belong to ethN and the tap and go with them; ethN
// itself is deleted by the plugins' DEL in networking.Teardown.
//
// # What each side needs
//
// Host kernel: tun, sch_ingress, cls_u32 and act_mirred (cls_matchall is not
// needed: a u32 filter with one zero key matches everything). The taps are
// opened without IFF_VNET_HDR; QEMU, given the tap's fd, sees that itself
// ([Link.QEMUArgs] renders its arguments), and the host kernel segments and
// checksums in software what the veth passes with offloads.
//
// Guest: a virtio-net driver. Debian's kernel builds it as a module; the
// initramfs must load failover, net_failover and virtio_net, in that order,
// after the virtio transport (virtio_mmio on microvm). The guest's init calls
// [Configure] once the modules are loaded and before it starts the apps; it
// uses netlink only (the guest has no ip binary).
//
// Use:
//
//	// host (stage1-kvm run), after networking.Setup:
//	links, err := vmnet.Attach(res.NetNS, ifNames) // ifNames from res.Networks[i].IfName
//	cfg.Net = vmnet.Ifaces(links)                  // into the guest's config file
//	for i, l := range links {
//		cmd.ExtraFiles = append(cmd.ExtraFiles, l.Tap) // QEMU's fd 3+index
//		args = append(args, l.QEMUArgs(fmt.Sprintf("net%d", i), 2+len(cmd.ExtraFiles))...)
//	}
//	// after QEMU started: close every l.Tap (QEMU holds its own copy)
//
//	// guest (init), after loading the modules:
//	err := vmnet.Configure(cfg.Net)
package vmnet
