// Package stage1img finds the stage1 image a pod runs with, imports it into the
// image store (once per file version), and reads what it declares (contract
// version, entrypoints) into the stage1 contract's terms. A stage1 shipped with
// skiff — beside the binary or in the system directory — is trusted as part of
// the installation.
package stage1img

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/stage1/abi"
)

// DefaultName is the stage1 flavor used when none is asked for.
const DefaultName = "default"

// FileName is the file a stage1 flavor ships as.
func FileName(name string) string { return "stage1-" + name + ".oci.tar" }

// ErrNotFound is returned when no stage1 image of the asked name is installed.
var ErrNotFound = errors.New("stage1 image not found")

// Installed lists the installed stage1 images by name (FileName's pattern),
// beside the running skiff binary and in systemDir; a name found in both is
// the one Find picks.
func Installed(systemDir string) map[string]string {
	found := map[string]string{}
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	for _, d := range append(dirs, systemDir) {
		matches, _ := filepath.Glob(filepath.Join(d, FileName("*")))
		for _, m := range matches {
			name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "stage1-"), ".oci.tar")
			if _, ok := found[name]; !ok && name != "" {
				found[name] = m
			}
		}
	}
	return found
}

// Find returns the path of the stage1 image called name, looking beside the
// running skiff binary first and then in systemDir (make install's place).
func Find(name, systemDir string) (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		tried = append(tried, filepath.Join(filepath.Dir(exe), FileName(name)))
	}
	tried = append(tried, filepath.Join(systemDir, FileName(name)))
	for _, p := range tried {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("stage1 %q: %w (looked in %s); build it with 'make' or pass --stage1-path=FILE",
		name, ErrNotFound, strings.Join(tried, ", "))
}

// Load imports the stage1 image at path into s and describes it for the pod
// manifest.
func Load(ctx context.Context, s *store.Store, path string) (abi.Stage1, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return abi.Stage1{}, err
	}
	ref, err := reference.Parse("oci-archive:" + path)
	if err != nil {
		return abi.Stage1{}, err
	}
	img, err := fetch.Import(ctx, s, ref, fetch.Options{Gate: store.TrustInstalled}) // an unchanged file is not read again; stage1s are trusted as installed
	if err != nil {
		return abi.Stage1{}, fmt.Errorf("import stage1 image: %w", err)
	}
	return describe(path, img)
}

// describe reads the stage1's declared contract version and entrypoints.
func describe(path string, img *store.Image) (abi.Stage1, error) {
	a := img.Annotations
	v, err := strconv.Atoi(a[abi.AnnotationInterfaceVersion])
	if err != nil || v < 1 {
		return abi.Stage1{}, fmt.Errorf("stage1 image %s declares no valid %s; it is not a skiff stage1", path, abi.AnnotationInterfaceVersion)
	}
	if v > abi.InterfaceVersion {
		return abi.Stage1{}, fmt.Errorf("stage1 image %s speaks stage1 interface v%d, this skiff speaks up to v%d; upgrade skiff", path, v, abi.InterfaceVersion)
	}
	eps := map[string]string{}
	for name, key := range map[string]string{abi.EntrypointRun: abi.AnnotationRun, abi.EntrypointEnter: abi.AnnotationEnter,
		abi.EntrypointStop: abi.AnnotationStop, abi.EntrypointGC: abi.AnnotationGC,
		abi.EntrypointOCICreate: abi.AnnotationOCIRun} {
		if p := a[key]; p != "" {
			eps[name] = p
		}
	}
	if eps[abi.EntrypointRun] == "" {
		return abi.Stage1{}, fmt.Errorf("stage1 image %s declares no run entrypoint (%s)", path, abi.AnnotationRun)
	}
	s1 := abi.Stage1{
		Name: path, ImageID: img.ID.String(), Flavor: a[abi.AnnotationFlavor],
		InterfaceVersion: v, Entrypoints: eps, Rootfs: abi.Rootfs{Layers: img.LayerDirs},
	}
	return s1, nil
}

// Entrypoint resolves a stage1 entrypoint to a host path inside the stage1's
// layers (topmost layer first), never following a link out of its layer.
func Entrypoint(s1 abi.Stage1, name string) (string, error) {
	rel := s1.Entrypoints[name]
	if rel == "" {
		return "", fmt.Errorf("stage1 %s has no %s entrypoint", s1.Name, name)
	}
	for i := len(s1.Rootfs.Layers) - 1; i >= 0; i-- {
		p, err := securejoin.SecureJoin(s1.Rootfs.Layers[i], rel)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("stage1 %s: %s entrypoint %s is not in the image", s1.Name, name, rel)
}
