package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1-kvm/guest"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/podfs"
)

// What the guest sees of the host. The guest is hostile (root in it is one
// --caps-retain or one guest kernel bug away), so it never gets the pod
// directory, whose files the host later executes or trusts (pod.json names
// the entrypoints stop, gc and enter run; stage1/net/net.json the CNI
// plugins gc runs; logs/ is where run writes). It gets, over virtio-9p:
//
//	config  stage1/guest, read-only: guest.json, the units, net/ (copies of
//	        resolv.conf and hosts)
//	out     stage1/out: apps/NAME/ with a copy of the app's config.json, where
//	        app-exited writes exit.json, and the ready marker; read by the
//	        host as untrusted input (records.go), never executed or followed
//	appN    each app's rootfs (an overlay run mounted; writes go to its upper
//	        directory, which the host never interprets)
//	volN, pvolN  the host volumes and the pod's empty volumes the apps mount,
//	        read-only when every mount of it is
//
// security_model: the rootfs and volumes keep their owners and modes
// (passthrough), which needs QEMU to be root; the data shares need no
// owners (none). QEMU itself runs without the capabilities the shares do not
// need (no CAP_MKNOD: the guest cannot make a device node on the host) and
// under its seccomp sandbox (qemu.go). The stage1 directory is 0700 and each
// app's directory (its upper layer) too, so what the guest leaves there
// (setuid files among them) is reachable by host root only.

// 9p security models.
const (
	passthrough = "passthrough"
	dataShare   = "none"
)

// share exports a host directory to the guest as a 9p share.
func (v *vm) share(tag, path, model string, readOnly bool) {
	opts := fmt.Sprintf("local,id=%s,path=%s,security_model=%s,multidevs=remap", tag, qemuOpt(path), model)
	if readOnly {
		opts += ",readonly=on"
	}
	v.args = append(v.args, "-fsdev", opts,
		"-device", fmt.Sprintf("virtio-9p-device,fsdev=%s,mount_tag=%s", tag, tag))
}

// qemuOpt escapes a value for a QEMU option list (a comma is doubled), so a
// path cannot add options of its own.
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// makeStage1Dirs makes the flavor's directories: the stage1 directory
// private to host root, the guest's configuration and output in it.
func makeStage1Dirs() error {
	if err := os.MkdirAll(abi.Stage1Dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(abi.Stage1Dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{guest.GuestDir, filepath.Join(guest.GuestDir, guest.NetDir),
		filepath.Join(guest.OutDir, abi.AppsDir), s1Apps, s1Shares} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// prepareAppDirs makes app's directory host root's alone (its upper layer
// holds what the guest writes) and gives the guest a copy of its spec in
// the output share (app-exec reads it there; the host never reads it back).
func prepareAppDirs(app string) error {
	d := abi.AppDir(".", app)
	if err := os.Chmod(d, 0o700); err != nil {
		return err
	}
	spec, err := os.ReadFile(filepath.Join(d, abi.AppSpecFile))
	if err != nil {
		return err
	}
	out := filepath.Join(guest.OutDir, d)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, abi.AppSpecFile), spec, 0o644)
}

// copyNetFiles copies the apps' resolv.conf and hosts into the guest's
// configuration; the guest finds them at the same pod-relative place.
func (v *vm) copyNetFiles() error {
	for _, m := range v.cfg.Mounts {
		b, err := os.ReadFile(m.Source)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(guest.GuestDir, guest.NetDir, filepath.Base(m.Source)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// shareMounts shares with the guest the host sources of the apps' bind
// mounts: a host directory as itself, a host file bound alone onto a
// directory of its own (so the guest sees nothing else of the file's
// directory), an empty volume of the pod directory as itself (nothing else
// of the pod directory is shared). A share is read-only when every mount of
// its source is.
func (v *vm) shareMounts() error {
	var mounts []specs.Mount
	readOnly := map[string]bool{}
	for _, a := range v.m.Apps {
		for _, m := range podfs.FromSpec("/", v.o.PodDir, v.specs[a.Name]).Mounts {
			if m.Type != "bind" {
				continue
			}
			if _, seen := readOnly[m.Source]; !seen {
				mounts = append(mounts, m)
				readOnly[m.Source] = true
			}
			if !slices.Contains(m.Options, "ro") {
				readOnly[m.Source] = false
			}
		}
	}
	for _, m := range mounts {
		var err error
		if within(v.o.PodDir, m.Source) {
			err = v.sharePodDir(m, readOnly[m.Source])
		} else {
			err = v.shareHost(m, readOnly[m.Source])
		}
		if err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
	}
	return nil
}

// sharePodDir shares an empty volume, the only part of the pod directory
// an app mounts.
func (v *vm) sharePodDir(m specs.Mount, ro bool) error {
	rel, _ := filepath.Rel(v.o.PodDir, m.Source)
	parts := strings.Split(rel, "/")
	if len(parts) != 2 || parts[0] != abi.VolumesDir {
		return fmt.Errorf("%s is in the pod directory but not a volume: the kvm stage1 shares only volumes with its VM", m.Source)
	}
	tag := fmt.Sprintf("pvol%d", len(v.cfg.PodShares))
	v.cfg.PodShares = append(v.cfg.PodShares, guest.PodShare{Tag: tag, Path: rel, ReadOnly: ro})
	v.share(tag, m.Source, passthrough, ro)
	return nil
}

// shareHost shares a host volume's directory, or its file bound alone onto
// a directory of its own.
func (v *vm) shareHost(m specs.Mount, ro bool) error {
	st, err := os.Stat(m.Source)
	if err != nil {
		return err
	}
	tag := fmt.Sprintf("vol%d", len(v.cfg.Shares))
	export := m.Source
	if !st.IsDir() {
		export = filepath.Join(v.o.PodDir, s1Shares, tag)
		target := filepath.Join(export, filepath.Base(m.Source))
		if err := os.MkdirAll(export, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(target, nil, 0o644); err != nil {
			return err
		}
		if err := unix.Mount(m.Source, target, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	v.cfg.Shares = append(v.cfg.Shares, guest.Share{Tag: tag, Source: m.Source, File: !st.IsDir(), ReadOnly: ro})
	v.share(tag, export, passthrough, ro)
	return nil
}

func within(base, p string) bool {
	rel, err := filepath.Rel(base, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
