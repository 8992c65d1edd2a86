package pod

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
)

// benchPods is the pod count of the list and gc benchmarks (issue #18's
// scale goal: list and gc over 1,000 exited pods).
const benchPods = 1000

// makeExitedPods makes n exited pods the way skiff makes them: New (embryo,
// locked, prepare), the files stage0 and stage1 write (pod.json, pid, ready,
// networks.json, exit.json, apps/NAME/exit.json, clean, and the empty
// directories of an exited default-stage1 pod: its stage1 rootfs's writes
// were on a tmpfs, and stage1 removed its own empty directories at the end),
// the move to run, and the lock let go (so each reads as exited).
func makeExitedPods(tb testing.TB, dataDir string, n int) {
	tb.Helper()
	now := time.Now().UTC()
	dirs := []string{"apps/app/upper/etc", "apps/app/work/work", "logs", "stage1/net"}
	for range n {
		p, err := New(dataDir)
		if err != nil {
			tb.Fatal(err)
		}
		// As skiff writes it: the stage1's entrypoints and layers, the app's.
		layer := func(c string) string { return filepath.Join(dataDir, "images/layers/sha256", strings.Repeat(c, 64)) }
		m := abi.PodManifest{Version: 2, UUID: p.UUID, Created: now,
			Apps: []abi.App{{Name: "app", Image: abi.Image{Name: "oci-archive:busybox.oci.tar", ID: "sha256:e8f3"},
				Rootfs: abi.Rootfs{Layers: []string{layer("f")}}}}}
		m.Stage1 = abi.Stage1{Name: "stage1-default.oci.tar", ImageID: "sha256:" + strings.Repeat("4", 64), Flavor: "default",
			InterfaceVersion: 2, Rootfs: abi.Rootfs{Layers: []string{layer("9")}}, Entrypoints: map[string]string{}}
		for _, e := range []string{"enter", "gc", "oci-create", "run", "stop"} {
			m.Stage1.Entrypoints[e] = "/usr/lib/skiff/" + e
		}
		for _, d := range dirs {
			if err := os.MkdirAll(filepath.Join(p.Dir, d), 0o755); err != nil {
				tb.Fatal(err)
			}
		}
		files := map[string]any{
			abi.PodManifestFile: m,
			abi.PodExitFile:     abi.PodExit{ExitedAt: now},
			filepath.Join(abi.AppsDir, "app", abi.AppExitFile): abi.AppExit{App: "app", ExitedAt: now},
			abi.NetworksFile: []abi.NetworkStatus(nil),
		}
		for rel, v := range files {
			if err := abi.WriteJSON(filepath.Join(p.Dir, rel), v); err != nil {
				tb.Fatal(err)
			}
		}
		for rel, b := range map[string]string{abi.PIDFile: "4242\n", abi.ReadyFile: "", abi.CleanFile: "",
			"logs/pod.log": "", "stage1/pod-cgroup": "/skiff/" + p.UUID, "stage1/stop-timeout": "10s\n",
			"stage1/net/hosts": "127.0.0.1 localhost\n", "apps/app/config.json": "{}\n",
			"apps/app/upper/etc/hosts": "127.0.0.1 localhost\n"} {
			if err := os.WriteFile(filepath.Join(p.Dir, rel), []byte(b), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
		if err := p.Transition(Running); err != nil {
			tb.Fatal(err)
		}
		p.Close()
	}
}

// BenchmarkListStatus1000 is what skiff list reads of 1,000 exited pods:
// for its table (brief) and for --format=json (full).
func BenchmarkListStatus1000(b *testing.B) {
	dataDir := b.TempDir()
	makeExitedPods(b, dataDir, benchPods)
	for _, brief := range []bool{true, false} {
		b.Run(map[bool]string{true: "table", false: "json"}[brief], func(b *testing.B) {
			for range b.N {
				sts, err := ListStatus(dataDir, brief)
				if err != nil || len(sts) != benchPods || sts[0].State != Exited || sts[0].Manifest == nil {
					b.Fatalf("ListStatus: %d pods, %v", len(sts), err)
				}
			}
		})
	}
}

// BenchmarkGC1000 is one gc pass with no grace period (mark and sweep) over
// 1,000 exited pods whose stage1 has cleaned up (no stage1 gc to run).
func BenchmarkGC1000(b *testing.B) {
	for range b.N {
		b.StopTimer()
		dataDir := b.TempDir()
		makeExitedPods(b, dataDir, benchPods)
		// Written back first, as an exited pod's files are (skiffbench's
		// farm does the same): removing files whose fresh data is still
		// being written back costs more, and varies with the writeback.
		syscall.Sync()
		b.StartTimer()
		r, err := GC(dataDir, GCOptions{}, nil)
		if err != nil || len(r.Removed) != benchPods {
			b.Fatalf("GC removed %d pods: %v", len(r.Removed), err)
		}
	}
}

// ListStatus reads every pod once; brief (skiff list's table) leaves out
// what the table does not show.
func TestListStatus(t *testing.T) {
	dataDir := t.TempDir()
	makeExitedPods(t, dataDir, 3)
	for _, brief := range []bool{false, true} {
		sts, err := ListStatus(dataDir, brief)
		if err != nil || len(sts) != 3 {
			t.Fatalf("ListStatus(brief %t): %d pods, %v", brief, len(sts), err)
		}
		for _, st := range sts {
			if st.State != Exited || st.Manifest == nil || st.Created.IsZero() || st.Started.IsZero() || st.Exited.IsZero() ||
				len(st.Apps) != 1 || st.Apps[0].Name != "app" {
				t.Errorf("ListStatus(brief %t): %+v", brief, st)
			}
			if m := st.Manifest; len(m.Apps) != 1 || m.Apps[0].Name != "app" || m.Created.IsZero() ||
				m.Apps[0].Image != (abi.Image{Name: "oci-archive:busybox.oci.tar", ID: "sha256:e8f3"}) {
				t.Errorf("ListStatus(brief %t): the manifest's apps and images: %+v", brief, m)
			}
			if full := !brief; full != (st.Manifest.Stage1.Flavor == "default") {
				t.Errorf("ListStatus(brief %t): stage1 flavor %q", brief, st.Manifest.Stage1.Flavor)
			}
			if full := !brief; full != (st.PID == 4242 && st.Ready && st.Apps[0].Exit != nil) {
				t.Errorf("ListStatus(brief %t): pid %d ready %t app exit %v", brief, st.PID, st.Ready, st.Apps[0].Exit)
			}
		}
	}
}
