//go:build functional

package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue #19 (first contact): rkt's pod-level --set-env and --set-env-file
// reach every app; an app's own --set-env after its image wins.
func TestPodLevelSetEnv(t *testing.T) {
	e := newEnv(t)
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# the file's\nFILE=from-file\nB=from-file\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	show := `echo "$0 A=$A B=$B FILE=$FILE"`
	r := e.ok(e.runArgs("--set-env=A=pod", "--set-env=B=pod", "--set-env-file="+envFile,
		e.image("busybox"), "--name=one", "--set-env=A=app", "--", "/bin/sh", "-c", show, "one",
		"---", e.image("busybox"), "--name=two", "--", "/bin/sh", "-c", show, "two")...)
	for _, want := range []string{"one A=app B=pod FILE=from-file", "two A=pod B=pod FILE=from-file"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout %q lacks %q", r.stdout, want)
		}
	}
}

// Issue #19: flags are checked before anything is fetched or created: a bad
// value fails with one line naming the flag and leaves no pod behind.
func TestBadFlagValuesLeaveNoPod(t *testing.T) {
	e := newEnv(t)
	img := e.image("busybox")
	e.fails(125, []string{"--uuid-file-save", "/nonexistent-dir", "create it"},
		e.runArgs("--uuid-file-save=/nonexistent-dir/uuid", img, "--", "true")...)
	e.fails(125, []string{"--hostname", "RFC 1123"}, e.runArgs("--hostname=a!b", img, "--", "true")...)
	e.fails(125, []string{"--hostname", "at most 64"}, e.runArgs("--hostname="+strings.Repeat("h", 80), img, "--", "true")...)
	e.fails(125, []string{"--stop-timeout=-1s"}, e.runArgs("--stop-timeout=-1s", img, "--", "true")...)
	// The kvm stage1's refusals come before the app's image is fetched (a
	// missing archive here would otherwise be the complaint).
	if kvm := filepath.Join(filepath.Dir(e.bin), "stage1-kvm.oci.tar"); fileExists(kvm) {
		e.fails(125, []string{"--private-users", "kvm"}, "--insecure-options=image", "run", "--stage1-path="+kvm,
			"--private-users", "oci-archive:/nonexistent/app.tar")
		e.fails(125, []string{"--net=host", "VM"}, "--insecure-options=image", "run", "--stage1-path="+kvm,
			"--net=host", "oci-archive:/nonexistent/app.tar")
	}
	if dirs := e.podDirs(); len(dirs) != 0 {
		t.Fatalf("refused command lines left pods: %v", dirs)
	}
}

// Issue #19: misplaced flags and podman habits are answered with skiff's
// way, on one line with one pointer to help.
func TestMisplacedFlagHints(t *testing.T) {
	e := newEnv(t)
	img := e.image("busybox")
	for _, tc := range []struct {
		want []string
		args []string
	}{
		{[]string{"--memory", "app flag", "after its image"}, e.runArgs("--memory=64M", img)},
		{[]string{"--net", "pod flag", "before the first image"}, e.runArgs(img, "--net=host")},
		{[]string{"--port"}, e.runArgs("-p", "8080:80", img)},
		{[]string{"--interactive"}, e.runArgs("-it", img)},
		{[]string{"skiff enter"}, []string{"exec", "x"}},
		{[]string{"skiff list"}, []string{"ps"}},
		{[]string{"oci-archive:./bb.oci.tar"}, e.runArgs("./bb.oci.tar")},
		{[]string{"docker://docker.io/library/busybox"}, e.runArgs("docker.io/library/busybox")},
	} {
		r := e.fails(125, tc.want, tc.args...)
		if n := strings.Count(r.stderr, "--help'"); n > 1 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("skiff %q: %q: want one line with at most one pointer to help", tc.args, r.stderr)
		}
	}
}

