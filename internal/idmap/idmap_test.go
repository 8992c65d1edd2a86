package idmap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary is what UserNS re-executes.
func TestMain(m *testing.M) {
	Hold()
	os.Exit(m.Run())
}

func TestMountShiftsOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("idmapped mounts need root")
	}
	const base = 3 << 20
	ns, err := UserNS(base, 65536)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	src, target := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "root"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "app"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "app"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := Check(src, ns); errors.Is(err, ErrUnsupported) {
		t.Skipf("the test directory cannot be idmapped here: %v", err)
	}
	if err := Mount(src, target, ns); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	for name, want := range map[string]uint32{"root": base, "app": base + 1000} {
		fi, err := os.Stat(filepath.Join(target, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != want || st.Gid != want {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, want, want)
		}
	}
	// procfs cannot be idmapped: the error says so and names it.
	if err := Check("/proc", ns); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "proc") {
		t.Errorf("Check(/proc) = %v, want ErrUnsupported naming proc", err)
	}
}
