package main

// The bundle's user namespace (OCI mode): a user namespace in
// linux.namespaces without a path is created with the bundle's uidMappings
// and gidMappings (several ranges each, as runc takes them), and the whole
// container, systemd as its PID 1 and the app, runs in it. It is
// --private-users with the bundle's mappings (users.go): the stage1 rootfs
// is an overlay of idmapped copies of the stage1's layers, mounted in
// rootfsUsersDir, so that the container's root owns what the host's root
// owns there; the stage1's files stay read-only to it (the sandbox's root
// is mounted read-only), and the pod's writable directories and its cgroup
// are given to the host ids of its root. The bundle's rootfs is bind-mounted
// as it is, seen through the mappings (as runc shows it: a host id the
// bundle does not map is nobody). Nothing of the host is reachable through
// ids the bundle does not map. A user namespace given by path is joined
// (libcontainer joins it first and makes the other namespaces in it), its
// mappings read as libcontainer reads them, and the stage1's layers are
// idmapped through it.

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/internal/idmap"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/container"
)

// ociUserNS returns the bundle's user namespace entry (nil: none).
func ociUserNS(l *specs.Linux) *specs.LinuxNamespace {
	for i, n := range l.Namespaces {
		if n.Type == specs.UserNamespace {
			return &l.Namespaces[i]
		}
	}
	return nil
}

// checkOCIUsers refuses a user namespace this flavor cannot honour, and
// mappings without one.
func checkOCIUsers(l *specs.Linux) error {
	n := ociUserNS(l)
	if n == nil {
		if len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0 {
			return errors.New("linux.uidMappings/gidMappings are given without a user namespace; add {\"type\": \"user\"} to linux.namespaces or drop the mappings")
		}
		return nil
	}
	if n.Path != "" {
		return nil // its mappings are checked once read (newOCIUsers)
	}
	for _, k := range []struct {
		name string
		ms   []specs.LinuxIDMapping
	}{{"uidMappings", l.UIDMappings}, {"gidMappings", l.GIDMappings}} {
		if len(k.ms) == 0 {
			return fmt.Errorf("linux.namespaces asks for a new user namespace without linux.%s; give them", k.name)
		}
		if !mapsZero(k.ms) {
			return fmt.Errorf("linux.%s does not map id 0: systemd, the container's init, runs as the user namespace's root; map containerID 0", k.name)
		}
		for _, m := range k.ms {
			if m.Size == 0 || uint64(m.HostID)+uint64(m.Size) > 1<<32-1 || uint64(m.ContainerID)+uint64(m.Size) > 1<<32-1 {
				return fmt.Errorf("linux.%s: range %d %d %d is empty or beyond 2^32-1", k.name, m.ContainerID, m.HostID, m.Size)
			}
		}
	}
	return nil
}

func mapsZero(ms []specs.LinuxIDMapping) bool {
	for _, m := range ms {
		if m.ContainerID == 0 && m.Size > 0 {
			return true
		}
	}
	return false
}

// newOCIUsers is the container's podUsers for a bundle with a user
// namespace (nil without), with a user namespace of its mappings for the
// idmapped stage1 layers: a new one, or the one the bundle joins by path
// (its mappings read as libcontainer reads them; mappings the bundle gives
// too must be the same, as runc requires).
func newOCIUsers(l *specs.Linux) (*podUsers, error) {
	n := ociUserNS(l)
	if n == nil {
		return nil, nil
	}
	// The container's processes hold no host group: a user namespace that
	// denies setgroups(2) would let them keep the caller's (all threads).
	if err := syscall.Setgroups([]int{}); err != nil {
		return nil, fmt.Errorf("drop supplementary groups: %w", err)
	}
	if n.Path != "" {
		uids, gids, err := container.UserNSMappings(n.Path)
		if err != nil {
			return nil, fmt.Errorf("linux.namespaces: user path %s: read its mappings: %w", n.Path, err)
		}
		if len(l.UIDMappings)+len(l.GIDMappings) > 0 && (!sameMappings(uids, l.UIDMappings) || !sameMappings(gids, l.GIDMappings)) {
			return nil, fmt.Errorf("linux.namespaces: user path %s has other mappings than linux.uidMappings/gidMappings; drop them", n.Path)
		}
		if !mapsZero(uids) || !mapsZero(gids) {
			return nil, fmt.Errorf("linux.namespaces: user path %s does not map id 0: systemd, the container's init, runs as the user namespace's root; join one that maps it", n.Path)
		}
		ns, err := os.Open(n.Path)
		if err != nil {
			return nil, fmt.Errorf("linux.namespaces: user path %s: %w", n.Path, err)
		}
		return &podUsers{uids: uids, gids: gids, ns: ns, staged: map[string]string{}}, nil
	}
	conv := func(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
		out := make([]syscall.SysProcIDMap, len(ms))
		for i, m := range ms {
			out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
		}
		return out
	}
	ns, err := idmap.UserNSMappings(conv(l.UIDMappings), conv(l.GIDMappings))
	if err != nil {
		return nil, fmt.Errorf("linux.uidMappings/gidMappings: make the user namespace: %w; give ranges /proc/self/uid_map accepts", err)
	}
	return &podUsers{uids: l.UIDMappings, gids: l.GIDMappings, ns: ns, staged: map[string]string{}}, nil
}

// ociMountUsersRootfs mounts the stage1 rootfs over idmapped layers in
// rootfsUsersDir (the app's rootfs is the bundle's, bound by the sandbox)
// after giving the pod's writable directories to its root: those of
// --private-users, and the socket directory, where the stdio keeper, inside
// the container, listens.
func (u *podUsers) ociMountUsersRootfs(m *abi.PodManifest) (string, error) {
	err := u.ownPodDirs(m)
	if err == nil {
		err = u.own(s1Run)
	}
	if err != nil {
		u.unstage()
		return "", err
	}
	s1 := *m
	s1.Apps = nil
	return u.mountRootfs(&s1)
}

// sameMappings says whether a and b map the same ids (in any order).
func sameMappings(a, b []specs.LinuxIDMapping) bool {
	if len(a) != len(b) {
		return false
	}
	for _, m := range a {
		if !slices.Contains(b, m) {
			return false
		}
	}
	return true
}

// uidMappings and gidMappings are the container's mappings (nil: no user
// namespace).
func (u *podUsers) uidMappings() []specs.LinuxIDMapping {
	if u == nil {
		return nil
	}
	return u.uids
}

func (u *podUsers) gidMappings() []specs.LinuxIDMapping {
	if u == nil {
		return nil
	}
	return u.gids
}