// Issue #19: status --wait takes its limit as a word of its own, and on a
// prepared pod --wait and --wait-ready wait for the pod to be run.
func TestStatusWaitsForAPreparedPod(t *testing.T) {
	e := newEnv(t)
	uuid := strings.TrimSpace(e.ok(append([]string{"--insecure-options=image", "prepare"},
		append(e.stage1, e.image("busybox"), "--", "/bin/sh", "-c", "sleep 1; exit 3")...)...).stdout)
	e.fails(125, []string{uuid, "still prepared", "run-prepared"}, "status", "--wait", "1s", uuid)
	e.fails(125, []string{"not a duration"}, "status", "--wait", "soon", uuid)
	ready, readyOut, readyErr := e.startBackground("status", "--wait-ready", uuid)
	exited, exitedOut, exitedErr := e.startBackground("status", "--wait", uuid)
	time.Sleep(500 * time.Millisecond) // let both load the pod while it is prepared (a later start passes too)
	if r := e.skiff("run-prepared", uuid); r.code != 3 {
		t.Fatalf("run-prepared: exit %d, %q", r.code, r.stderr)
	}
	if err := ready.Wait(); err != nil || !strings.Contains(readyOut.String(), "ready=true") {
		t.Errorf("status --wait-ready on a prepared pod: %v, %q, %q", err, readyOut.String(), readyErr.String())
	}
	if err := exited.Wait(); err != nil || !strings.Contains(exitedOut.String(), "exit-code=3") {
		t.Errorf("status --wait on a prepared pod: %v, %q, %q", err, exitedOut.String(), exitedErr.String())
	}
}

