package joiner

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The joiners (enter, oci-join, app-exec), and only they, are made not
// dumpable (the constructor; NonDumpable leaves PR_GET_DUMPABLE at 0.
func TestNonDumpable(t *testing.T) {
	if got, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); got != 1 {
		t.Skipf("the test process is not dumpable to begin with (%d)", got)
	}
	defer unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	if err := NonDumpable(); err != nil {
		t.Fatal(err)
	}
	if got, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || got != 0 {
		t.Errorf("after NonDumpable: PR_GET_DUMPABLE = %d (%v); want 0", got, err)
	}
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"/usr/lib/skiff/enter", "--pid=1"}, true},
		{[]string{"/usr/lib/skiff/app-exec", "--inherit"}, true},
		{[]string{"/usr/lib/skiff/stage1", "oci-join", "3", "/usr/lib/skiff/app-exec"}, true},
		{[]string{"enter"}, true},
		{[]string{"/usr/lib/skiff/stage1", "pod-init"}, false},
		{[]string{"/usr/lib/skiff/stage1"}, false},
		{[]string{"/usr/lib/skiff/gc", "enter"}, false},
		{[]string{"/x/enterx"}, false},
		{[]string{"/usr/lib/skiff/stage1-kvm", "app-exec", "web"}, true},
		{[]string{"/usr/lib/skiff/stage1-kvm", "run"}, false},
		{[]string{"stage1-kvm"}, false},
		{nil, false},
	} {
		if got := Is(c.args); got != c.want {
			t.Errorf("Is(%q) = %v; want %v", c.args, got, c.want)
		}
	}
}
