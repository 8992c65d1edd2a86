package networking

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"

	"github.com/skiff-project/skiff/internal/atomicfile"
)

// Files under a pod's network state directory.
const (
	stateFile    = "net.json" // state, below
	cacheDir     = "cni"      // libcni's result cache: prevResult for DEL
	stateVersion = 1
)

// state is what Teardown needs: written before the namespace is created and
// before each ADD, so a crash at any point leaves a record of it.
type state struct {
	Version    int        `json:"version"`
	PodUUID    string     `json:"podUUID"`
	NetNS      string     `json:"netns"`
	PluginDirs []string   `json:"pluginDirs"`
	Networks   []attached `json:"networks"` // in ADD order
}

// attached is one network ADD was (or is being) run for.
type attached struct {
	Name           string          `json:"name"`
	IfName         string          `json:"ifName"`
	Config         json.RawMessage `json:"config"` // the conflist ADD used; DEL uses it, not today's files
	Args           [][2]string     `json:"args,omitempty"`
	CapabilityArgs map[string]any  `json:"capabilityArgs,omitempty"`
	Result         *NetworkResult  `json:"result,omitempty"` // nil until ADD succeeded
}

func (s *state) runtimeConf(a attached) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: s.PodUUID, NetNS: s.NetNS, IfName: a.IfName,
		Args: a.Args, CapabilityArgs: a.CapabilityArgs}
}

func (s *state) write(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, stateFile), b, 0o644)
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("network state %s: %w", dir, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("network state %s: version %d, want %d", dir, s.Version, stateVersion)
	}
	return &s, nil
}
