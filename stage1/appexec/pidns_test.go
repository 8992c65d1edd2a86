package appexec

import (
	"strings"
	"testing"
)

// The bundle's /proc paths as mountNestedProc takes them: cleaned, resolved
// below /proc, through no magic link (this process's /proc stands for the
// app's).
func TestInNestedProc(t *testing.T) {
	for _, tc := range []struct {
		p, clean string
		there    bool
		err      string
	}{
		{"/proc/net/../uptime", "/proc/uptime", true, ""}, // the kernel's walk would look in /proc/self
		{"/proc/./sys/", "/proc/sys", true, ""},
		{"/proc//sys/./kernel", "/proc/sys/kernel", true, ""},
		{"/proc/mounts", "/proc/mounts", true, ""}, // procfs's own link, to self/mounts
		{"/proc/no-such-file", "/proc/no-such-file", false, ""},
		{"/proc/uptime/x", "/proc/uptime/x", false, ""},
		{"/proc/../etc/passwd", "/etc/passwd", false, ""}, // not in /proc: not this code's
		{"/proc", "/proc", false, ""},
		{"proc/uptime", "proc/uptime", false, ""},
		{"/proc/self/root/etc", "/proc/self/root/etc", false, "leads out of /proc"},
		{"/proc/self/cwd", "/proc/self/cwd", false, "leads out of /proc"},
		{"/proc/1/root/..", "/proc/1", true, ""},
	} {
		c, st, err := inNestedProc(tc.p)
		if c != tc.clean || (st != nil) != tc.there || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("inNestedProc(%q) = %q, %v, %v; want %q, there %v, error %q", tc.p, c, st != nil, err, tc.clean, tc.there, tc.err)
		}
	}
}
