package networking

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/utils"
	"golang.org/x/sys/unix"

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

// maxStateSize bounds net.json: a few conflists and results, far below it.
const maxStateSize = 4 << 20

// readState reads dir's state. The state decides what teardown executes, so
// it must come from the host: stage1 keeps it where no pod writes (see
// stage1/README.md), and it is read as if a pod could have all the same: the
// directory and the file are opened without following a link, only a
// regular file of a bounded size is read, and what it records is checked.
func readState(dir string) (*state, error) {
	d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(d)
	fd, err := unix.Openat(d, stateFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir, stateFile), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, stateFile))
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("network state %s: not a regular file", dir)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("network state %s: larger than %d bytes", dir, maxStateSize)
	}
	s, err := decodeState(b)
	if err != nil {
		return nil, fmt.Errorf("network state %s: %w", dir, err)
	}
	return s, nil
}

// decodeState parses and checks a state file's content: its version, a pod
// UUID that is a CNI container ID, and absolute paths only.
func decodeState(b []byte) (*state, error) {
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("version %d, want %d", s.Version, stateVersion)
	}
	if err := utils.ValidateContainerID(s.PodUUID); err != nil {
		return nil, fmt.Errorf("pod %q: %w", s.PodUUID, err)
	}
	if !filepath.IsAbs(s.NetNS) || filepath.Base(s.NetNS) != s.PodUUID {
		return nil, fmt.Errorf("network namespace %q is not the pod's", s.NetNS)
	}
	for _, d := range s.PluginDirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("plugin directory %q is not absolute", d)
		}
	}
	return &s, nil
}
