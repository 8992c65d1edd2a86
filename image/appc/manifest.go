package appc

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"

	"github.com/skiff-project/skiff/internal/lazyre"
)

// ErrDependencies is returned for an image manifest that lists dependencies:
// skiff imports each ACI as a single self-contained layer.
var ErrDependencies = errors.New("appc dependencies are not supported")

// ErrUnsupported is returned for manifest features skiff cannot honour (event
// handlers, path whitelists): refusing is better than running the app wrong.
var ErrUnsupported = errors.New("unsupported appc feature")

// maxManifest bounds the manifest read into memory.
const maxManifest = 1 << 20

// ImageManifest is the part of appc's image manifest (spec/aci.md) that
// skiff reads. Unknown fields are ignored; Dependencies is kept only to be
// refused.
type ImageManifest struct {
	ACKind        string          `json:"acKind"`
	ACVersion     string          `json:"acVersion"`
	Name          string          `json:"name"`
	Labels        []NameValue     `json:"labels,omitempty"`
	App           *App            `json:"app,omitempty"`
	Annotations   []NameValue     `json:"annotations,omitempty"`
	Dependencies  json.RawMessage `json:"dependencies,omitempty"`
	PathWhitelist []string        `json:"pathWhitelist,omitempty"`
}

// App is how to run the image.
type App struct {
	Exec             []string          `json:"exec"`
	User             string            `json:"user"`
	Group            string            `json:"group"`
	SupplementaryGID []int             `json:"supplementaryGIDs,omitempty"`
	WorkingDirectory string            `json:"workingDirectory,omitempty"`
	Environment      []NameValue       `json:"environment,omitempty"`
	Isolators        []Isolator        `json:"isolators,omitempty"`
	MountPoints      []MountPoint      `json:"mountPoints,omitempty"`
	Ports            []Port            `json:"ports,omitempty"`
	EventHandlers    []json.RawMessage `json:"eventHandlers,omitempty"`
}

// NameValue is appc's list-of-pairs form of labels, annotations and environment.
type NameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Isolator is a named isolation setting; its value is kept as raw JSON.
type Isolator struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// MountPoint is where the app expects a volume.
type MountPoint struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Port is a port (or a range of Count ports) the app listens on.
type Port struct {
	Name            string `json:"name"`
	Protocol        string `json:"protocol"`
	Port            uint   `json:"port"`
	Count           uint   `json:"count,omitempty"`
	SocketActivated bool   `json:"socketActivated,omitempty"`
}

// Grammars of spec/types.md.
var (
	acIdentifierRE = lazyre.New(`^[a-z0-9]+(?:[-._~/][a-z0-9]+)*$`)
	acNameRE       = lazyre.New(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)
	envNameRE      = lazyre.New(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Label returns the value of the label name and whether it is set.
func (m *ImageManifest) Label(name string) (string, bool) {
	for _, l := range m.Labels {
		if l.Name == name {
			return l.Value, true
		}
	}
	return "", false
}

// ParseManifest parses and validates an image manifest. Errors say which
// field is wrong; a manifest with dependencies fails with ErrDependencies.
func ParseManifest(data []byte) (*ImageManifest, error) {
	if len(data) > maxManifest {
		return nil, fmt.Errorf("manifest larger than %d bytes", maxManifest)
	}
	var m ImageManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}

func (m *ImageManifest) validate() error {
	if m.ACKind != "ImageManifest" {
		return fmt.Errorf("acKind %q, want \"ImageManifest\"", m.ACKind)
	}
	if m.ACVersion == "" {
		return errors.New("acVersion is missing")
	}
	if !acIdentifierRE.MatchString(m.Name) || len(m.Name) > 255 {
		return fmt.Errorf("name %q is not an AC identifier (lowercase letters, digits and -._~/)", m.Name)
	}
	if err := checkPairs("label", m.Labels, acIdentifierRE); err != nil {
		return err
	}
	if _, ok := m.Label("name"); ok {
		return errors.New(`label "name" is reserved`)
	}
	if arch, ok := m.Label("arch"); ok && arch != "" {
		if _, ok := m.Label("os"); !ok {
			return errors.New(`label "arch" without label "os"`)
		}
	}
	if err := checkPairs("annotation", m.Annotations, acIdentifierRE); err != nil {
		return err
	}
	if len(m.Dependencies) > 0 && string(m.Dependencies) != "null" && string(m.Dependencies) != "[]" {
		return ErrDependencies
	}
	if len(m.PathWhitelist) > 0 {
		return fmt.Errorf("%w: pathWhitelist", ErrUnsupported)
	}
	if m.App != nil {
		if err := m.App.validate(); err != nil {
			return fmt.Errorf("app: %w", err)
		}
	}
	return nil
}

func (a *App) validate() error {
	if len(a.Exec) == 0 || !path.IsAbs(a.Exec[0]) {
		return fmt.Errorf("exec %q: must start with an absolute path", a.Exec)
	}
	if a.User == "" || a.Group == "" {
		return errors.New("user and group are required")
	}
	if a.WorkingDirectory != "" && !path.IsAbs(a.WorkingDirectory) {
		return fmt.Errorf("workingDirectory %q is not absolute", a.WorkingDirectory)
	}
	if len(a.EventHandlers) > 0 {
		return fmt.Errorf("%w: eventHandlers", ErrUnsupported)
	}
	if err := checkPairs("environment variable", a.Environment, envNameRE); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, iso := range a.Isolators {
		if !acIdentifierRE.MatchString(iso.Name) {
			return fmt.Errorf("isolator name %q is not an AC identifier", iso.Name)
		}
		if len(iso.Value) == 0 || !json.Valid(iso.Value) {
			return fmt.Errorf("isolator %q has no value", iso.Name)
		}
	}
	for _, mp := range a.MountPoints {
		if !acNameRE.MatchString(mp.Name) || seen["mount "+mp.Name] {
			return fmt.Errorf("mount point name %q is not a unique AC name", mp.Name)
		}
		seen["mount "+mp.Name] = true
		if !path.IsAbs(mp.Path) {
			return fmt.Errorf("mount point %q: path %q is not absolute", mp.Name, mp.Path)
		}
	}
	for _, p := range a.Ports {
		if !acNameRE.MatchString(p.Name) || seen["port "+p.Name] {
			return fmt.Errorf("port name %q is not a unique AC name", p.Name)
		}
		seen["port "+p.Name] = true
		if !acNameRE.MatchString(p.Protocol) {
			return fmt.Errorf("port %q: invalid protocol %q", p.Name, p.Protocol)
		}
		if p.Port < 1 || p.Port > 65535 || p.Count > 65535 || p.Port+max(p.Count, 1)-1 > 65535 {
			return fmt.Errorf("port %q: %d (count %d) is out of 1-65535", p.Name, p.Port, p.Count)
		}
	}
	return nil
}

// checkPairs checks that names match re and are unique.
func checkPairs(what string, pairs []NameValue, re *lazyre.Regexp) error {
	seen := map[string]bool{}
	for _, p := range pairs {
		if !re.MatchString(p.Name) {
			return fmt.Errorf("%s name %q is invalid", what, p.Name)
		}
		if seen[p.Name] {
			return fmt.Errorf("%s %q is set twice", what, p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}
