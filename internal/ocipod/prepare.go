package ocipod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/internal/lazyre"
	"github.com/skiff-project/skiff/internal/privdir"
	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

// configCopy, in the pod directory, is the host's copy of the bundle's
// config.json as create read it (apps/APP/config.json is the pod's).
const configCopy = "oci-config.json"

// stage1Cache is the image store under ROOT that holds the extracted stage1
// images (read-only layer directories, keyed by digest).
const stage1Cache = ".stage1"

// validID is runc's rule for container ids, less a leading "." (which would
// clash with stage1Cache and hide the container from ls).
var validID = lazyre.New(`^[A-Za-z0-9_+\-][A-Za-z0-9_+\-.]*$`)

func checkID(id string) error {
	if !validID.MatchString(id) || len(id) > 1024 {
		return fmt.Errorf("container id %q: %w: use letters, digits, '_', '+', '-' and '.' (not first)", id, ErrBadID)
	}
	return nil
}

func findStage1(name, systemDir string) (Stage1, error) {
	if name == "" {
		name = stage1img.DefaultName
	}
	if systemDir == "" {
		systemDir = "/usr/lib/skiff"
	}
	p, err := stage1img.Find(name, systemDir)
	if err != nil {
		return Stage1{}, err
	}
	return Stage1{Name: name, Path: p}, nil
}

// rlimitTypes are process.rlimits' types (RLIMIT_ and these, getrlimit(2)):
// runtime-spec has the runtime fail on others.
var rlimitTypes = map[string]bool{"AS": true, "CORE": true, "CPU": true, "DATA": true, "FSIZE": true, "LOCKS": true,
	"MEMLOCK": true, "MSGQUEUE": true, "NICE": true, "NOFILE": true, "NPROC": true, "RSS": true, "RTPRIO": true,
	"RTTIME": true, "SIGPENDING": true, "STACK": true}

// readBundle reads and checks BUNDLE/config.json.
func readBundle(bundle string) ([]byte, *specs.Spec, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("bundle %s: %w: %s", bundle, ErrBadBundle, fmt.Sprintf(format, args...))
	}
	raw, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, bad("config.json: no such file; give the bundle directory that holds config.json (--bundle)")
	}
	if err != nil {
		return nil, nil, bad("%v", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, nil, bad("config.json is not a runtime spec: %v; fix the file (runc spec writes a valid one)", err)
	}
	if !strings.HasPrefix(spec.Version, "1.") {
		return nil, nil, bad("config.json has ociVersion %q, want 1.x; fix the file", spec.Version)
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, nil, bad("config.json has no process.args; name the command to run")
	}
	for _, r := range spec.Process.Rlimits {
		if !rlimitTypes[strings.TrimPrefix(r.Type, "RLIMIT_")] || !strings.HasPrefix(r.Type, "RLIMIT_") {
			return nil, nil, bad("process.rlimits has type %q, which the kernel does not have; use one of getrlimit(2)'s RLIMIT_* names", r.Type)
		}
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, nil, bad("config.json has no root.path; name the rootfs directory")
	}
	if spec.Linux == nil {
		return nil, nil, bad("config.json has no linux section; skiff runs Linux containers only")
	}
	if err := unappliedLSM(spec.Process, spec.Linux.MountLabel); err != nil {
		return nil, nil, bad("%v", err)
	}
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, nil, bad("root.path %s is not a directory; unpack the image there (umoci unpack)", root)
	}
	return raw, &spec, nil
}

