// Package hostvm is skiff on a real systemd host (issue #15): `make test-host`
// boots the Debian bookworm VM scripts/build-hostvm makes (systemd as PID 1,
// D-Bus, journald, systemd-machined, pure cgroup v2, Debian's 6.1 kernel) once
// under QEMU, shares bin/ and build/images into it read-only over 9p, installs
// skiff the way `make install` does, and runs each scenario of the issue in it
// through hostvm-runner (runner/) on a virtio-serial port: no ssh, and no
// network but the guest's own. Build tag "hostvm"; the VM's console log is kept
// (its path printed) when a test fails.
package hostvm
