package appexec

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// isolate drops to the app's user with the app's capabilities, sets
// no_new_privs and loads its seccomp filter — in runc's order: bounding set,
// keep-caps across the uid switch, capability sets, no_new_privs, filter last
// (right before exec, so the filter does not constrain this setup). Loading a
// filter needs no_new_privs or CAP_SYS_ADMIN: an app without no_new_privs
// gets its filter first, while this process still has CAP_SYS_ADMIN.
// In skiff's own mode a non-root app keeps its bounding set but gets empty
// effective, permitted, inheritable and ambient sets, and always gets
// no_new_privs. An OCI bundle's process (oci) states its capabilities and
// noNewPrivileges itself: they are applied as given, for any user, as runc
// does.
func isolate(spec *specs.Spec, u *user.ExecUser, oci bool) error {
	p := spec.Process
	nnp := p.NoNewPrivileges || (u.Uid != 0 && !oci)
	if !nnp {
		if err := loadSeccomp(spec); err != nil {
			return err
		}
	}
	caps := &configs.Capabilities{}
	if p.Capabilities != nil {
		caps.Bounding = p.Capabilities.Bounding
		if u.Uid == 0 || oci {
			caps.Effective, caps.Permitted = p.Capabilities.Effective, p.Capabilities.Permitted
			caps.Inheritable = p.Capabilities.Inheritable
			// Ambient capabilities survive the exec of a non-root
			// program; only an OCI bundle asks for them (runtime-spec's
			// default does) and skiff's own mode reaches here for root
			// only, which they give nothing it lacks.
			// The kernel raises only those (libcontainer warns on the app's
			// stderr about the others).
			caps.Ambient = within(p.Capabilities.Ambient, within(caps.Inheritable, caps.Permitted))
		}
	}
	w, err := capabilities.New(caps)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if p.Capabilities != nil {
		if err := w.ApplyBoundingSet(); err != nil {
			return fmt.Errorf("capability bounding set: %w", err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return err
	}
	if err := setgroups(u.Sgids); err != nil {
		return fmt.Errorf("supplementary groups %v: %w", u.Sgids, err)
	}
	if err := unix.Setresgid(u.Gid, u.Gid, u.Gid); err != nil {
		return idError("gid", u.Gid, err)
	}
	if err := unix.Setresuid(u.Uid, u.Uid, u.Uid); err != nil {
		return idError("uid", u.Uid, err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return err
	}
	if p.Capabilities != nil {
		if err := w.ApplyCaps(); err != nil {
			return fmt.Errorf("capabilities: %w", err)
		}
	}
	if !nnp {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return loadSeccomp(spec)
}

// idError explains a failed switch to an id: EINVAL means the id does not
// exist in the pod's user namespace (--private-users maps 0-65535 only).
func idError(kind string, id int, err error) error {
	if errors.Is(err, unix.EINVAL) {
		b, rerr := os.ReadFile("/proc/self/uid_map")
		if f := bytes.Fields(b); rerr == nil && len(f) >= 3 && string(f[2]) != "4294967295" {
			return fmt.Errorf("%s %d is not mapped in the pod's user namespace (--private-users maps ids 0-65535); run the app as another user", kind, id)
		}
	}
	return fmt.Errorf("%s %d: %w", kind, id, err)
}

// seccompArches are where a syscall name may come from: a name no supported
// architecture knows is a typo, which libseccomp would silently ignore.
var seccompArches = []libseccomp.ScmpArch{libseccomp.ArchAMD64, libseccomp.ArchX86, libseccomp.ArchX32}

func checkSyscallNames(s *specs.LinuxSeccomp) error {
	for _, sc := range s.Syscalls {
		for _, name := range sc.Names {
			known := false
			for _, arch := range seccompArches {
				if _, err := libseccomp.GetSyscallFromNameByArch(name, arch); err == nil {
					known = true
					break
				}
			}
			if !known {
				return fmt.Errorf("seccomp: unknown syscall %q; check --seccomp", name)
			}
		}
	}
	return nil
}

func loadSeccomp(spec *specs.Spec) error {
	if spec.Linux != nil && spec.Linux.Seccomp != nil {
		if err := checkSyscallNames(spec.Linux.Seccomp); err != nil {
			return err
		}
		cfg, err := specconv.SetupSeccomp(spec.Linux.Seccomp)
		if err != nil {
			return fmt.Errorf("seccomp profile: %w", err)
		}
		if _, err := seccomp.InitSeccomp(cfg); err != nil {
			return fmt.Errorf("seccomp filter: %w (check the syscall names in --seccomp)", err)
		}
	}
	return nil
}

// setgroups sets the supplementary groups, unless the user namespace denies
// setgroups(2) (/proc/self/setgroups: deny, as in one an OCI bundle joins by
// path that its maker set so) and there are none to set: then, as runc does,
// it leaves them; groups to set there are an error.
func setgroups(gids []int) error {
	if b, err := os.ReadFile("/proc/self/setgroups"); err == nil && string(bytes.TrimSpace(b)) == "deny" {
		if len(gids) == 0 {
			return nil
		}
		return errors.New("the user namespace denies setgroups(2); join one that allows it, or give no additional groups")
	}
	return unix.Setgroups(gids)
}
