package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage0/prepare"
	"github.com/skiff-project/skiff/stage1/abi"
)

// writePod creates the pod directory and writes the stage1 contract's files
// into it, then moves it to prepared/ (still locked). On failure the pod goes
// to garbage.
func writePod(g *globals, f *prepareFlags, apps []prepare.AppArgs, imgs []*store.Image, s1 abi.Stage1,
	pd prepare.Pod, vols []abi.Volume) (*pod.Pod, error) {
	p, err := pod.New(g.dir)
	if err != nil {
		return nil, fmt.Errorf("create pod in %s: %w", g.dir, err)
	}
	fail := func(err error) (*pod.Pod, error) {
		_ = p.Transition(pod.Garbage)
		p.Close()
		return nil, err
	}
	m := abi.PodManifest{Version: abi.InterfaceVersion, UUID: p.UUID, Created: time.Now().UTC(), Stage1: s1, Volumes: vols}
	seen := map[string]bool{}
	for i, a := range apps {
		name, err := prepare.AppName(a)
		if err != nil {
			return fail(err)
		}
		if seen[name] {
			return fail(fmt.Errorf("two apps are named %q; name them apart with --name", name))
		}
		seen[name] = true
		spec, added, err := prepare.AppSpec(name, a, imgs[i].Config.Config, pd)
		if err != nil {
			return fail(err)
		}
		markNotify(spec, imgs[i])
		m.Volumes = append(m.Volumes, added...)
		dir := abi.AppDir(p.Dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		if err := abi.WriteJSON(filepath.Join(dir, abi.AppSpecFile), spec); err != nil {
			return fail(err)
		}
		m.Apps = append(m.Apps, abi.App{Name: name, Image: abi.Image{Name: a.Image, ID: imgs[i].ID.String()},
			Rootfs: abi.Rootfs{Layers: imgs[i].LayerDirs}})
	}
	if err := checkVolumesUsed(vols, apps, pd); err != nil {
		return fail(err)
	}
	if err := abi.WriteJSON(filepath.Join(p.Dir, abi.PodManifestFile), m); err != nil {
		return fail(err)
	}
	if f.uuidFile != "" {
		if err := os.WriteFile(f.uuidFile, []byte(p.UUID+"\n"), 0o644); err != nil {
			return fail(fmt.Errorf("--uuid-file-save: %w", err))
		}
	}
	if err := p.Transition(pod.Prepared); err != nil {
		return fail(err)
	}
	return p, nil
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
