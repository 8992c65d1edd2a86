// Package podfs is the part of a pod's filesystem every stage1 flavor builds
// the same way, whatever runs the pod: the mounts that turn an app's rootfs
// into what the app sees (its own /proc, /sys and a minimal /dev, its volumes,
// hidden and read-only kernel paths, a read-only remount when asked), and the
// pod's empty volumes. The default flavor hands the mounts to libcontainer;
// the kvm flavor's guest init makes them itself.
package podfs

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/stage1/abi"
)

// App is what an app's filesystem is made of, beyond its rootfs.
type App struct {
	Root          string        // where the app's rootfs is mounted, in the stage1 rootfs
	Mounts        []specs.Mount // volumes: Destination inside the app, Source as the mounter sees it
	Readonly      bool          // the rootfs is read-only (volumes keep their own mode)
	MaskedPaths   []string      // kernel paths hidden from the app
	ReadonlyPaths []string      // kernel paths the app may only read
	UserNS        bool          // the pod has a user namespace of its own (see Sysfs)
	// Layers, when the rootfs is not mounted at Root yet, are the overlay
	// it will be (topmost first: the upper directory, then the lower
	// layers); mount targets are looked up in them (see ResolveLayers).
	Layers []string
}

// ResolveMounts are the mounts that follow the app's rootfs mount at a.Root, in
// order: /proc, read-only /sys, a minimal /dev (tmpfs with null, zero, full,
// random, urandom and tty bound from the stage1's /dev, its own devpts and
// shm), the volumes, the masked and read-only kernel paths, and finally a
// read-only remount of the rootfs when asked. Destinations are in the stage1
// rootfs; stage1Rootfs is where the mounter sees that rootfs (sources of
// remounts are under it).
//
// Every target is resolved inside the app's rootfs (see Resolve): a symlink
// in the image is followed as if the app's root were "/", so no target is
// ever outside the app's rootfs, whatever the image's links say. A target
// is looked up in the tree as the mounts before it leave it: below /proc,
// /sys and /dev the image's own files are hidden, so a symlink the image
// plants there (at /proc/sys, /dev/null) moves nothing; below a volume its
// source decides. A mount that would cover the app's root is an error.
func ResolveMounts(stage1Rootfs string, a App) ([]specs.Mount, error) {
	dest := a.Root
	var rerr error
	fail := func(err error) {
		if rerr == nil {
			rerr = err
		}
	}
	var image lookupFunc
	if len(a.Layers) > 0 {
		image = layersLookup(a.Layers)
	} else {
		image = diskLookup(filepath.Join(stage1Rootfs, dest))
	}
	var made []mounted // the mounts so far, in the app's terms
	// resolveAt is p's place in the app's rootfs (no leading "/"), as the
	// mounts made so far leave the tree: below a mount point the mounted
	// file system decides, not the image's files it hides.
	resolveAt := func(p string) string {
		r, err := resolve(stackLookup(image, made), p)
		if err != nil {
			fail(err)
			r = filepath.Clean("/" + p)
		}
		return strings.TrimPrefix(r, "/")
	}
	var ms []specs.Mount
	add := func(p string, m specs.Mount) string { // p's mount, in order
		rel := resolveAt(p)
		m.Destination = filepath.Join(dest, rel)
		ms = append(ms, m)
		made = append(made, mounted{at: rel, lookup: mountLookup(m)})
		return rel
	}
	nse := []string{"nosuid", "noexec", "nodev"}
	add("/proc", specs.Mount{Type: "proc", Source: "proc", Options: nse})
	add("/sys", Sysfs("", a.UserNS))
	add("/dev", specs.Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}})
	if a.UserNS { // an empty /sys/fs/cgroup, as a fresh sysfs has (see Sysfs)
		add("/sys/fs/cgroup", specs.Mount{Type: "tmpfs", Source: "tmpfs",
			Options: []string{"ro", "nosuid", "noexec", "nodev", "size=0", "mode=755"}})
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		add("/dev/"+d, specs.Mount{Type: "bind", Source: "/dev/" + d, Options: []string{"bind", "nosuid", "noexec"}})
	}
	add("/dev/pts", specs.Mount{Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}})
	add("/dev/shm", specs.Mount{Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	for _, m := range a.Mounts {
		if add(m.Destination, m) == "" {
			fail(fmt.Errorf("mount target %s is the app's root directory (the image's symlinks lead there); mount it elsewhere", m.Destination))
		}
	}
	// hidden and read-only kernel paths, in the kernel's file systems
	for _, p := range a.MaskedPaths {
		st, err := os.Stat(p) // this kernel's /proc and /sys: the app's kernel
		switch {
		case err != nil:
		case st.IsDir():
			add(p, specs.Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"ro", "nosuid", "nodev", "noexec", "size=0"}})
		default:
			add(p, specs.Mount{Type: "bind", Source: "/dev/null", Options: []string{"bind", "ro"}})
		}
	}
	for _, p := range a.ReadonlyPaths {
		if _, err := os.Stat(p); err == nil {
			// a remount of what is there: the tree does not change
			d := filepath.Join(dest, resolveAt(p))
			ms = append(ms, specs.Mount{Destination: d, Type: "bind", Source: filepath.Join(stage1Rootfs, d), Options: []string{"rbind", "ro"}})
		}
	}
	if a.Readonly {
		ms = append(ms, specs.Mount{Destination: dest, Type: "bind", Source: filepath.Join(stage1Rootfs, dest), Options: []string{"rbind", "ro"}})
	}
	if rerr != nil {
		return nil, rerr
	}
	return ms, nil
}

