package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// commandLineError runs skiff's command tree on args (isolated in temp
// directories) and returns the one line skiff would print.
func commandLineError(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	root := newRoot()
	root.SetArgs(append([]string{"--dir=" + filepath.Join(dir, "data"), "--local-config=" + filepath.Join(dir, "conf"),
		"--system-config=" + filepath.Join(dir, "sys")}, args...))
	cmd, err := root.ExecuteC()
	if err == nil {
		t.Fatalf("skiff %q: no error", args)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Errorf("skiff %q: created the data directory before refusing the command line", args)
	}
	return errorMessage(cmd, err)
}

// Misplaced flags, and the flags and verbs of podman habits, name skiff's
// way; the pointer to help is given once.
func TestMisplacedAndForeignFlagsGetHints(t *testing.T) {
	const img = "oci-archive:/nonexistent/bb.tar"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--memory=64M", img}, "--memory: it is an app flag: put it after its image"},
		{[]string{"run", "--name=web", img}, "--name: it is an app flag"},
		{[]string{"prepare", "--cpu=500", img}, "--cpu: it is an app flag"},
		{[]string{"generate", "unit", "--user=1", img}, "--user: it is an app flag"},
		{[]string{"run", img, "--net=host"}, "--net: it is a pod flag: put it before the first image"},
		{[]string{"run", img, "--insecure-options=image"}, "--insecure-options: it is a pod flag"},
		{[]string{"run", img, "--", "x", "---", img, "--port=80:80"}, "--port: it is a pod flag"},
		{[]string{"run", img, "--bogus"}, "see the app flags in 'skiff run --help'"},
		{[]string{"run", "-d", img}, "'skiff generate unit'"},
		{[]string{"run", "--detach", img}, "'skiff prepare' then run the UUID with 'skiff run-prepared'"},
		{[]string{"run", "-it", img}, "use --interactive"},
		{[]string{"run", "-ti", img}, "use --interactive"},
		{[]string{"run", img, "-it"}, "use --interactive"},
		{[]string{"run", "-e", "A=B", img}, "use --set-env=NAME=VALUE"},
		{[]string{"run", img, "-e", "A=B"}, "use --set-env=NAME=VALUE"},
		{[]string{"run", "--env-file=f", img}, "use --set-env-file=FILE"},
		{[]string{"run", "-p", "80:80", img}, "use --port="},
		{[]string{"run", "--publish=80:80", img}, "use --port="},
		{[]string{"run", "-v", "/a:/b", img}, "use --volume=SOURCE:TARGET"},
		{[]string{"run", "--rm", img}, "'skiff gc'"},
		{[]string{"run", "--network=host", img}, "use --net="},
		{[]string{"run", img, "--entrypoint=/bin/sh"}, "use --exec=PATH"},
		{[]string{"run", img, "-w", "/tmp"}, "use --working-dir"},
		{[]string{"run", img, "--privileged"}, "--caps-retain"},
		{[]string{"ps"}, "use skiff list"},
		{[]string{"exec", "x"}, "use skiff enter"},
		{[]string{"pull", "x"}, "use skiff fetch"},
		{[]string{"kill", "x"}, "use skiff stop --force"},
		{[]string{"images"}, "use skiff image list"},
	} {
		msg := commandLineError(t, tc.args...)
		if !strings.Contains(msg, tc.want) {
			t.Errorf("skiff %q: %q; want a hint with %q", tc.args, msg, tc.want)
		}
		if n := strings.Count(msg, "--help'"); n != 1 {
			t.Errorf("skiff %q: %q: %d pointers to help, want 1", tc.args, msg, n)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("skiff %q: %q is not one line", tc.args, msg)
		}
	}
}

