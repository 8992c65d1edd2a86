package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fake is a backend of containers in memory, each with a directory under
// root (so that list sees it).
type fake struct{ c map[string]*fakeC }

type fakeC struct {
	id, bundle string
	status     specs.ContainerState
	signals    []int
	deleted    bool
	f          *fake
	root       string
}

func (f *fake) Prepare(root, id, bundle string, o globalOpts) (container, error) {
	if _, ok := f.c[id]; ok {
		return nil, errExists
	}
	if err := os.Mkdir(filepath.Join(root, id), 0o700); err != nil {
		return nil, err
	}
	c := &fakeC{id: id, bundle: bundle, status: specs.StateCreating, f: f, root: root}
	f.c[id] = c
	return c, nil
}

func (f *fake) Open(root, id string) (container, error) {
	if c, ok := f.c[id]; ok {
		return c, nil
	}
	return nil, errNotExist
}

func (c *fakeC) Create(createOpts) (int, error) { c.status = specs.StateCreated; return 0, nil }
func (c *fakeC) Start() error                   { c.status = specs.StateRunning; return nil }
func (c *fakeC) Signal(sig int, all bool) error {
	c.signals = append(c.signals, sig)
	return nil
}
func (c *fakeC) Exec(*specs.Process, execOpts) (*os.Process, error) { return nil, errNoExec }
func (c *fakeC) Delete(bool) error {
	delete(c.f.c, c.id)
	c.deleted = true
	return os.Remove(filepath.Join(c.root, c.id))
}
func (c *fakeC) State() (*specs.State, error) {
	return &specs.State{Version: specs.Version, ID: c.id, Status: c.status, Bundle: c.bundle}, nil
}
func (c *fakeC) ExitCode() (int, bool)   { return 0, false }
func (c *fakeC) Cgroup() (string, error) { return "", os.ErrNotExist }

var errNoExec = os.ErrInvalid

// cli runs skiff-oci's command line with the fake backend.
func cli(t *testing.T, f *fake, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root, g := newRoot(f)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	code = execute(root, g, &errb)
	return code, out.String(), errb.String()
}

func bundle(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	os.Mkdir(filepath.Join(d, "rootfs"), 0o755)
	spec := specs.Spec{Version: "1.0.2", Process: &specs.Process{Args: []string{"/bin/true"}, Cwd: "/"},
		Root: &specs.Root{Path: "rootfs"}}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(d, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestVersionIsRuncsThreeLines(t *testing.T) {
	for _, flag := range []string{"--version", "-v"} {
		code, out, _ := cli(t, &fake{}, flag)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "skiff-oci version ") ||
			!strings.HasPrefix(lines[1], "commit: ") || lines[2] != "spec: "+specs.Version {
			t.Errorf("%s: code %d, output %q; want runc's three lines", flag, code, out)
		}
	}
}

func TestWrapCNamesTheContainerOnce(t *testing.T) {
	if got := wrapC("c1", errNotRunning).Error(); got != "container c1: container not running" {
		t.Errorf("wrapC: %q", got)
	}
	if got := wrapC("c1", errors.New("container c1: gone")).Error(); got != "container c1: gone" {
		t.Errorf("wrapC of a named error: %q", got)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"9": 9, "KILL": 9, "SIGKILL": 9, "term": 15, "sigterm": 15, "HUP": 1,
		"SIGRTMIN+3": 37, "RTMIN": 34, "64": 64} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "65", "-1", "SIGNOPE", "", "RTMIN+40"} {
		if _, err := parseSignal(in); err == nil {
			t.Errorf("parseSignal(%q): no error", in)
		}
	}
}

