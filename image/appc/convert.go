package appc

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Annotations and label prefixes skiff writes on images converted from appc.
const (
	// AnnotationManifest, on the OCI manifest, is the digest of the blob that
	// holds the original appc image manifest.
	AnnotationManifest = "dev.skiff.appc.manifest"
	// AnnotationName, on the OCI manifest, is the appc image name.
	AnnotationName = "dev.skiff.appc.name"
	// AnnotationACIDigest, on the OCI manifest, is the sha256 of the ACI file
	// as it was imported (compressed, as signed).
	AnnotationACIDigest = "dev.skiff.appc.aci.digest"

	// Config label prefixes: appc labels, annotations and isolators (raw JSON
	// value) by name; mount points (path, ":ro" when read-only) and ports
	// ("PORT[-LAST]/PROTOCOL", "+socket-activated") by name.
	LabelLabel      = "dev.skiff.appc.label."
	LabelAnnotation = "dev.skiff.appc.annotation."
	LabelIsolator   = "dev.skiff.appc.isolator."
	LabelMountPoint = "dev.skiff.appc.mountpoint."
	LabelPort       = "dev.skiff.appc.port."
)

// Arch returns appc's name for a Go architecture (spec/types.md labels).
func Arch(goarch string) string {
	switch goarch {
	case "386":
		return "i386"
	case "arm64":
		return "aarch64"
	case "arm":
		return "armv7l"
	}
	return goarch
}

// checkPlatform refuses an image whose os/arch labels say it cannot run here;
// an image without them is taken as OS- and architecture-independent.
func checkPlatform(m *ImageManifest) error {
	if os, ok := m.Label("os"); ok && os != "linux" {
		return fmt.Errorf("image %q is for os %q, not linux", m.Name, os)
	}
	if arch, ok := m.Label("arch"); ok && arch != Arch(runtime.GOARCH) {
		return fmt.Errorf("image %q is for arch %q, not %s", m.Name, arch, Arch(runtime.GOARCH))
	}
	return nil
}

// Config maps the manifest onto an OCI image config whose single layer has
// diffID: exec→Entrypoint, environment→Env, user:group→User,
// workingDirectory→WorkingDir, ports→ExposedPorts, mountPoints→Volumes;
// labels, annotations, isolators, mount points and ports are also kept as
// config labels (see the Label constants). Well-known annotations fill the
// matching OCI fields (created, authors, homepage, documentation).
func Config(m *ImageManifest, diffID digest.Digest) ocispec.Image {
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History:  []ocispec.History{{CreatedBy: "skiff: imported from appc image " + m.Name}},
	}
	labels := map[string]string{}
	for _, l := range m.Labels {
		labels[LabelLabel+l.Name] = l.Value
	}
	for _, a := range m.Annotations {
		labels[LabelAnnotation+a.Name] = a.Value
		switch a.Name {
		case "created":
			if t, err := time.Parse(time.RFC3339Nano, a.Value); err == nil {
				t = t.UTC()
				cfg.Created = &t
			}
		case "authors":
			cfg.Author = a.Value
			labels[ocispec.AnnotationAuthors] = a.Value
		case "homepage":
			labels[ocispec.AnnotationURL] = a.Value
		case "documentation":
			labels[ocispec.AnnotationDocumentation] = a.Value
		}
	}
	if v, ok := m.Label("version"); ok {
		labels[ocispec.AnnotationVersion] = v
	}
	labels[ocispec.AnnotationTitle] = m.Name
	if a := m.App; a != nil {
		cfg.Config.Entrypoint = append([]string{}, a.Exec...)
		cfg.Config.User = a.User + ":" + a.Group
		cfg.Config.WorkingDir = a.WorkingDirectory
		for _, e := range a.Environment {
			cfg.Config.Env = append(cfg.Config.Env, e.Name+"="+e.Value)
		}
		for _, iso := range a.Isolators {
			labels[LabelIsolator+iso.Name] = string(iso.Value)
		}
		for _, mp := range a.MountPoints {
			if cfg.Config.Volumes == nil {
				cfg.Config.Volumes = map[string]struct{}{}
			}
			cfg.Config.Volumes[mp.Path] = struct{}{}
			labels[LabelMountPoint+mp.Name] = mp.Path + map[bool]string{true: ":ro"}[mp.ReadOnly]
		}
		for _, p := range a.Ports {
			if cfg.Config.ExposedPorts == nil {
				cfg.Config.ExposedPorts = map[string]struct{}{}
			}
			last := p.Port + max(p.Count, 1) - 1
			for n := p.Port; n <= last; n++ {
				cfg.Config.ExposedPorts[fmt.Sprintf("%d/%s", n, p.Protocol)] = struct{}{}
			}
			v := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
			if last != p.Port {
				v = fmt.Sprintf("%d-%d/%s", p.Port, last, p.Protocol)
			}
			if p.SocketActivated {
				v += "+socket-activated"
			}
			labels[LabelPort+p.Name] = v
		}
	}
	cfg.Config.Labels = labels
	return cfg
}

// Names are the store names an image gets: the source as the user wrote it
// and NAME:VERSION (NAME alone without a version label).
func Names(m *ImageManifest, source string) []string {
	name := m.Name
	if v, ok := m.Label("version"); ok && v != "" {
		name += ":" + v
	}
	if source == "" || source == name {
		return []string{name}
	}
	return []string{source, name}
}

// String renders a label list as "name=value,..." for messages.
func labelString(labels map[string]string) string {
	var parts []string
	for _, k := range []string{"version", "os", "arch"} {
		if v, ok := labels[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ",")
}
