package networking

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// hostileState writes a network state that makes teardown execute a
// "plugin" of the writer's: the file a pod would plant if it could reach the
// state directory. It returns the marker that plugin leaves when run.
func hostileState(t *testing.T, path string) (marker string) {
	t.Helper()
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	marker = filepath.Join(dir, "ran")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\ntouch %s\necho '{}'\n", marker)
	if err := os.WriteFile(filepath.Join(plugins, "evil"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	st := fmt.Sprintf(`{"version":1,"podUUID":"pod1","netns":"/nonexistent/pod1","pluginDirs":[%q],
	  "networks":[{"name":"n","ifName":"eth0","config":{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"evil"}]}}]}`, plugins)
	if err := os.WriteFile(path, []byte(st), 0o644); err != nil {
		t.Fatal(err)
	}
	return marker
}

// Teardown reads its state as hostile: a state file or directory that is a
// link (planted where the pod could write) is refused, and nothing it names
// is executed.
func TestTeardownRefusesLinkedState(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		stateDir := t.TempDir()
		planted := filepath.Join(t.TempDir(), "net.json")
		marker := hostileState(t, planted)
		if err := os.Symlink(planted, filepath.Join(stateDir, stateFile)); err != nil {
			t.Fatal(err)
		}
		if err := Teardown(context.Background(), stateDir); err == nil {
			t.Error("Teardown took a linked state file")
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("Teardown executed the plugin a linked state file named")
		}
	})
	t.Run("directory", func(t *testing.T) {
		real := t.TempDir()
		marker := hostileState(t, filepath.Join(real, stateFile))
		stateDir := filepath.Join(t.TempDir(), "net")
		if err := os.Symlink(real, stateDir); err != nil {
			t.Fatal(err)
		}
		if err := Teardown(context.Background(), stateDir); err == nil {
			t.Error("Teardown took a linked state directory")
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("Teardown executed the plugin a linked state directory named")
		}
	})
}

// Seeds: testdata/fuzz/FuzzDecodeState.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"version":1,"podUUID":"p","netns":"/run/skiff/netns/p","pluginDirs":["/usr/lib/cni"],"networks":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState(b)
		if err != nil {
			return
		}
		if s.Version != stateVersion || !filepath.IsAbs(s.NetNS) || filepath.Base(s.NetNS) != s.PodUUID {
			t.Fatalf("accepted %+v", s)
		}
		for _, d := range s.PluginDirs {
			if !filepath.IsAbs(d) {
				t.Fatalf("accepted plugin dir %q", d)
			}
		}
	})
}
