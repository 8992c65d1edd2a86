//go:build functional

package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Layer limits (issue #13, point 11): a layer or an ACI of a few kilobytes
// that expands past --max-layer-size, or holds more entries than
// --max-layer-entries, is refused with an error naming the image and the
// flag, and leaves nothing in the store; the defaults take it.

// bombTar is a tar of prefix+"zeros" (4 MiB of zeros) and 100 directories
// under prefix, and its gzip (a few KB).
func bombTar(t *testing.T, prefix string, head ...func(*tar.Writer)) (plain, gz []byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range head {
		h(tw)
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: prefix + "zeros", Mode: 0o644, Size: 4 << 20})
	tw.Write(make([]byte, 4<<20))
	for i := range 100 {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("%sd%d/", prefix, i), Mode: 0o755})
	}
	tw.Close()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(buf.Bytes())
	zw.Close()
	if z.Len() > 64<<10 {
		t.Fatalf("the bomb is %d bytes compressed", z.Len())
	}
	return buf.Bytes(), z.Bytes()
}

// layerArchive writes an OCI archive of one image, refName, whose one layer
// is the gzip layer gz of the tar plain.
func layerArchive(t *testing.T, path, refName string, plain, gz []byte) {
	t.Helper()
	if err := os.WriteFile(path, ociArchive(refName, "/zeros", "application/vnd.oci.image.layer.v1.tar+gzip", plain, gz), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkStoreHasNoLayer fails t if the store holds an extracted layer or
// anything in its tmp/.
func (e *env) checkStoreHasNoLayer(what string) {
	e.t.Helper()
	for _, d := range []string{"layers/sha256", "tmp"} {
		names, _ := filepath.Glob(filepath.Join(e.dir, "images", d, "*"))
		if len(names) > 0 {
			e.t.Errorf("%s left %v in the store", what, names)
		}
	}
}

func TestLayerLimits(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "bomb.oci.tar")
	plain, gz := bombTar(t, "")
	layerArchive(t, archive, "bomb", plain, gz)
	img := "oci-archive:" + archive
	e.fails(125, []string{archive, "more than 1048576 bytes", "--max-layer-size"},
		"--insecure-options=image", "--max-layer-size=1MiB", "fetch", img)
	e.checkStoreHasNoLayer("a layer over --max-layer-size")
	e.fails(125, []string{archive, "more than 50 entries", "--max-layer-entries"},
		"--insecure-options=image", "--max-layer-entries=50", "fetch", img)
	e.checkStoreHasNoLayer("a layer over --max-layer-entries")
	e.fails(125, []string{"--max-layer-size=lots", "64GiB"}, "--max-layer-size=lots", "fetch", img)
	// From a registry, a layer blob that says it is larger than the limit
	// is refused before it is downloaded.
	fr := newFakeRegistry(t, archive)
	e.fails(125, []string{fr.ref(), "its blob is", "--max-layer-size"},
		"--insecure-options=image,http", "--max-layer-size=1KiB", "fetch", fr.ref())
	e.checkStoreHasNoLayer("a registry layer over --max-layer-size")

	manifestJSON, _ := json.Marshal(manifest("skiff.test/bomb", nil))
	_, aciGz := bombTar(t, "rootfs/", func(tw *tar.Writer) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "manifest", Mode: 0o644, Size: int64(len(manifestJSON))})
		tw.Write(manifestJSON)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "rootfs/", Mode: 0o755})
	})
	aci := filepath.Join(dir, "bomb-1.0-linux-amd64.aci")
	os.WriteFile(aci, aciGz, 0o644)
	e.fails(125, []string{aci, "more than 1048576 bytes", "--max-layer-size"},
		"--insecure-options=image", "--max-layer-size=1MiB", "fetch", aci)
	e.fails(125, []string{aci, "more than 50 entries", "--max-layer-entries"},
		"--insecure-options=image", "--max-layer-entries=50", "fetch", aci)
	e.checkStoreHasNoLayer("an ACI over the limits")

	// The same images are fine under the default limits.
	e.ok("--insecure-options=image", "fetch", img)
	e.ok("--insecure-options=image", "fetch", aci)
}
