//go:build functional

package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// env is one test's isolated skiff installation.
type env struct {
	t      *testing.T
	bin    string
	images string
	dir    string // --dir
	local  string // --local-config
	system string // --system-config
	stage1 []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("functional tests need root (namespaces, cgroups, overlayfs)")
	}
	bin, images := os.Getenv("SKIFF_BIN"), os.Getenv("SKIFF_TEST_IMAGES")
	if bin == "" || images == "" {
		t.Skip("SKIFF_BIN and SKIFF_TEST_IMAGES are not set; run the functional tests with `make test`")
	}
	root := t.TempDir()
	e := &env{t: t, bin: bin, images: images, dir: filepath.Join(root, "data"),
		local: filepath.Join(root, "etc"), system: filepath.Join(root, "usr")}
	if p := os.Getenv("SKIFF_STAGE1"); p != "" {
		e.stage1 = []string{"--stage1-path=" + p}
	}
	t.Cleanup(e.cleanup)
	return e
}

// flavor is the stage1 flavor under test, from SKIFF_STAGE1's file name
// (stage1-NAME.oci.tar); "default" without one.
func (e *env) flavor() string {
	p := os.Getenv("SKIFF_STAGE1")
	if p == "" {
		return "default"
	}
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "stage1-"), ".oci.tar")
}

// image is the path of a test image archive in skiff's reference syntax.
func (e *env) image(name string) string {
	return "oci-archive:" + filepath.Join(e.images, name+".oci.tar")
}

func (e *env) globals() []string {
	return []string{"--dir=" + e.dir, "--local-config=" + e.local, "--system-config=" + e.system}
}

// cmd builds a skiff command with this env's global flags.
func (e *env) cmd(args ...string) *exec.Cmd {
	c := exec.Command(e.bin, append(e.globals(), args...)...)
	c.Env = os.Environ()
	return c
}

// runArgs is "run" with the env's stage1 choice and unverified test images.
func (e *env) runArgs(args ...string) []string {
	a := append([]string{"--insecure-options=image", "run"}, e.stage1...)
	return append(a, args...)
}

type result struct {
	stdout, stderr string
	code           int
}

// skiff runs skiff to completion and returns what it printed and its exit code.
func (e *env) skiff(args ...string) result {
	e.t.Helper()
	c := e.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("skiff %q: %v", args, err)
	}
	return r
}

// ok runs skiff and fails the test unless it exits 0.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.skiff(args...)
	if r.code != 0 {
		e.t.Fatalf("skiff %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs skiff and checks it fails with code and a one-line error that
// contains every word of want.
func (e *env) fails(code int, want []string, args ...string) result {
	e.t.Helper()
	r := e.skiff(args...)
	if r.code != code {
		e.t.Fatalf("skiff %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			e.t.Errorf("skiff %q: stderr %q does not mention %q", args, r.stderr, w)
		}
	}
	return r
}

// podUUIDs lists the pods skiff knows, in list order.
func (e *env) pods() []podJSON {
	e.t.Helper()
	var ps []podJSON
	r := e.ok("list", "--format=json")
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
		e.t.Fatalf("list --format=json: %v\n%s", err, r.stdout)
	}
	return ps
}

type podJSON struct {
	UUID     string `json:"uuid"`
	State    string `json:"state"`
	PID      int    `json:"pid"`
	Ready    bool   `json:"ready"`
	ExitCode *int   `json:"exitCode"`
	Apps     []struct {
		Name     string `json:"name"`
		Image    string `json:"image"`
		ExitCode *int   `json:"exitCode"`
		Signal   string `json:"signal"`
	} `json:"apps"`
	Networks []struct {
		Name   string   `json:"name"`
		IfName string   `json:"ifName"`
		IPs    []string `json:"ips"`
	} `json:"networks"`
	Created *time.Time `json:"created"`
	Started *time.Time `json:"started"`
	Exited  *time.Time `json:"exited"`
}

func (e *env) status(uuid string) podJSON {
	e.t.Helper()
	var p podJSON
	r := e.ok("status", "--format=json", uuid)
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		e.t.Fatalf("status --format=json: %v\n%s", err, r.stdout)
	}
	return p
}

// cleanup removes every pod (through skiff gc) and then checks that nothing
// of this env is left on the host: no mounts under its directories, no
// cgroups of its pods.
func (e *env) cleanup() {
	pods := e.podDirs()
	_ = e.cmd("gc", "--grace-period=0s").Run()
	for _, m := range mountsUnder(e.dir) {
		e.t.Errorf("mount left behind after gc: %s", m)
	}
	for _, uuid := range pods {
		for _, cg := range cgroupsOf(uuid) {
			e.t.Errorf("cgroup left behind after gc: %s", cg)
		}
	}
}

func (e *env) podDirs() []string {
	var uuids []string
	states, _ := os.ReadDir(filepath.Join(e.dir, "pods"))
	for _, s := range states {
		ps, _ := os.ReadDir(filepath.Join(e.dir, "pods", s.Name()))
		for _, p := range ps {
			uuids = append(uuids, p.Name())
		}
	}
	return uuids
}

// mountsUnder lists mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			ms = append(ms, fields[4])
		}
	}
	return ms
}

// cgroupsOf finds the pod's cgroup directories in every mounted hierarchy.
func cgroupsOf(uuid string) []string {
	var found []string
	matches, _ := filepath.Glob("/sys/fs/cgroup/*/skiff/" + uuid)
	found = append(found, matches...)
	if _, err := os.Stat("/sys/fs/cgroup/skiff/" + uuid); err == nil {
		found = append(found, "/sys/fs/cgroup/skiff/"+uuid)
	}
	return found
}

// startBackground starts skiff and returns the command, its stdout and stderr
// buffers; the caller waits.
func (e *env) startBackground(args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	e.t.Helper()
	c := e.cmd(args...)
	out, errb := &syncBuffer{}, &syncBuffer{}
	c.Stdout, c.Stderr = out, errb
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if c.ProcessState == nil {
			_ = c.Process.Signal(syscall.SIGKILL)
			_ = c.Wait()
		}
	})
	return c, out, errb
}

// waitFor polls cond every 20ms until it holds or timeout passes.
//
// The timeout is a bound for a hang, never a speed check: under a flavor that
// boots a VM (QEMU under TCG on a loaded machine takes tens of seconds) it is
// stretched to at least 90 s.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	// A kvm pod, or a whole host under emulation (SKIFF_TEST_SLOW: tests/hostvm's TCG guest).
	slow := strings.Contains(filepath.Base(os.Getenv("SKIFF_STAGE1")), "kvm") || os.Getenv("SKIFF_TEST_SLOW") != ""
	if slow && timeout < 90*time.Second {
		timeout = max(4*timeout, 90*time.Second)
	}
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
