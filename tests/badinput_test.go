//go:build functional

package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.tar")
	os.WriteFile(garbage, []byte("this is not a tar archive"), 0o644)
	emptyLayout := filepath.Join(dir, "empty")
	os.MkdirAll(emptyLayout, 0o755)

	e.fails(125, []string{"/no/such.tar"}, e.runArgs("oci-archive:/no/such.tar")...)
	e.fails(125, []string{garbage}, e.runArgs("oci-archive:"+garbage)...)
	e.fails(125, []string{emptyLayout}, e.runArgs("oci:"+emptyLayout)...)
	e.fails(125, []string{"bb.tar", "oci-archive:"}, e.runArgs("bb.tar")...)
	e.fails(125, []string{"bogus", "no such network"}, e.runArgs("--net=bogus", e.image("busybox"))...)
	e.fails(125, []string{"--insecure-options", "bogus"}, "--insecure-options=bogus", "run", e.image("busybox"))
	e.fails(125, []string{"no image"}, e.runArgs()...)
	e.fails(125, []string{"--bogus"}, e.runArgs(e.image("busybox"), "--bogus")...)
	e.fails(125, []string{"00000000", "no such pod"}, "status", "00000000")
	e.fails(125, []string{"no such pod"}, "rm", "00000000-0000-0000-0000-000000000000")
	e.fails(125, []string{"--format"}, "list", "--format=yaml")
	// Nothing of the failed runs is left as a pod, prepared or otherwise.
	if ps := e.pods(); len(ps) != 0 {
		t.Fatalf("failed runs left pods: %+v", ps)
	}
}

func TestUnsignedImageIsRefusedByDefault(t *testing.T) {
	e := newEnv(t)
	r := e.fails(125, []string{"busybox.oci.tar", "not signed", "--insecure-options=image"}, "run", e.image("busybox"))
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
	if ps := e.pods(); len(ps) != 0 {
		t.Fatalf("a refused image left pods: %+v", ps)
	}
}

func TestAmbiguousUUIDPrefix(t *testing.T) {
	e := newEnv(t)
	// Run pods until two share a first hex digit, then ask for that digit.
	seen := map[byte]bool{}
	for i := 0; i < 17; i++ {
		uuidFile := filepath.Join(t.TempDir(), "u")
		e.ok(e.runArgs("--uuid-file-save="+uuidFile, e.image("busybox"), "--", "/bin/true")...)
		b, _ := os.ReadFile(uuidFile)
		if seen[b[0]] {
			e.fails(125, []string{string(b[:1]), "matches 2 pods"}, "status", string(b[:1]))
			return
		}
		seen[b[0]] = true
	}
	t.Fatal("17 pods and no shared first digit")
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