// mounted is a mount made in an app's rootfs: where (relative to the app's
// root, "" for the root itself), and how to look paths up below it.
type mounted struct {
	at     string
	lookup lookupFunc
}

// stackLookup looks paths up in an app's rootfs with mounts made on it: the
// last mount at or above a path decides (a mount point itself is never a
// symlink), else the image.
func stackLookup(image lookupFunc, made []mounted) lookupFunc {
	return func(rel string) (entry, error) {
		for i := len(made) - 1; i >= 0; i-- {
			at := made[i].at
			switch {
			case rel == at:
				return entry{exists: true}, nil
			case at == "":
				return made[i].lookup(rel)
			case strings.HasPrefix(rel, at+"/"):
				return made[i].lookup(rel[len(at)+1:])
			}
		}
		return image(rel)
	}
}

// mountLookup looks paths up below mount m: a bind mount's source as the
// mounter sees it, nothing in a fresh tmpfs, and in a kernel file system
// (proc, sysfs, devpts) every path as it is, with no symlink followed
// (the mounter opens it).
func mountLookup(m specs.Mount) lookupFunc {
	switch {
	case m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind"):
		return diskLookup(m.Source)
	case m.Type == "tmpfs":
		return func(string) (entry, error) { return entry{}, nil }
	default:
		return func(string) (entry, error) { return entry{exists: true}, nil }
	}
}

// Sysfs is a read-only /sys at dest: a fresh sysfs, or in a pod with a user
// namespace of its own (userns) a recursive read-only bind of the host's, as
// such a pod cannot mount sysfs for a network namespace it does not own (a
// CNI network's, or the host's). The host's cgroup hierarchies come along;
// the pod's init gets its cgroup2 over them, each app an empty tmpfs.
func Sysfs(dest string, userns bool) specs.Mount {
	nse := []string{"nosuid", "noexec", "nodev"}
	if userns {
		return specs.Mount{Destination: dest, Type: "bind", Source: "/sys", Options: append([]string{"rbind", "rro"}, nse...)}
	}
	return specs.Mount{Destination: dest, Type: "sysfs", Source: "sysfs", Options: append([]string{"ro"}, nse...)}
}

// FromSpec is an app's filesystem as its spec (apps/NAME/config.json)
// describes it. Sources of empty volumes are relative to the pod directory;
// they are made absolute under podDir.
func FromSpec(root, podDir string, spec *specs.Spec) App {
	a := App{Root: root}
	if spec.Root != nil {
		a.Readonly = spec.Root.Readonly
	}
	if spec.Linux != nil {
		a.MaskedPaths, a.ReadonlyPaths = spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Source) {
			m.Source = filepath.Join(podDir, m.Source)
		}
		a.Mounts = append(a.Mounts, m)
	}
	return a
}

