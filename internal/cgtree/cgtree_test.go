package cgtree

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// Dirs finds the container's cgroup in each hierarchy of a hybrid
// host by the recorded path: a v1 hierarchy of several controllers once
// under its own name (its per-controller links skipped), cgroup2 in
// unified, and nothing where the group is missing.
func TestDirsAndDir(t *testing.T) {
	root := t.TempDir()
	cg := "/skiff-oci/c1"
	mk := func(rel ...string) {
		for _, r := range rel {
			if err := os.MkdirAll(filepath.Join(root, r), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	touch := func(rel string) {
		if err := os.WriteFile(filepath.Join(root, rel), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("unified"+cg, "cpu,cpuacct"+cg, "freezer"+cg, "pids")
	touch("unified/cgroup.controllers")
	for _, h := range []string{"cpu,cpuacct", "freezer", "pids"} {
		touch(h + "/cgroup.procs")
	}
	if err := os.Symlink("cpu,cpuacct", filepath.Join(root, "cpu")); err != nil {
		t.Fatal(err)
	}
	got := Dirs(root, cg)
	want := map[string]string{
		"":        filepath.Join(root, "unified") + cg,
		"cpu":     filepath.Join(root, "cpu,cpuacct") + cg,
		"cpuacct": filepath.Join(root, "cpu,cpuacct") + cg,
		"freezer": filepath.Join(root, "freezer") + cg,
	}
	if !maps.Equal(got, want) {
		t.Errorf("Dirs = %v\nwant %v", got, want)
	}
	// Dir finds the same directories one controller at a time (cpu
	// through its link to cpu,cpuacct), and nothing where Dirs has none.
	for _, c := range []string{"", "freezer", "cpu", "pids", "memory"} {
		d, ok := Dir(root, cg, c)
		w, wok := want[c]
		if ok != wok {
			t.Errorf("Dir(%q) = %q, %v; Dirs has %q, %v", c, d, ok, w, wok)
			continue
		}
		if ok {
			a, errA := os.Stat(d)
			b, errB := os.Stat(w)
			if errA != nil || errB != nil || !os.SameFile(a, b) {
				t.Errorf("Dir(%q) = %q; Dirs has %q", c, d, w)
			}
		}
	}
	// Pure cgroup2: the root is the hierarchy, and its subdirectories are
	// groups (with their own cgroup.procs, one named freezer), not v1
	// hierarchies.
	root2 := t.TempDir()
	for _, d := range []string{"skiff-oci/c1", "system.slice/skiff-oci/c1", "freezer/skiff-oci/c1"} {
		if err := os.MkdirAll(filepath.Join(root2, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"cgroup.controllers", "cgroup.procs", "skiff-oci/cgroup.procs", "system.slice/cgroup.procs", "freezer/cgroup.procs"} {
		if err := os.WriteFile(filepath.Join(root2, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := Dirs(root2, cg); !maps.Equal(got, map[string]string{"": root2 + cg}) {
		t.Errorf("Dirs (pure cgroup2) = %v", got)
	}
	if d, ok := Dir(root2, cg, ""); !ok || d != root2+cg {
		t.Errorf("Dir(\"\") (pure cgroup2) = %q, %v", d, ok)
	}
	if d, ok := Dir(root2, cg, "freezer"); ok {
		t.Errorf("Dir(freezer) (pure cgroup2) = %q: a child group taken for a hierarchy", d)
	}
}
