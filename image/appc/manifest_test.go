package appc

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func readManifestFixture(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest(readManifestFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Label("version"); m.Name != "example.com/reduce-worker" || v != "1.0.0" || m.App.User != "100" {
		t.Errorf("parsed %+v", m)
	}
}

func TestParseManifestRefusals(t *testing.T) {
	base := `"acKind":"ImageManifest","acVersion":"0.8.11"`
	app := func(fields string) string {
		return `{` + base + `,"name":"a","app":{"exec":["/x"],"user":"0","group":"0"` + fields + `}}`
	}
	for _, tc := range []struct{ in, want string }{
		{`{`, "unexpected end"},
		{`{"acKind":"PodManifest","acVersion":"1","name":"a"}`, "acKind"},
		{`{"acKind":"ImageManifest","name":"a"}`, "acVersion"},
		{`{` + base + `,"name":"Example.com/x"}`, "AC identifier"},
		{`{` + base + `,"name":"a//b"}`, "AC identifier"},
		{`{` + base + `,"name":"a","labels":[{"name":"version","value":"1"},{"name":"version","value":"2"}]}`, "twice"},
		{`{` + base + `,"name":"a","labels":[{"name":"name","value":"b"}]}`, "reserved"},
		{`{` + base + `,"name":"a","labels":[{"name":"arch","value":"amd64"}]}`, `without label "os"`},
		{`{` + base + `,"name":"a","dependencies":[{"imageName":"b"}]}`, "appc dependencies are not supported"},
		{`{` + base + `,"name":"a","pathWhitelist":["/x"]}`, "pathWhitelist"},
		{`{` + base + `,"name":"a","app":{"exec":["x"],"user":"0","group":"0"}}`, "absolute"},
		{`{` + base + `,"name":"a","app":{"exec":[],"user":"0","group":"0"}}`, "absolute"},
		{`{` + base + `,"name":"a","app":{"exec":["/x"],"group":"0"}}`, "user and group"},
		{app(`,"workingDirectory":"rel"`), "workingDirectory"},
		{app(`,"environment":[{"name":"A-B","value":"x"}]`), "environment variable"},
		{app(`,"eventHandlers":[{"name":"pre-start","exec":["/x"]}]`), "eventHandlers"},
		{app(`,"isolators":[{"name":"resource/cpu"}]`), "no value"},
		{app(`,"mountPoints":[{"name":"w","path":"rel"}]`), "not absolute"},
		{app(`,"mountPoints":[{"name":"w","path":"/a"},{"name":"w","path":"/b"}]`), "unique"},
		{app(`,"ports":[{"name":"p","protocol":"tcp","port":0}]`), "out of"},
		{app(`,"ports":[{"name":"p","protocol":"tcp","port":65535,"count":2}]`), "out of"},
		{app(`,"ports":[{"name":"p","protocol":"tcp","port":1,"count":18446744073709551615}]`), "out of"},
		{app(`,"ports":[{"name":"P","protocol":"tcp","port":80}]`), "AC name"},
	} {
		_, err := ParseManifest([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseManifest(%s): %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
	_, err := ParseManifest([]byte(`{` + base + `,"name":"a","dependencies":[{"imageName":"b"}]}`))
	if !errors.Is(err, ErrDependencies) {
		t.Errorf("dependencies: %v does not wrap ErrDependencies", err)
	}
	if _, err := ParseManifest([]byte(`{` + base + `,"name":"a","dependencies":[]}`)); err != nil {
		t.Errorf("empty dependencies refused: %v", err)
	}
}

func TestConfig(t *testing.T) {
	m, err := ParseManifest(readManifestFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	diffID := digest.FromString("layer")
	cfg := Config(m, diffID)
	c := cfg.Config
	if strings.Join(c.Entrypoint, " ") != "/usr/bin/reduce-worker --quiet" || c.Cmd != nil {
		t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	if c.User != "100:300" || c.WorkingDir != "/opt/work" || strings.Join(c.Env, ",") != "REDUCE_WORKER_DEBUG=true" {
		t.Errorf("user %q workdir %q env %q", c.User, c.WorkingDir, c.Env)
	}
	for _, p := range []string{"4000/tcp", "20000/tcp", "20001/tcp", "20002/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
		}
	}
	if _, ok := c.Volumes["/var/lib/work"]; !ok || len(c.ExposedPorts) != 4 {
		t.Errorf("volumes %v ports %v", c.Volumes, c.ExposedPorts)
	}
	for k, v := range map[string]string{
		LabelLabel + "version":                             "1.0.0",
		LabelAnnotation + "homepage":                       "https://example.com",
		ocispec.AnnotationURL:                              "https://example.com",
		ocispec.AnnotationVersion:                          "1.0.0",
		LabelIsolator + "resource/memory":                  `{"request": "1G", "limit": "2G"}`,
		LabelMountPoint + "work":                           "/var/lib/work:ro",
		LabelPort + "health":                               "4000/tcp+socket-activated",
		LabelPort + "ftp-data":                             "20000-20002/tcp",
		LabelIsolator + "os/linux/capabilities-retain-set": `{"set": ["CAP_NET_BIND_SERVICE"]}`,
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if cfg.Created == nil || cfg.Created.Year() != 2014 || cfg.Author != "Carly Container <carly@example.com>" {
		t.Errorf("created %v author %q", cfg.Created, cfg.Author)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != diffID || cfg.OS != "linux" {
		t.Errorf("rootfs %+v os %q", cfg.RootFS, cfg.OS)
	}
	if got := Names(m, "/x/rw.aci"); strings.Join(got, " ") != "/x/rw.aci example.com/reduce-worker:1.0.0" {
		t.Errorf("Names = %q", got)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(string(readManifestFixture(f)))
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseManifest([]byte(s))
		if err != nil {
			return
		}
		// A valid manifest stays valid through a JSON round trip and maps
		// onto an OCI config without panicking.
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseManifest(data); err != nil {
			t.Fatalf("re-encoded manifest refused: %v\n%s", err, data)
		}
		_ = Config(m, digest.FromString(s))
	})
}
