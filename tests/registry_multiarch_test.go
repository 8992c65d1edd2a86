//go:build functional

package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// layoutManifest is the one manifest descriptor of an OCI layout's index.json.
func layoutManifest(t *testing.T, layout string) map[string]any {
	t.Helper()
	var idx struct {
		Manifests []map[string]any `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil || json.Unmarshal(b, &idx) != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json of %s: %v %s", layout, err, b)
	}
	d := idx.Manifests[0]
	delete(d, "annotations")
	return d
}

// A multi-arch index resolves to this machine's platform: an index whose
// arm64 entry is the inspect image and whose amd64 entry is busybox runs busybox.
func TestRegistryMultiArchIndex(t *testing.T) {
	need(t, "skopeo", "tar")
	e := newEnv(t)
	reg := startRegistry(t, "")
	layout := filepath.Join(t.TempDir(), "multi")
	sh(t, "/", "mkdir -p "+layout+" && tar -C "+layout+" -xf "+filepath.Join(e.images, "busybox.oci.tar"))
	amd64 := layoutManifest(t, layout)
	other := filepath.Join(t.TempDir(), "other")
	sh(t, "/", "mkdir -p "+other+" && tar -C "+other+" -xf "+filepath.Join(e.images, "inspect.oci.tar")+
		" && cp -n "+other+"/blobs/sha256/* "+layout+"/blobs/sha256/")
	arm64 := layoutManifest(t, other)
	arm64["platform"] = map[string]string{"architecture": "arm64", "os": "linux"}
	amd64["platform"] = map[string]string{"architecture": "amd64", "os": "linux"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{arm64, amd64}})
	sum := sha256.Sum256(index)
	hexsum := hex.EncodeToString(sum[:])
	os.WriteFile(filepath.Join(layout, "blobs", "sha256", hexsum), index, 0o644)
	top, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{
		"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + hexsum, "size": len(index),
		"annotations": map[string]string{"org.opencontainers.image.ref.name": "multi"}}}})
	os.WriteFile(filepath.Join(layout, "index.json"), top, 0o644)
	ref := "docker://" + reg.host + "/test/multi:v1"
	if out, err := exec.Command("skopeo", "copy", "--quiet", "--multi-arch=all", "--dest-tls-verify=false",
		"oci:"+layout+":multi", ref).CombinedOutput(); err != nil {
		t.Fatalf("push the index: %v\n%s", err, out)
	}
	r := e.ok(append([]string{"--insecure-options=image,http", "run", "--net=none"}, append(e.stage1, ref, "--", "/bin/sh", "-c", "test -e /inspect && echo WRONG-PLATFORM; echo ran")...)...)
	if strings.Contains(r.stdout, "WRONG-PLATFORM") || !strings.Contains(r.stdout, "ran") {
		t.Fatalf("multi-arch index: %q %q", r.stdout, r.stderr)
	}
}
