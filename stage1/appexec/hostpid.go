package appexec

// App-as-init (OCI mode, a bundle without a pid namespace: Kubernetes'
// hostPID, podman's --pid=host): the one exception to systemd as the
// container's init. There is no systemd and no app unit: pod-init, released
// by start, becomes the app through ExecAsInit with its own stdio (the
// caller's, or the pty libcontainer made) and preserved descriptors, and
// the app is the container's init, in the host's pid namespace, as under
// runc. The app's cgroup is then the container's own, the root of the
// sandbox's cgroup2 tree (enter joins it there).

import (
	"os"
)

// AppInitFile, in the stage1's rootfs (out of the apps' reach), says that
// the app is the container's init (oci-create writes it for a bundle
// without a pid namespace).
const AppInitFile = "/etc/skiff/oci-app-init"

// appInit says whether AppInitFile is there.
func appInit() bool { return marked(AppInitFile) }

// marked says whether the marker file p (oci-create's, in the stage1's
// rootfs) is there.
func marked(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// initFDs, when not 0, is how many descriptors (stdio and the preserved
// ones) the app takes from this process as the container's init
// (ExecAsInit): nothing comes from the stdio keeper.
var initFDs int

// ExecAsInit becomes app as the container's init (app-as-init): its stdio
// is this process's, with the nfds preserved descriptors from fd 3 on;
// listenFDs, when set, is how many of those are socket-activated (the app
// gets LISTEN_FDS and LISTEN_PID). It returns only on failure.
func ExecAsInit(app string, nfds int, listenFDs string) error {
	initFDs = 3 + nfds
	var env []string
	if listenFDs != "" {
		env = []string{"LISTEN_FDS=" + listenFDs}
	}
	return exec(app, nil, false, env, nil, 0)
}
