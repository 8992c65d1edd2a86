package main

import (
	"errors"
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/internal/idmap"
	"github.com/skiff-project/skiff/stage0/idrange"
	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage1/abi"
)

// --private-users: the pod runs in a user namespace of its own, with a range
// of abi.PrivateUsersSize host uids and gids that stage0 leases for it when it
// prepares it (package idrange; host-wide, whatever --dir), records in
// pod.json, passes to stage1 on every run and gives back when gc or rm
// removes the pod. stage1 shows the pod its image layers through idmapped
// mounts, so what stage0 can check beforehand it checks here: that those
// layers and the host volumes the user asked to idmap (idmap=true) are on
// filesystems that can be idmapped, and that the apps' ids fit in the range.
// Other host volumes are plain bind mounts, seen through the pod's range:
// the pod's root is host uid BASE there, and it cannot leave a file owned
// by host root (a setuid-root binary) in a host directory.

// usersAllocator is the host's uid/gid range allocator.
func usersAllocator() *idrange.Allocator {
	return &idrange.Allocator{
		Dir: idrange.DefaultDir, Pool: idrange.DefaultPool, Size: abi.PrivateUsersSize,
		Reserved: idrange.SubIDs("/etc/subuid", "/etc/subgid"),
		Alive: func(l idrange.Lease) bool {
			_, err := pod.Load(l.DataDir, l.Pod)
			return !errors.Is(err, pod.ErrNotFound)
		},
	}
}

// leaseUsers leases a range for the new pod p.
func leaseUsers(g *globals, p *pod.Pod) (*abi.IDRange, error) {
	dataDir, err := filepath.Abs(g.dir)
	if err != nil {
		return nil, err
	}
	r, err := usersAllocator().Allocate(idrange.Lease{Pod: p.UUID, DataDir: dataDir})
	if err != nil {
		return nil, fmt.Errorf("--private-users: %w", err)
	}
	return &r, nil
}

// releaseUsers gives back the range of pod p (manifest m), if it has one.
func releaseUsers(p *pod.Pod, m *abi.PodManifest) error {
	if m.PrivateUsers == nil {
		return nil
	}
	if err := usersAllocator().Release(*m.PrivateUsers, p.UUID); err != nil {
		return fmt.Errorf("pod %s: %w", p.UUID, err)
	}
	return nil
}

// checkIDMappable refuses layers and idmapped host volumes whose filesystems
// cannot be idmapped, before the pod exists.
func checkIDMappable(imgs []*store.Image, s1 abi.Stage1, vols []abi.Volume) error {
	ns, err := idmap.UserNS(idrange.DefaultPool.Base, abi.PrivateUsersSize)
	if err != nil {
		return fmt.Errorf("--private-users: %w", err)
	}
	defer ns.Close()
	layers := s1.Rootfs.Layers
	for _, img := range imgs {
		layers = append(layers, img.LayerDirs...)
	}
	for _, l := range layers {
		if err := idmap.Check(l, ns); err != nil {
			return fmt.Errorf("--private-users: image layer %w; keep skiff's --dir on ext4, xfs, btrfs or tmpfs, or run without --private-users", err)
		}
	}
	for _, v := range vols {
		if v.Kind != abi.VolumeHost || !v.IDMap {
			continue
		}
		if err := idmap.Check(v.Source, ns); err != nil {
			return fmt.Errorf("--private-users: volume %s: host source %w; use a directory on ext4, xfs, btrfs or tmpfs, or drop idmap", v.Name, err)
		}
	}
	return nil
}

// checkPrivateIDs refuses numeric ids that a pod with private users does not
// have (its ids are 0 to abi.PrivateUsersSize-1). Users named in the image
// are resolved by stage1, inside the pod.
func checkPrivateIDs(m *abi.PodManifest, appSpecs []*specs.Spec) error {
	for i, s := range appSpecs {
		u := s.Process.User
		ids := map[string][]uint32{"uid": {u.UID}, "gid": {u.GID}, "supplementary gid": u.AdditionalGids}
		if err := checkPrivateID(ids); err != nil {
			return fmt.Errorf("app %s: %w", m.Apps[i].Name, err)
		}
	}
	for _, v := range m.Volumes {
		if v.Kind != abi.VolumeEmpty {
			continue
		}
		if err := checkPrivateID(map[string][]uint32{"uid": {uint32(v.UID)}, "gid": {uint32(v.GID)}}); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	return nil
}

func checkPrivateID(ids map[string][]uint32) error {
	for what, list := range ids {
		for _, id := range list {
			if id >= abi.PrivateUsersSize {
				return fmt.Errorf("%s %d is outside the pod's private ids 0-%d (--private-users); use a smaller id or run without --private-users",
					what, id, abi.PrivateUsersSize-1)
			}
		}
	}
	return nil
}
