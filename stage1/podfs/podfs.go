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
	"path/filepath"

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

// Mounts is ResolveMounts for callers that cannot fail: a target that does
// not resolve (a symlink loop, an unreadable layer) is left as the spec says
// it, for the mounter to refuse.
func Mounts(stage1Rootfs string, a App) []specs.Mount {
	ms, _ := mounts(stage1Rootfs, a, false)
	return ms
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
// ever outside the app's rootfs, whatever the image's links say.
func ResolveMounts(stage1Rootfs string, a App) ([]specs.Mount, error) {
	return mounts(stage1Rootfs, a, true)
}

func mounts(stage1Rootfs string, a App, strict bool) ([]specs.Mount, error) {
	dest := a.Root
	var rerr error
	at := func(p string) string { // p's place in the stage1 rootfs
		var r string
		var err error
		if len(a.Layers) > 0 {
			r, err = ResolveLayers(a.Layers, p)
		} else {
			r, err = Resolve(filepath.Join(stage1Rootfs, dest), p)
		}
		if err != nil {
			if rerr == nil {
				rerr = err
			}
			r = filepath.Clean("/" + p)
		}
		return filepath.Join(dest, r)
	}
	nse := []string{"nosuid", "noexec", "nodev"}
	ms := []specs.Mount{
		{Destination: at("/proc"), Type: "proc", Source: "proc", Options: nse},
		Sysfs(at("/sys"), a.UserNS),
		{Destination: at("/dev"), Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
	}
	if a.UserNS { // an empty /sys/fs/cgroup, as a fresh sysfs has (see Sysfs)
		ms = append(ms, specs.Mount{Destination: at("/sys/fs/cgroup"), Type: "tmpfs", Source: "tmpfs",
			Options: []string{"ro", "nosuid", "noexec", "nodev", "size=0", "mode=755"}})
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		ms = append(ms, specs.Mount{Destination: at("/dev/" + d), Type: "bind", Source: "/dev/" + d, Options: []string{"bind", "nosuid", "noexec"}})
	}
	ms = append(ms,
		specs.Mount{Destination: at("/dev/pts"), Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		specs.Mount{Destination: at("/dev/shm"), Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	)
	for _, m := range a.Mounts {
		m.Destination = at(m.Destination)
		ms = append(ms, m)
	}
	ms = append(ms, kernelPathMounts(stage1Rootfs, at, a.MaskedPaths, a.ReadonlyPaths)...)
	if a.Readonly {
		ms = append(ms, specs.Mount{Destination: dest, Type: "bind", Source: filepath.Join(stage1Rootfs, dest), Options: []string{"rbind", "ro"}})
	}
	if strict && rerr != nil {
		return nil, rerr
	}
	return ms, nil
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

// kernelPathMounts hides masked paths (files behind /dev/null, directories
// behind an empty read-only tmpfs) and makes read-only paths read-only. Paths
// the running kernel does not have are skipped.
func kernelPathMounts(stage1Rootfs string, at func(string) string, masked, readonly []string) []specs.Mount {
	var ms []specs.Mount
	for _, p := range masked {
		st, err := os.Stat(p) // this kernel's /proc and /sys: the app's kernel
		switch {
		case err != nil:
		case st.IsDir():
			ms = append(ms, specs.Mount{Destination: at(p), Type: "tmpfs", Source: "tmpfs", Options: []string{"ro", "nosuid", "nodev", "noexec", "size=0"}})
		default:
			ms = append(ms, specs.Mount{Destination: at(p), Type: "bind", Source: "/dev/null", Options: []string{"bind", "ro"}})
		}
	}
	for _, p := range readonly {
		if _, err := os.Stat(p); err == nil {
			d := at(p)
			ms = append(ms, specs.Mount{Destination: d, Type: "bind", Source: filepath.Join(stage1Rootfs, d), Options: []string{"rbind", "ro"}})
		}
	}
	return ms
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
