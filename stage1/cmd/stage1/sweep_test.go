package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/skiff-project/skiff/stage1/abi"
)

// The cgroup run recorded is swept only when it names this pod and holds no
// glob metacharacter (sweepCgroup globs it under every hierarchy).
func TestPodCgroupsToSweep(t *testing.T) {
	const uuid = "0a1b2c3d-0000-4000-8000-000000000001"
	t.Chdir(t.TempDir())
	if err := os.MkdirAll(abi.Stage1Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for rec, want := range map[string]bool{
		"/skiff-oci/" + uuid:             true,
		"/a.slice/skiff-" + uuid:         true,
		"/other/pod":                     false,
		"/*/" + uuid:                     false,
		"/x/[a-z]/" + uuid:               false,
		"relative/" + uuid:               false,
		"/skiff/../../etc/" + uuid + "x": false,
	} {
		if err := os.WriteFile(filepath.Join(abi.Stage1Dir, "pod-cgroup"), []byte(rec+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got := podCgroupsToSweep(uuid)
		if got[0] != "/skiff/"+uuid {
			t.Errorf("%q: the default cgroup is not swept first: %v", rec, got)
		}
		if has := len(got) == 2 && slices.Contains(got, filepath.Clean(rec)); has != want {
			t.Errorf("recorded %q: swept %v, want it swept %v", rec, got, want)
		}
	}
}

func TestHierarchy(t *testing.T) {
	const cg = "/skiff/0a1b2c3d-0000-4000-8000-000000000001"
	for d, want := range map[string]string{
		"/sys/fs/cgroup/memory" + cg:      "memory",
		"/sys/fs/cgroup/cpu,cpuacct" + cg: "cpu,cpuacct",
		"/sys/fs/cgroup/unified" + cg:     "unified",
		"/sys/fs/cgroup" + cg:             "cgroup2",
	} {
		if got := hierarchy(d, cg); got != want {
			t.Errorf("hierarchy(%q) = %q, want %q", d, got, want)
		}
	}
}