// Issue #19: logs --tail and --since; an empty log says why it may be empty.
func TestLogsTailSinceAndEmpty(t *testing.T) {
	e := newEnv(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	e.ok(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/sh", "-c", "echo oops >&2; for i in 1 2 3 4 5; do echo line$i; done")...)
	uuid := readTrimmed(t, uf)
	// The last two lines of both streams (their order across streams is the
	// log's): line5 and one other.
	if r := e.ok("logs", "--tail=2", uuid); !strings.HasSuffix(r.stdout, "line5\n") || strings.Count(r.stdout+r.stderr, "\n") != 2 {
		t.Errorf("logs --tail=2: stdout %q stderr %q", r.stdout, r.stderr)
	}
	if r := e.ok("logs", "--tail=0", uuid); r.stdout+r.stderr != "" {
		t.Errorf("logs --tail=0: stdout %q stderr %q", r.stdout, r.stderr)
	}
	if r := e.ok("logs", "--since=1h", uuid); r.stdout != "line1\nline2\nline3\nline4\nline5\n" || r.stderr != "oops\n" {
		t.Errorf("logs --since=1h: stdout %q stderr %q", r.stdout, r.stderr)
	}
	if r := e.ok("logs", "--since="+time.Now().Add(time.Hour).Format(time.RFC3339), uuid); r.stdout != "" || r.stderr != "" {
		t.Errorf("logs --since=(in an hour): stdout %q stderr %q", r.stdout, r.stderr)
	}
	e.fails(125, []string{"--since=soon"}, "logs", "--since=soon", uuid)

	e.ok(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/true")...)
	quiet := readTrimmed(t, uf)
	if r := e.ok("logs", quiet); r.stdout != "" || !strings.Contains(r.stderr, "no logged output") || !strings.Contains(r.stderr, "terminal") {
		t.Errorf("logs of a pod that logged nothing: stdout %q stderr %q; want a note why", r.stdout, r.stderr)
	}
}

// Issue #19: one set of formats for every listing verb (table, json,
// json-pretty, --no-legend, --full); list is oldest pod first; table times
// carry their zone.
func TestListingFormats(t *testing.T) {
	e := newEnv(t)
	var uuids []string
	for i := 0; i < 5; i++ {
		uuids = append(uuids, strings.TrimSpace(e.ok(append([]string{"--insecure-options=image", "prepare"},
			append(e.stage1, e.image("busybox"))...)...).stdout))
	}
	ps := e.pods()
	for i := range ps {
		if ps[i].UUID != uuids[i] {
			t.Fatalf("list is not in creation order: %v, prepared %v", ps, uuids)
		}
	}
	for _, verb := range [][]string{{"list"}, {"status", uuids[0]}, {"image", "list"}, {"trust", "--list"}, {"version"}} {
		for _, f := range []string{"table", "json", "json-pretty"} {
			r := e.ok(append(verb, "--format="+f, "--no-legend", "--full")...)
			switch {
			case f == "json" && strings.Count(strings.TrimSpace(r.stdout), "\n") != 0:
				t.Errorf("%v --format=json is not one line: %q", verb, r.stdout)
			case f == "json-pretty" && r.stdout != "[]\n" && !strings.Contains(r.stdout, "\n  "):
				t.Errorf("%v --format=json-pretty is not indented: %q", verb, r.stdout)
			}
		}
	}
	e.ok("image", "list", "--format=")
	table := e.ok("list", "--full").stdout
	if !strings.Contains(table, "IMAGE ID") || !strings.Contains(table, "sha256:") {
		t.Errorf("list --full has no full image IDs: %q", table)
	}
	if st := e.ok("status", uuids[0]).stdout; !regexp.MustCompile(`created=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)\n`).MatchString(st) {
		t.Errorf("status has a time without its zone: %q", st)
	}
	e.fails(125, []string{"--format=yaml", "json-pretty"}, "image", "list", "--format=yaml")
}

// Issue #19: an archive's bare ref name ("latest") is no store-wide name;
// image rm NAME removes that name only while the image has others; a short
// ID prefix is explained.
func TestImageNames(t *testing.T) {
	e := newEnv(t)
	bb, layered := e.image("busybox"), e.image("layered")
	e.ok("--insecure-options=image", "fetch", bb, bb+":latest", layered)
	e.fails(125, []string{"latest", "not found", "image list"}, "image", "rm", "latest")
	if l := e.ok("image", "list", "--no-legend").stdout; strings.Count(l, "\n") != 2 {
		t.Fatalf("image rm latest removed an image: %q", l)
	}
	if r := e.ok("image", "rm", bb); !strings.Contains(r.stdout, "removed name") {
		t.Errorf("image rm NAME: %q", r.stdout)
	}
	if l := e.ok("image", "list", "--no-legend").stdout; !strings.Contains(l, bb+":latest") || strings.Count(l, "\n") != 2 {
		t.Errorf("image rm NAME removed the image's other name: %q", l)
	}
	e.ok("image", "rm", bb+":latest") // the last name: the image goes
	if l := e.ok("image", "list", "--no-legend").stdout; strings.Count(l, "\n") != 1 || !strings.Contains(l, layered) {
		t.Errorf("image rm of the last name left: %q", l)
	}
	e.fails(125, []string{"42", "4 hex digits"}, "image", "rm", "42")
}

// Issue #19: without root, skiff says once that it needs root, before it
// tries anything; version still works.
func TestWithoutRootSaysSoOnce(t *testing.T) {
	e := newEnv(t)
	nobody := func(args ...string) result {
		c := e.cmd(args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out, errb strings.Builder
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("skiff %q as nobody: %v", args, err)
		}
		return result{stdout: out.String(), stderr: errb.String(), code: code}
	}
	for _, args := range [][]string{e.runArgs(e.image("busybox"), "--", "true"), {"gc"}, {"list"}, {"image", "list"}} {
		r := nobody(args...)
		if r.code != 125 || !strings.Contains(r.stderr, "needs root") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("skiff %q without root: exit %d, stderr %q; want 125 and one line saying it needs root", args, r.code, r.stderr)
		}
	}
	if _, err := os.Stat(e.dir); err == nil {
		t.Errorf("skiff without root created %s", e.dir)
	}
	if r := nobody("version"); r.code != 0 {
		t.Errorf("version without root: exit %d, %q", r.code, r.stderr)
	}
}

// Issue #19: version and --help tell a newcomer the three ways to use skiff.
func TestVersionAndHelpNameTheThreeWays(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{{"version"}, {"--help"}} {
		out := e.ok(args...).stdout
		for _, want := range []string{"skiff run IMAGE", "skiff generate unit IMAGE", "skiff-oci", "README"} {
			if !strings.Contains(out, want) {
				t.Errorf("skiff %v does not mention %q: %q", args, want, out)
			}
		}
	}
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