func TestLifecycleErrorsUseRuncsWording(t *testing.T) {
	f := &fake{c: map[string]*fakeC{}}
	root := t.TempDir()
	b := bundle(t)
	r := func(args ...string) (int, string, string) {
		return cli(t, f, append([]string{"--root", root}, args...)...)
	}
	steps := []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"state", "nope"}, 1, "does not exist"},
		{[]string{"start", "nope"}, 1, "does not exist"},
		{[]string{"kill", "nope", "9"}, 1, "does not exist"},
		{[]string{"delete", "nope"}, 1, "does not exist"},
		{[]string{"delete", "--force", "nope"}, 0, ""},
		{[]string{"state", "../x"}, 1, "invalid container id"},
		{[]string{"create", "--bundle", filepath.Join(b, "missing"), "c1"}, 1, "no such file or directory"},
		{[]string{"create", "--bundle", b, "c1"}, 0, ""},
		{[]string{"create", "--bundle", b, "c1"}, 1, "container with id exists"},
		{[]string{"delete", "c1"}, 1, "cannot delete container c1 that is not stopped: created"},
		{[]string{"start", "c1"}, 0, ""},
		{[]string{"start", "c1"}, 1, "cannot start an already running container"},
		{[]string{"delete", "c1"}, 1, "cannot delete container c1 that is not stopped: running"},
		{[]string{"kill", "c1", "KILL"}, 0, ""},
		{[]string{"kill", "c1", "NOPE"}, 1, "unknown signal"},
		{[]string{"delete", "--force", "c1"}, 0, ""},
		{[]string{"state", "c1"}, 1, "does not exist"},
	}
	for _, s := range steps {
		code, _, stderr := r(s.args...)
		if code != s.code || !strings.Contains(stderr, s.want) || (s.want == "" && stderr != "") {
			t.Errorf("%v: code %d, stderr %q; want %d and %q", s.args, code, stderr, s.code, s.want)
		}
		if strings.Count(stderr, "\n") > 1 {
			t.Errorf("%v: error of more than one line: %q", s.args, stderr)
		}
	}
	// Nothing is left: no container directory, no lock file.
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.Name() != rootLockName && e.Name() != locksDir {
			t.Errorf("left behind under --root: %s", e.Name())
		}
	}
	if locks, _ := os.ReadDir(filepath.Join(root, locksDir)); len(locks) != 0 {
		t.Errorf("lock files left behind: %v", locks)
	}
}

func TestKillOfAStoppedContainer(t *testing.T) {
	f := &fake{c: map[string]*fakeC{}}
	root := t.TempDir()
	if code, _, stderr := cli(t, f, "--root", root, "create", "-b", bundle(t), "c2"); code != 0 {
		t.Fatal(stderr)
	}
	f.c["c2"].status = specs.StateStopped
	code, _, stderr := cli(t, f, "--root", root, "kill", "c2")
	if code != 1 || !strings.Contains(stderr, "container not running") {
		t.Errorf("kill of a stopped container: code %d, %q", code, stderr)
	}
	code, _, stderr = cli(t, f, "--root", root, "start", "c2")
	if code != 1 || !strings.Contains(stderr, "cannot start a container that has stopped") {
		t.Errorf("start of a stopped container: code %d, %q", code, stderr)
	}
	// runc signals what is left in a stopped container's cgroup and exits 0.
	if code, _, stderr := cli(t, f, "--root", root, "kill", "--all", "c2", "9"); code != 0 {
		t.Errorf("kill --all of a stopped container: code %d, %q; runc exits 0", code, stderr)
	}
	if code, _, stderr := cli(t, f, "--root", root, "delete", "c2"); code != 0 {
		t.Errorf("delete of a stopped container: code %d, %q", code, stderr)
	}
}

func TestStateAndListJSON(t *testing.T) {
	f := &fake{c: map[string]*fakeC{}}
	root := t.TempDir()
	b := bundle(t)
	for _, id := range []string{"b", "a"} {
		if code, _, stderr := cli(t, f, "--root", root, "create", "--bundle", b, id); code != 0 {
			t.Fatal(stderr)
		}
	}
	cli(t, f, "--root", root, "start", "a")
	code, out, _ := cli(t, f, "--root", root, "state", "a")
	var st stateJSON
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.ID != "a" || st.Status != "running" ||
		st.Bundle != b || st.OCIVersion == "" || st.Rootfs != filepath.Join(b, "rootfs") {
		t.Errorf("state: code %d, %v, %+v", code, err, st)
	}
	code, out, _ = cli(t, f, "--root", root, "list", "--format", "json")
	var l []stateJSON
	if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil || len(l) != 2 || l[0].ID != "a" ||
		l[1].ID != "b" || l[1].Status != "created" {
		t.Errorf("list --format json: code %d, %v, %s", code, err, out)
	}
	if code, out, _ = cli(t, f, "--root", root, "list", "-q"); out != "a\nb\n" {
		t.Errorf("list -q: %q", out)
	}
	if code, out, _ = cli(t, f, "--root", root, "list"); !strings.HasPrefix(out, "ID ") || strings.Count(out, "\n") != 3 {
		t.Errorf("list: %q", out)
	}
}

