//go:build functional

package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bigImage builds an OCI archive with a small layer and two 30 MB layers of
// random bytes (so they neither compress nor download instantly).
func bigImage(t *testing.T) string {
	t.Helper()
	need(t, "umoci", "tar")
	dir := t.TempDir()
	sh(t, dir, `umoci init --layout L && umoci new --image L:big && umoci unpack --image L:big B
echo small > B/rootfs/small && umoci repack --refresh-bundle --image L:big B
for i in 1 2; do mkdir B/rootfs/d$i && head -c 30000000 /dev/urandom > B/rootfs/d$i/f && umoci repack --refresh-bundle --image L:big B; done
tar -C L -cf big.oci.tar .`)
	return filepath.Join(dir, "big.oci.tar")
}

// A fetch killed with SIGKILL leaves no blob whose content mismatches its
// digest; the next fetch reuses the layers that completed.
func TestRegistryFetchKilled(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, "")
	ref := reg.push(t, bigImage(t), "test/big:v1")
	c, _, stderr := e.startBackground(fetchArgs(ref)...)
	waitFor(t, 20*time.Second, "a first layer to complete", func() bool { return strings.Contains(stderr.String(), "fetched") })
	_ = c.Process.Signal(syscall.SIGKILL)
	_ = c.Wait()

	v := e.ok("image", "verify")
	if !strings.Contains(v.stdout, "all blobs match") {
		t.Errorf("after SIGKILL: %q", v.stdout)
	}
	done := map[string]bool{}
	blobs, _ := os.ReadDir(filepath.Join(e.dir, "images", "blobs", "sha256"))
	for _, b := range blobs {
		done["sha256:"+b.Name()] = true
	}
	e.ok(fetchArgs(ref)...)
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	json.Unmarshal([]byte(e.ok("image", "cat-manifest", ref).stdout), &m)
	reused := 0
	for _, l := range m.Layers {
		if done[l.Digest] {
			reused++
			if n := reg.blobGets(t, l.Digest); n != 1 {
				t.Errorf("completed layer %s downloaded %d times", l.Digest, n)
			}
		}
	}
	if reused == 0 {
		t.Error("no layer completed before the kill; nothing reused")
	}
	e.ok("image", "verify")
	out := filepath.Join(t.TempDir(), "rootfs")
	e.ok("image", "extract", ref, out)
	if b, err := os.ReadFile(filepath.Join(out, "small")); err != nil || string(b) != "small\n" {
		t.Errorf("image after refetch: %q %v", b, err)
	}
}