// Bad values are refused before anything is fetched or created (the data
// directory stays absent), each naming the flag.
func TestValuesAreCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	tarFile := filepath.Join(dir, "bb.tar")
	if err := os.WriteFile(tarFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "env")
	if err := os.WriteFile(envFile, []byte("# c\nA=1\nnot a pair\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := "oci-archive:" + tarFile
	kvm := filepath.Join(dir, "stage1-kvm.oci.tar")
	if err := os.WriteFile(kvm, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--hostname=a b", img}, "--hostname"},
		{[]string{"run", "--hostname=a!b", img}, "--hostname"},
		{[]string{"run", "--hostname=" + strings.Repeat("a", 80), img}, "at most 64"},
		{[]string{"run", "--hostname=-a", img}, "--hostname"},
		{[]string{"run", "--stop-timeout=-1s", img}, "--stop-timeout=-1s"},
		{[]string{"run", "--uuid-file-save=" + filepath.Join(dir, "no/such/dir/f"), img}, "--uuid-file-save"},
		{[]string{"prepare", "--uuid-file-save=" + dir, img}, "is a directory"},
		{[]string{"run", "--set-env=NOEQUALS", img}, "--set-env"},
		{[]string{"run", "--set-env-file=" + envFile, img}, "line 3"},
		{[]string{"run", "--set-env-file=" + filepath.Join(dir, "missing"), img}, "--set-env-file"},
		{[]string{"run", "--pull-policy=sometimes", img}, "sometimes"},
		{[]string{"run", img, "--memory=64X"}, "--memory=64X"},
		{[]string{"run", img, "--cpu=lots"}, "--cpu"},
		{[]string{"run", img, "--caps-retain=CAP_NOPE"}, "CAP_NOPE"},
		{[]string{"run", img, "--working-dir=rel"}, "--working-dir=rel"},
		{[]string{"run", "oci:" + tarFile}, "for an archive write oci-archive:" + tarFile},
		{[]string{"run", "oci-archive:" + dir}, "write oci:" + dir},
		{[]string{"run", "./bb.oci.tar"}, "oci-archive:./bb.oci.tar"},
		{[]string{"run", "docker.io/library/busybox"}, "docker://docker.io/library/busybox"},
		{[]string{"run", "--volume=./v:/data", img}, "absolute"},
		{[]string{"generate", "unit", "--volume=./v:/data", img}, "absolute"},
		{[]string{"generate", "unit", img, "--memory=64X"}, "--memory=64X"},
		{[]string{"generate", "unit", "--hostname=a!b", img}, "--hostname"},
		{[]string{"generate", "unit", "oci-archive:" + filepath.Join(dir, "missing.tar")}, "missing.tar"},
		{[]string{"generate", "unit", "--stage1-path=" + kvm, "--private-users", img}, "kvm stage1"},
		{[]string{"generate", "unit", "--stage1-path=" + kvm, "--net=host", img}, "a VM cannot share"},
		{[]string{"generate", "unit", "--stage1-name=nosuch", img}, "nosuch"},
	} {
		msg := commandLineError(t, tc.args...)
		if !strings.Contains(msg, tc.want) {
			t.Errorf("skiff %q: %q; want it to name %q", tc.args, msg, tc.want)
		}
	}
}

// generate unit writes absolute image and signature paths: systemd starts
// the service in /.
func TestGenerateUnitMakesImagePathsAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("bb.tar", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("env", []byte("A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	var out strings.Builder
	root.SetOut(&out)
	if err := os.WriteFile("stage1.oci.tar", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root.SetArgs([]string{"--dir=" + filepath.Join(dir, "data"), "generate", "unit", "--set-env-file=env", "--stage1-path=stage1.oci.tar",
		"oci-archive:bb.tar:latest", "--signature", "bb.tar.asc", "--", "bb.tar", "---", "oci-archive:./bb.tar", "--signature=s.asc"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var start string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "ExecStart=") {
			start = l
		}
	}
	for _, want := range []string{" oci-archive:" + dir + "/bb.tar:latest ", " --signature " + dir + "/bb.tar.asc ",
		" -- bb.tar --- ", " oci-archive:" + dir + "/bb.tar ", "--signature=" + dir + "/s.asc", "--set-env-file=" + dir + "/env", "--stage1-path=" + dir + "/stage1.oci.tar"} {
		if !strings.Contains(start+" ", want) {
			t.Errorf("ExecStart %q lacks %q", start, want)
		}
	}
}

// Without root, skiff refuses every verb that touches the store or a pod,
// once, and gives help, version and generate unit to anyone.
func TestNeedRoot(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		refuse bool
	}{
		{[]string{"run", "IMG"}, true},
		{[]string{"--dir=/x", "gc"}, true},
		{[]string{"image", "list"}, true},
		{[]string{"run", "IMG", "--", "--help"}, true},
		{[]string{"version"}, false},
		{[]string{"generate", "unit", "IMG"}, false},
		{[]string{"run", "--help"}, false},
		{[]string{"help", "run"}, false},
		{[]string{}, false},
		{[]string{"image"}, false},
		{[]string{"nosuchverb"}, false},
	} {
		err := needRoot(newRoot(), tc.args, 1000)
		if (err != nil) != tc.refuse {
			t.Errorf("needRoot(%q) = %v, want refused %t", tc.args, err, tc.refuse)
		}
		if err := needRoot(newRoot(), tc.args, 0); err != nil {
			t.Errorf("needRoot(%q) as root: %v", tc.args, err)
		}
	}
}