func prepare(root, id, bundle string, s1 Stage1) (*Pod, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return nil, err
	}
	raw, spec, err := readBundle(bundle)
	if err != nil {
		return nil, err
	}
	if _, err := privdir.Ensure(root, 0o711); err != nil {
		return nil, fmt.Errorf("state root %s: %w", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, id)); err == nil {
		return nil, fmt.Errorf("container %s: %w", id, ErrExist)
	}
	// Until pod.json names the stage1 image, a delete's cleanup must not
	// take it for unused.
	release, err := holdStage1Cache(root)
	if err != nil {
		return nil, fmt.Errorf("state root %s: %w", root, err)
	}
	defer release()
	st, err := store.Open(filepath.Join(root, stage1Cache))
	if err != nil {
		return nil, err
	}
	desc, err := stage1img.Load(context.Background(), st, s1.Path)
	if err != nil {
		return nil, fmt.Errorf("stage1 %s: %w", s1.Name, err)
	}
	if desc.Entrypoints[abi.EntrypointOCICreate] == "" {
		return nil, fmt.Errorf("stage1 %s (%s): %w: it does not declare %s; pick a stage1 that does (dev.skiff.oci.stage1 annotation)",
			s1.Name, s1.Path, ErrNoOCIMode, abi.AnnotationOCIRun)
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	p := &Pod{Root: root, ID: id, Dir: filepath.Join(root, id), Bundle: bundle, Spec: spec,
		Manifest: abi.PodManifest{
			Version: abi.InterfaceVersion, UUID: id, Created: time.Now().UTC(), Stage1: desc,
			Apps:        []abi.App{{Name: AppName, Image: abi.Image{Name: bundle}, Rootfs: abi.Rootfs{Layers: []string{rootfs}}}},
			Annotations: spec.Annotations,
		}}
	if err := os.Mkdir(p.Dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %s: %w", id, ErrExist)
		}
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if err := p.writeFiles(raw); err != nil {
		_ = os.RemoveAll(p.Dir)
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	return p, nil
}

func (p *Pod) writeFiles(config []byte) error {
	if err := os.MkdirAll(filepath.Join(p.Dir, abi.AppsDir, AppName), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.Dir, abi.AppsDir, AppName, abi.AppSpecFile), config, 0o644); err != nil {
		return err
	}
	// The app is an OCI bundle's process: app-exec applies its capabilities
	// and noNewPrivileges as given (runc's rules, not skiff's own mode's).
	if err := os.WriteFile(filepath.Join(p.Dir, abi.AppsDir, AppName, abi.OCIProcessMarker), nil, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.Dir, configCopy), config, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.Dir, abi.OCIBundleFile), []byte(p.Bundle), 0o644); err != nil {
		return err
	}
	return abi.WriteJSON(filepath.Join(p.Dir, abi.PodManifestFile), p.Manifest)
}

func load(root, id string) (*Pod, error) {
	if checkID(id) != nil {
		return nil, fmt.Errorf("container %q: %w", id, ErrNotExist)
	}
	p := &Pod{Root: root, ID: id, Dir: filepath.Join(root, id)}
	if _, err := os.Stat(p.Dir); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotExist)
	}
	if err := abi.ReadJSON(filepath.Join(p.Dir, abi.PodManifestFile), &p.Manifest); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	b, err := os.ReadFile(filepath.Join(p.Dir, abi.OCIBundleFile))
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	p.Bundle = string(b)
	// The host's copy: apps/APP/config.json is writable from inside the pod.
	var spec specs.Spec
	if err := abi.ReadJSON(filepath.Join(p.Dir, configCopy), &spec); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	p.Spec = &spec
	return p, nil
}

func list(root string) ([]string, error) {
	es, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range es {
		if e.IsDir() && checkID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// unappliedLSM refuses the SELinux settings the stage1 does not apply: a
// container asked to run confined must not run unconfined. runc fails them
// too where SELinux is off (as here: a process label is refused at create,
// a mount label makes the mounts fail); skiff refuses them everywhere until
// it applies them. AppArmor profiles are applied (stage1/appexec), or
// refused at create where the host has no AppArmor, as runc fails them.
func unappliedLSM(p *specs.Process, mountLabel string) error {
	switch {
	case p != nil && p.SelinuxLabel != "":
		return fmt.Errorf("process.selinuxLabel %q: skiff-oci does not apply SELinux labels yet; remove it (podman: --security-opt label=disable)", p.SelinuxLabel)
	case mountLabel != "":
		return fmt.Errorf("linux.mountLabel %q: skiff-oci does not apply SELinux mount labels yet; remove it (podman: --security-opt label=disable)", mountLabel)
	}
	return nil
}
