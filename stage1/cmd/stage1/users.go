package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/idmap"
	"github.com/skiff-project/skiff/internal/mnt"
	"github.com/skiff-project/skiff/internal/overlay"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
)

// Private users (--private-users, abi.RunFlags.PrivateUsers). The whole pod
// runs in a user namespace of its own in which ids 0 to SIZE-1 are host ids
// BASE to BASE+SIZE-1: the pod's root is host uid BASE, powerless outside.
//
// The image layers stay as they are on disk (owned by host root and by the
// image's users) and are shared with other pods. The pod sees them through
// idmapped mounts (internal/idmap): run mounts an idmapped copy of each layer
// directory under s1IDMap, mounts the stage1 overlay and every app's overlay
// over those on the host, then detaches the copies (overlayfs keeps its own).
// Overlayfs itself cannot be idmapped, and the sandbox, whose root is not the
// host's, could not make idmapped mounts, so the apps' overlays are mounted
// here rather than by libcontainer; the sandbox takes them along with the
// stage1 rootfs. The overlays' upper and work directories, the apps'
// directories (app-exited writes there) and the stdio socket belong to the
// pod's root; empty volumes to the shifted owner they ask for. Host volumes
// are plain bind mounts seen through the pod's range (its root is host uid
// BASE there, host root's files are nobody's), as podman's without :idmap;
// one the user asked to idmap (idmap=true) comes from stage0 with the
// runtime-spec option idmap or ridmap, and libcontainer mounts it idmapped
// through the pod's mapping, so the pod's ids are the host's within it.
//
// The stage1 rootfs is mounted in rootfsUsersDir rather than in the pod
// directory: libcontainer's init, root only in the pod's namespace, must be
// able to walk to it, and the pod directory is private to host root. As in
// the pod directory, the host's mount goes once the sandbox has started; the
// empty mount point stays while the pod runs (libcontainer starts enter's
// process there) and goes with the pod.

// rootfsUsersDir holds the stage1 rootfs mount points of pods with private
// users. Other users may walk it.
const rootfsUsersDir = "/run/skiff/rootfs"

// s1IDMap holds the idmapped copies of the layer directories while the
// overlays are mounted.
const s1IDMap = abi.Stage1Dir + "/idmap"

// podUsers is what run needs for a pod with private users; nil for a pod
// without.
type podUsers struct {
	// uids and gids are the pod's mappings: one range, the same for both,
	// with --private-users; the bundle's in OCI mode (oci_users.go).
	uids, gids []specs.LinuxIDMapping
	ns         *os.File          // a user namespace with the pod's mapping (for idmapped mounts)
	staged     map[string]string // layer directory -> its idmapped copy
}

// newPodUsers makes the pod's idmapping (nil for a pod without private users).
func newPodUsers(ids abi.IDRange) (*podUsers, error) {
	if ids.Size == 0 {
		return nil, nil
	}
	ns, err := idmap.UserNS(ids.Base, ids.Size)
	if err != nil {
		return nil, fmt.Errorf("--private-users: %w", err)
	}
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: ids.Base, Size: ids.Size}}
	return &podUsers{uids: m, gids: m, ns: ns, staged: map[string]string{}}, nil
}

// mapping is the pod's id mapping for its sandbox (nil: no user namespace).
func (u *podUsers) mapping() *specs.LinuxIDMapping {
	if u == nil {
		return nil
	}
	return &u.uids[0]
}

// hostID is the host uid of uid id in the pod.
func (u *podUsers) hostID(id int) int {
	if u == nil {
		return id
	}
	return hostIDIn(u.uids, id)
}

// hostGID is the host gid of gid id in the pod.
func (u *podUsers) hostGID(id int) int {
	if u == nil {
		return id
	}
	return hostIDIn(u.gids, id)
}

// hostIDIn is the host id of id through ms; an id ms does not map becomes
// the overflow id, nobody (65534), as the kernel shows it.
func hostIDIn(ms []specs.LinuxIDMapping, id int) int {
	for _, m := range ms {
		if id >= int(m.ContainerID) && id-int(m.ContainerID) < int(m.Size) {
			return int(m.HostID) + id - int(m.ContainerID)
		}
	}
	return 65534
}

// own gives paths to the pod's root (nothing without private users).
func (u *podUsers) own(paths ...string) error {
	if u == nil {
		return nil
	}
	for _, p := range paths {
		if err := os.Lchown(p, u.hostID(0), u.hostGID(0)); err != nil {
			return fmt.Errorf("--private-users: give %s to the pod's root: %w", p, err)
		}
	}
	return nil
}

// ownTree shifts the owners of everything below dir into the pod's range.
func (u *podUsers) ownTree(dir string) error {
	if u == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if err := os.Lchown(p, u.hostID(int(st.Uid)), u.hostGID(int(st.Gid))); err != nil {
			return fmt.Errorf("--private-users: give %s to the pod: %w", p, err)
		}
		return nil
	})
}

