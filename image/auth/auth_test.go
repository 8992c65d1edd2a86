package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `{"auths":{
	"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},
	"https://index.docker.io/v1/":{"username":"hub","password":"pw"},
	"http://Reg.Example:443/v2/":{"identitytoken":"tok"},
	"empty.example":{}}}`

func TestParse(t *testing.T) {
	c, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Credential{
		"127.0.0.1:5000":  {Username: "user", Password: "pa:ss"},
		"docker.io":       {Username: "hub", Password: "pw"},
		"reg.example:443": {IdentityToken: "tok"},
		"index.docker.io": {Username: "hub", Password: "pw"},
	}
	for host, w := range want {
		if got, ok := c.Lookup(host); !ok || got != w {
			t.Errorf("Lookup(%s) = %+v %v, want %+v", host, got, ok, w)
		}
	}
	if _, ok := c.Lookup("empty.example"); ok {
		t.Error("an entry without credentials was kept")
	}
	for _, bad := range []string{`[`, `{"auths":{"h":{"auth":"!!"}}}`, `{"auths":{"h":{"auth":"bm9jb2xvbg=="}}}`, `{"auths":{"":{"auth":"YTpi"}}}`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%s): no error", bad)
		}
	}
}

func TestLoadOrder(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	os.WriteFile(a, []byte(`{"auths":{"h":{"username":"first","password":"1"}}}`), 0o600)
	os.WriteFile(b, []byte(`{"auths":{"h":{"username":"second","password":"2"},"other":{"username":"o","password":"3"}}}`), 0o600)
	c, err := Load([]string{filepath.Join(dir, "missing.json"), a, b})
	if err != nil {
		t.Fatal(err)
	}
	if c["h"].Username != "first" || c["other"].Username != "o" {
		t.Errorf("Load: %+v", c)
	}
	os.WriteFile(b, []byte(`{`), 0o600)
	if _, err := Load([]string{b}); err == nil || !strings.Contains(err.Error(), b) {
		t.Errorf("bad file: %v", err)
	}
}

func TestDefaultFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "auth.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "auth.d", "z.json"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "auth.d", "a.json"), nil, 0o600)
	t.Setenv("REGISTRY_AUTH_FILE", "/env.json")
	t.Setenv("HOME", "/home/x")
	got := strings.Join(DefaultFiles(dir), ",")
	want := "/env.json," + dir + "/auth.d/a.json," + dir + "/auth.d/z.json,/home/x/.docker/config.json"
	if got != want {
		t.Errorf("DefaultFiles = %s, want %s", got, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(`{"auths":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		for host := range c {
			if host == "" || NormalizeHost(host) != host {
				t.Fatalf("host %q is not normalised", host)
			}
		}
	})
}
