package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage0/prepare"
	"github.com/skiff-project/skiff/stage1/abi"
)

// writePod resolves the apps' specs (podEnv, the pod's --set-env and
// --set-env-file, under each app's own), creates the pod directory (leasing its
// private uid/gid range with --private-users) and writes the stage1
// contract's files into it, then moves it to prepared/ (still locked). Bad
// input is refused before anything is created; on a later failure the pod
// goes to garbage and gives its range back.
func writePod(g *globals, f *prepareFlags, apps []prepare.AppArgs, imgs []*store.Image, s1 abi.Stage1,
	pd prepare.Pod, vols []abi.Volume, podEnv []string) (*pod.Pod, *abi.PodManifest, error) {
	m := &abi.PodManifest{Version: abi.InterfaceVersion, Stage1: s1, Volumes: vols}
	appSpecs := make([]*specs.Spec, len(apps))
	seen := map[string]bool{}
	for i, a := range apps {
		name, err := prepare.AppName(a)
		if err != nil {
			return nil, nil, err
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("two apps are named %q; name them apart with --name", name)
		}
		seen[name] = true
		a.SetEnv = append(append([]string{}, podEnv...), a.SetEnv...) // the app's own --set-env wins
		spec, added, err := prepare.AppSpec(name, a, imgs[i].Config.Config, pd)
		if err != nil {
			return nil, nil, err
		}
		markNotify(spec, imgs[i])
		m.Volumes = append(m.Volumes, added...)
		appSpecs[i] = spec
		m.Apps = append(m.Apps, abi.App{Name: name, Image: abi.Image{Name: a.Image, ID: imgs[i].ID.String()},
			Rootfs: abi.Rootfs{Layers: imgs[i].LayerDirs}})
	}
	if err := checkVolumesUsed(vols, apps, pd); err != nil {
		return nil, nil, err
	}
	if f.privateUsers {
		if err := checkPrivateIDs(m, appSpecs); err != nil {
			return nil, nil, err
		}
	}
	if f.uuidFile != "" {
		if _, err := atomicfile.CheckTextOutput(f.uuidFile); err != nil {
			return nil, nil, fmt.Errorf("--uuid-file-save: %w", err)
		}
	}
	p, err := pod.New(g.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("create pod in %s: %w", g.dir, err)
	}
	fail := func(err error) (*pod.Pod, *abi.PodManifest, error) {
		if m.PrivateUsers != nil {
			_ = releaseUsers(p, m)
		}
		_ = p.Transition(pod.Garbage)
		p.Close()
		return nil, nil, err
	}
	m.UUID, m.Created = p.UUID, time.Now().UTC()
	if f.privateUsers {
		if m.PrivateUsers, err = leaseUsers(g, p); err != nil {
			return fail(err)
		}
	}
	for i, a := range m.Apps {
		dir := abi.AppDir(p.Dir, a.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		if err := abi.WriteJSON(filepath.Join(dir, abi.AppSpecFile), appSpecs[i]); err != nil {
			return fail(err)
		}
	}
	if err := abi.WriteJSON(filepath.Join(p.Dir, abi.PodManifestFile), m); err != nil {
		return fail(err)
	}
	if f.uuidFile != "" {
		if err := saveUUID(f.uuidFile, p.UUID); err != nil {
			return fail(fmt.Errorf("--uuid-file-save: %w", err))
		}
	}
	if err := p.Transition(pod.Prepared); err != nil {
		return fail(err)
	}
	return p, m, nil
}

// saveUUID writes uuid to the file --uuid-file-save names: a new or regular
// file atomically; standard output ("-", /dev/stdout), a pipe or a fifo is
// written to in place; a link, a directory or a device is never replaced.
func saveUUID(path, uuid string) error {
	o, err := atomicfile.CreateTextOutput(path, 0o644)
	if err != nil {
		return err
	}
	defer o.Abort()
	if _, err := io.WriteString(o, uuid+"\n"); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return o.Commit()
}

// checkVolumesUsed refuses a --volume that no app mounts: a typo would
// otherwise go unnoticed.
func checkVolumesUsed(vols []abi.Volume, apps []prepare.AppArgs, pd prepare.Pod) error {
	used := map[string]bool{}
	for _, m := range pd.Mounts {
		used[m.Volume] = true
	}
	for _, a := range apps {
		for _, m := range a.Mounts {
			used[m.Volume] = true
		}
	}
	for _, v := range vols {
		if !used[v.Name] {
			return fmt.Errorf("volume %q is not mounted by any app; add --mount=volume=%s,target=PATH", v.Name, v.Name)
		}
	}
	return nil
}