// ownPodDirs gives the pod's root what it writes to: the overlays' upper and
// work directories and the apps' directories.
func (u *podUsers) ownPodDirs(m *abi.PodManifest) error {
	if err := u.ownTree(s1Upper); err != nil {
		return err
	}
	dirs := []string{s1Work}
	for _, a := range m.Apps {
		d := filepath.Join(abi.AppsDir, a.Name)
		dirs = append(dirs, d, filepath.Join(d, "upper"), filepath.Join(d, "work"))
	}
	return u.own(dirs...)
}

// lowers are the idmapped copies of layers, made on first use.
func (u *podUsers) lowers(layers []string) ([]string, error) {
	out := make([]string, len(layers))
	for i, l := range layers {
		if c, ok := u.staged[l]; ok {
			out[i] = c
			continue
		}
		c := abs(filepath.Join(s1IDMap, strconv.Itoa(len(u.staged))))
		if err := os.MkdirAll(c, 0o700); err != nil {
			return nil, err
		}
		if err := idmap.Mount(l, c, u.ns); err != nil {
			if errors.Is(err, idmap.ErrUnsupported) {
				return nil, fmt.Errorf("--private-users: image layer %w; keep skiff's --dir on ext4, xfs, btrfs or tmpfs, or run without --private-users", err)
			}
			return nil, fmt.Errorf("--private-users: %w", err)
		}
		u.staged[l] = c
		out[i] = c
	}
	return out, nil
}

// unstage detaches the idmapped copies (the overlays keep theirs) and lets
// the user namespace go.
func (u *podUsers) unstage() {
	for _, c := range u.staged {
		_ = unix.Unmount(c, unix.MNT_DETACH)
		_ = os.Remove(c)
	}
	_ = os.Remove(s1IDMap)
	u.staged = nil
	u.ns.Close()
}

// mountRootfs mounts the stage1 rootfs in rootfsUsersDir and every app's
// rootfs at its place in it, all over idmapped layers.
func (u *podUsers) mountRootfs(m *abi.PodManifest) (rootfs string, err error) {
	defer u.unstage()
	rootfs = filepath.Join(rootfsUsersDir, m.UUID)
	if err := os.MkdirAll(rootfs, 0o711); err != nil {
		return "", err
	}
	// The pod's root must walk from / to rootfs: /run/skiff may have been made
	// private (0700) by whatever made it first (the localnet lock, an older
	// skiff), so both directories are made walkable here, not only when
	// MkdirAll creates them.
	for _, d := range []string{filepath.Dir(rootfsUsersDir), rootfsUsersDir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return "", err
		}
	}
	defer func() {
		if err != nil {
			_ = removeUsersRootfs(m.UUID)
		}
	}()
	lowers, err := u.lowers(m.Stage1.Rootfs.Layers)
	if err != nil {
		return "", err
	}
	if err := overlay.Mount(lowers, s1Upper, s1Work, rootfs); err != nil {
		return "", err
	}
	for _, a := range m.Apps {
		if lowers, err = u.lowers(a.Rootfs.Layers); err != nil {
			return "", err
		}
		target := filepath.Join(rootfs, appexec.AppRoot(a.Name))
		if err := u.mkdirAll(rootfs, appexec.AppRoot(a.Name)); err != nil {
			return "", err
		}
		d := filepath.Join(abi.AppsDir, a.Name)
		if err := overlay.Mount(lowers, filepath.Join(d, "upper"), filepath.Join(d, "work"), target); err != nil {
			return "", fmt.Errorf("app %s: %w", a.Name, err)
		}
	}
	return rootfs, nil
}

// mkdirAll makes rel in root, each new directory owned by the pod's root.
func (u *podUsers) mkdirAll(root, rel string) error {
	if rel == "/" || rel == "." {
		return nil
	}
	if err := u.mkdirAll(root, filepath.Dir(rel)); err != nil {
		return err
	}
	p := filepath.Join(root, rel)
	if err := os.Mkdir(p, 0o755); errors.Is(err, os.ErrExist) {
		return nil
	} else if err != nil {
		return err
	}
	return u.own(p)
}

// removeRootfs removes the pod's stage1 rootfs mount point (nothing without
// private users).
func (u *podUsers) removeRootfs(uuid string) error {
	if u == nil {
		return nil
	}
	return removeUsersRootfs(uuid)
}

// removeUsersRootfs removes a private-users pod's stage1 rootfs mount point
// in rootfsUsersDir, and the mount itself if a crash left it.
func removeUsersRootfs(uuid string) error {
	return mnt.DetachAndRemove(filepath.Join(rootfsUsersDir, uuid))
}
