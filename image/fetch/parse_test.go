package fetch

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const (
	testDigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	manifestOK = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
		"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + testDigest + `","size":0},
		"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + testDigest + `","size":0}]}`
	dockerOK = `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
		"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + testDigest + `","size":0},
		"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"` + testDigest + `","size":0}]}`
	indexOK  = `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + testDigest + `","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}`
	configOK = `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + testDigest + `"]}}`
)

func TestParseManifest(t *testing.T) {
	for _, ok := range []string{manifestOK, dockerOK} {
		if _, err := ParseManifest([]byte(ok)); err != nil {
			t.Errorf("ParseManifest: %v", err)
		}
	}
	zstd := strings.Replace(manifestOK, "tar+gzip", "tar+zstd", 1)
	if _, err := ParseManifest([]byte(zstd)); err != nil {
		t.Errorf("zstd layer: %v", err)
	}
	odd := strings.Replace(manifestOK, "tar+gzip", "tar+lz4", 1)
	if _, err := ParseManifest([]byte(odd)); !errors.Is(err, ErrUnsupportedMediaType) || !strings.Contains(err.Error(), "lz4") {
		t.Errorf("lz4 layer: %v", err)
	}
	for _, bad := range []string{`{}`, `{"schemaVersion":2}`, strings.Replace(manifestOK, testDigest, "sha256:12", 1), `[`} {
		if _, err := ParseManifest([]byte(bad)); err == nil {
			t.Errorf("ParseManifest(%s): no error", bad)
		}
	}
	if _, err := ParseIndex([]byte(indexOK)); err != nil {
		t.Errorf("ParseIndex: %v", err)
	}
	if _, err := ParseConfig([]byte(configOK)); err != nil {
		t.Errorf("ParseConfig: %v", err)
	}
	if _, err := ParseConfig([]byte(`{"rootfs":{"type":"layers","diff_ids":["md5:x"]}}`)); err == nil {
		t.Error("ParseConfig accepted a bad diffID")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{manifestOK, dockerOK, indexOK, configOK, `{"schemaVersion":2,"manifests":[]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := ParseManifest(data); err == nil {
			again, _ := json.Marshal(m)
			if _, err := ParseManifest(again); err != nil {
				t.Fatalf("manifest does not survive a round trip: %v", err)
			}
		}
		if idx, err := ParseIndex(data); err == nil {
			selectRef(idx, "latest")
			selectPlatform(idx)
		}
		ParseConfig(data)
	})
}
