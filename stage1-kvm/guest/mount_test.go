package guest

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	for _, c := range []struct {
		opts  []string
		flags uintptr
		data  string
	}{
		{[]string{"rbind", "ro"}, unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, ""},
		{[]string{"nosuid", "strictatime", "mode=755", "size=65536k"}, unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
		{[]string{"ro", "rw", "noexec"}, unix.MS_NOEXEC, ""}, // a later rw clears ro
		{[]string{"newinstance", "ptmxmode=0666"}, 0, "newinstance,ptmxmode=0666"},
		{[]string{"rbind", "rro", "nosuid"}, unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY | unix.MS_NOSUID, ""},
	} {
		flags, data := parseOptions(c.opts)
		if flags != c.flags || data != c.data {
			t.Errorf("parseOptions(%q) = %#x, %q; want %#x, %q", c.opts, flags, data, c.flags, c.data)
		}
	}
}

func TestGuestSource(t *testing.T) {
	c := &Config{PodDir: "/var/lib/skiff/pods/run/U", Shares: []Share{
		{Tag: "vol0", Source: "/srv/data"},
		{Tag: "vol1", Source: "/etc/app.conf", File: true},
	}}
	for host, want := range map[string]string{
		"/var/lib/skiff/pods/run/U/stage1/net/hosts": "/skiff/pod/stage1/net/hosts",
		"/var/lib/skiff/pods/run/U/volumes/cache":    "/skiff/pod/volumes/cache",
		"/srv/data":          "/skiff/shares/vol0",
		"/srv/data/sub/file": "/skiff/shares/vol0/sub/file",
		"/etc/app.conf":      "/skiff/shares/vol1/app.conf",
	} {
		got, err := c.guestSource(host)
		if err != nil || got != want {
			t.Errorf("guestSource(%s) = %q, %v; want %q", host, got, err, want)
		}
	}
	// Not shared: a sibling of a shared file, a path that only starts like
	// a shared one, anything else of the host.
	for _, host := range []string{"/etc/passwd", "/srv/database", "/var/lib/skiff/pods/run/U2/x", "/"} {
		if got, err := c.guestSource(host); err == nil {
			t.Errorf("guestSource(%s) = %q; want an error (not shared with the VM)", host, got)
		}
	}
}