func TestErrorsGoToTheLogAsRuncWritesThem(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log.json")
	code, _, stderr := cli(t, &fake{c: map[string]*fakeC{}}, "--root", t.TempDir(), "--log", log, "--log-format", "json", "start", "x")
	b, _ := os.ReadFile(log)
	var line map[string]string
	if err := json.Unmarshal(b, &line); code != 1 || err != nil || line["level"] != "error" ||
		!strings.Contains(line["msg"], "does not exist") || line["time"] == "" || !strings.Contains(stderr, "does not exist") {
		t.Errorf("code %d, log %q (%v), stderr %q", code, b, err, stderr)
	}
}

func TestFeaturesIsJSON(t *testing.T) {
	code, out, _ := cli(t, &fake{}, "features")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v["ociVersionMax"] != specs.Version || v["linux"] == nil {
		t.Errorf("features: code %d, %v, %s", code, err, out)
	}
}

func TestExecProcessFromTheBundle(t *testing.T) {
	b := bundle(t)
	x := execFlags{env: []string{"A=1"}, cwd: "/tmp", user: "5:6", tty: true}
	p, err := x.processSpec(b, []string{"sh", "-c", "x"})
	if err != nil || strings.Join(p.Args, " ") != "sh -c x" || p.Cwd != "/tmp" || p.User.UID != 5 || p.User.GID != 6 ||
		!p.Terminal || len(p.Env) != 1 || p.Env[0] != "A=1" {
		t.Errorf("processSpec: %+v, %v", p, err)
	}
	if _, err := (&execFlags{user: "root"}).processSpec(b, []string{"sh"}); err == nil {
		t.Error("--user root: no error")
	}
}

func TestDeleteForceOfAHalfMadeContainer(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "h1", "apps"), 0o700) // a create killed before pod.json
	g := &globals{root: root}
	if !g.removeHalfMade("h1") {
		t.Fatal("removeHalfMade refused a directory without pod.json")
	}
	if _, err := os.Stat(filepath.Join(root, "h1")); !os.IsNotExist(err) {
		t.Errorf("h1 is still there: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "h2"), 0o700)
	os.WriteFile(filepath.Join(root, "h2", "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644) // a live init
	if g.removeHalfMade("h2") {
		t.Error("removeHalfMade removed a container whose init lives")
	}
	// A delete killed in its final RemoveAll: pod.json gone, the stage1's
	// directory left, the init long dead.
	os.MkdirAll(filepath.Join(root, "h3", "stage1", "upper"), 0o700)
	os.WriteFile(filepath.Join(root, "h3", "pid"), []byte("999999999"), 0o644)
	if !g.removeHalfMade("h3") {
		t.Error("removeHalfMade refused what a killed delete left")
	}
}

func TestTerminalNeedsAConsoleSocket(t *testing.T) {
	f := &fake{c: map[string]*fakeC{}}
	root, b := t.TempDir(), bundle(t)
	code, _, stderr := cli(t, f, "--root", root, "create", "--bundle", b, "--console-socket", "/tmp/x.sock", "t1")
	if code != 1 || !strings.Contains(stderr, "terminal is false") {
		t.Errorf("--console-socket without a terminal: code %d, %q", code, stderr)
	}
	raw, _ := os.ReadFile(filepath.Join(b, "config.json"))
	os.WriteFile(filepath.Join(b, "config.json"), bytes.Replace(raw, []byte(`"cwd"`), []byte(`"terminal":true,"cwd"`), 1), 0o644)
	code, _, stderr = cli(t, f, "--root", root, "create", "--bundle", b, "t1")
	if code != 1 || !strings.Contains(stderr, "--console-socket") {
		t.Errorf("a terminal without --console-socket: code %d, %q", code, stderr)
	}
	if len(f.c) != 0 {
		t.Errorf("containers made: %v", f.c)
	}
}

func TestFlavorFromTheProgramName(t *testing.T) {
	for name, want := range map[string]string{"skiff-oci": "", "skiff-oci-kvm": "kvm"} {
		if got := flavorOf(name); got != want {
			t.Errorf("flavorOf(%q) = %q, want %q", name, got, want)
		}
	}
}
