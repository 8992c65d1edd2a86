package prepare

import (
	"reflect"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseApps(t *testing.T) {
	apps, err := ParseApps([]string{"a.tar", "--name=web", "--set-env=A=1", "--", "x", "--", "---notsep",
		"---", "b.tar", "--exec=/bin/w"})
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 { // "---notsep" is an argument; the lone "---" separates
		t.Fatalf("got %d apps: %+v", len(apps), apps)
	}
	if apps[0].Name != "web" || !reflect.DeepEqual(apps[0].Args, []string{"x", "--", "---notsep"}) || !apps[0].ArgsGiven {
		t.Fatalf("first app: %+v", apps[0])
	}
	if last := apps[len(apps)-1]; last.Image != "b.tar" || last.Exec != "/bin/w" || last.ArgsGiven {
		t.Fatalf("second app: %+v", last)
	}
	for _, bad := range [][]string{nil, {"--name=x"}, {"a.tar", "stray"}, {"a.tar", "--bogus"}, {"a.tar", "--set-env=NOEQUALS"}} {
		if _, err := ParseApps(bad); err == nil {
			t.Errorf("ParseApps(%q) accepted", bad)
		}
	}
}

func TestAppSpec(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"c1"}, Env: []string{"A=1", "PATH=/p"}, WorkingDir: "/w", User: "app"}
	cases := []struct {
		a    AppArgs
		args []string
	}{
		{AppArgs{}, []string{"/ep", "c1"}},
		{AppArgs{Args: []string{"x"}, ArgsGiven: true}, []string{"/ep", "x"}},
		{AppArgs{ArgsGiven: true}, []string{"/ep"}},
		{AppArgs{Exec: "/bin/sh", Args: []string{"-c", "true"}, ArgsGiven: true}, []string{"/bin/sh", "-c", "true"}},
	}
	for _, c := range cases {
		s, err := processSpec("app", c.a, img, false)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.Process.Args, c.args) {
			t.Errorf("%+v: args %q, want %q", c.a, s.Process.Args, c.args)
		}
	}
	s, _ := processSpec("app", AppArgs{SetEnv: []string{"A=2", "B=3"}, User: "7:8"}, img, false)
	if !reflect.DeepEqual(s.Process.Env, []string{"A=2", "PATH=/p", "B=3"}) {
		t.Errorf("env %q", s.Process.Env)
	}
	if s.Process.User.UID != 7 || s.Process.User.GID != 8 || s.Annotations != nil || s.Process.Cwd != "/w" {
		t.Errorf("user/cwd %+v %v %q", s.Process.User, s.Annotations, s.Process.Cwd)
	}
	s, _ = processSpec("app", AppArgs{}, img, false)
	if s.Annotations["dev.skiff.app.user"] != "app" {
		t.Errorf("named user not kept: %v", s.Annotations)
	}
	if _, err := processSpec("app", AppArgs{}, ocispec.ImageConfig{}, false); err == nil {
		t.Error("image without a command accepted")
	}
	for _, bad := range []AppArgs{{User: "a b"}, {WorkingDir: "rel"}} {
		if _, err := processSpec("app", bad, img, false); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if s, _ := processSpec("app", AppArgs{}, ocispec.ImageConfig{Cmd: []string{"x"}}, false); s.Process.Env[0] != defaultPath {
		t.Errorf("no default PATH: %q", s.Process.Env)
	}
}

func TestAppName(t *testing.T) {
	for in, want := range map[string]string{
		"oci-archive:/x/bb.oci.tar":         "bb",
		"oci-archive:/x/bb.tar:latest":      "bb",
		"oci:/srv/My_Image":                 "my-image",
		"docker://reg:5000/team/app:v1":     "app",
		"docker://reg/team/app@sha256:abcd": "app",
		"example.com/app:1.0":               "app",
	} {
		got, err := AppName(AppArgs{Image: in})
		if err != nil || got != want {
			t.Errorf("AppName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := AppName(AppArgs{Name: "Bad_Name"}); err == nil {
		t.Error("bad --name accepted")
	}
}
