package main

import "testing"

func TestPodCgroup(t *testing.T) {
	const uuid = "0b9b3b8e-0000-4000-8000-000000000001"
	hybrid := []byte("9:name=systemd:/system.slice/web.service\n4:memory:/\n0::/system.slice/web.service\n")
	for _, c := range []struct {
		inv  string
		self []byte
		want string
	}{
		{"", hybrid, "/skiff/" + uuid},
		{"abc", hybrid, "/system.slice/web.service/skiff-" + uuid},
		{"abc", []byte("0::/user.slice/user-0.slice/session-1.scope\n"), "/user.slice/user-0.slice/session-1.scope/skiff-" + uuid},
		{"abc", []byte("1:name=systemd:/system.slice/db.service\n"), "/system.slice/db.service/skiff-" + uuid},
		{"abc", []byte("0::/\n"), "/skiff/" + uuid},
		{"abc", []byte("0::/system.slice\n"), "/skiff/" + uuid},
	} {
		if got := podCgroup(uuid, c.inv, c.self); got != c.want {
			t.Errorf("podCgroup(%q, %q) = %q, want %q", c.inv, c.self, got, c.want)
		}
	}
}