// RootfsPaths splits an OCI bundle's masked and read-only paths: those in
// /proc and /sys (and relative ones) stay podfs's, which masks what this
// kernel has there; the others are in the app's rootfs (at rootfs, the
// bundle's), as runc allows, and become mounts after the bundle's (their
// Destination in the app's terms, as App.Mounts are): a bind
// of the path onto itself, read-only, for a read-only path; an empty
// read-only tmpfs on a masked directory, /dev/null on a masked file (as
// podfs masks). A path that does not exist in the rootfs is skipped, as
// runc does; so is a masked path in a directory masked before it, and one
// at or below a bundle mount's destination, whose content the rootfs does
// not show.
func RootfsPaths(l *specs.Linux, rootfs string, bundleMounts []specs.Mount) (masked, readonly []string, ms []specs.Mount) {
	inRootfs := func(p string) (string, os.FileInfo, bool) {
		c := path.Clean(p)
		if !path.IsAbs(p) || c == "/" || c == "/proc" || c == "/sys" ||
			strings.HasPrefix(c, "/proc/") || strings.HasPrefix(c, "/sys/") {
			return "", nil, false
		}
		for _, m := range bundleMounts {
			d := path.Clean(m.Destination)
			if c == d || strings.HasPrefix(c, d+"/") || d == "/" {
				return "", nil, true
			}
		}
		r, err := Resolve(rootfs, c)
		if err != nil || r == "/" {
			return "", nil, true
		}
		st, err := os.Lstat(filepath.Join(rootfs, r))
		if err != nil {
			return "", nil, true
		}
		return r, st, true
	}
	for _, p := range l.ReadonlyPaths {
		r, st, ours := inRootfs(p)
		switch {
		case !ours:
			readonly = append(readonly, p)
		case st != nil:
			ms = append(ms, specs.Mount{Destination: r, Type: "bind", Source: filepath.Join(rootfs, r),
				Options: []string{"rbind", "ro"}})
		}
	}
	var maskedDirs []string
	below := func(r string) bool {
		for _, d := range maskedDirs {
			if strings.HasPrefix(r, d+"/") {
				return true
			}
		}
		return false
	}
	for _, p := range l.MaskedPaths {
		r, st, ours := inRootfs(p)
		switch {
		case !ours:
			masked = append(masked, p)
		case st != nil && below(r):
			// in a masked (empty) directory: not there any more, as runc finds
		case st != nil && st.IsDir():
			maskedDirs = append(maskedDirs, r)
			ms = append(ms, specs.Mount{Destination: r, Type: "tmpfs", Source: "tmpfs",
				Options: []string{"ro", "nosuid", "nodev", "noexec", "size=0"}})
		case st != nil:
			ms = append(ms, specs.Mount{Destination: r, Type: "bind", Source: "/dev/null", Options: []string{"bind", "ro"}})
		}
	}
	return masked, readonly, ms
}

// MakeVolumes creates the pod's empty volumes (under the pod directory, the
// working directory) with their mode and owner, and checks that its host
// volumes exist. hostID maps an id in the pod to the host's (nil: the same).
func MakeVolumes(vols []abi.Volume, hostID func(int) int) error {
	if hostID == nil {
		hostID = func(id int) int { return id }
	}
	for _, v := range vols {
		switch v.Kind {
		case abi.VolumeEmpty:
			dir := filepath.Join(abi.VolumesDir, v.Name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(dir, os.FileMode(v.Mode)); err != nil {
				return err
			}
			if err := os.Chown(dir, hostID(v.UID), hostID(v.GID)); err != nil {
				return err
			}
		case abi.VolumeHost:
			if _, err := os.Stat(v.Source); err != nil {
				return fmt.Errorf("volume %s: host source: %w", v.Name, err)
			}
		}
	}
	return nil
}
