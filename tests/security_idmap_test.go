//go:build functional

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// hostOwner is the host owner (uid) and mode of path.
func hostOwner(t *testing.T, path string) (uint32, os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("the pod's file on the host: %v", err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid, fi.Mode()
}

// plantScript is what a hostile pod root does in the host volume at dir: it
// leaves a setuid copy of busybox there, tries to make it host root's, and
// tries to make host root's file setuid; then it shows how it sees the
// owners.
func plantScript(dir string) string {
	return `cp /bin/busybox ` + dir + `/suid && chown 0:0 ` + dir + `/suid && chmod 4755 ` + dir + `/suid || echo plant failed
chmod 4755 ` + dir + `/root-file 2>/dev/null && echo chmod-root-file=ok
stat -c '%u %n' ` + dir + `/suid ` + dir + `/root-file`
}

// A host volume of a --private-users pod is seen through the pod's range
// (issue #13, point 12), as podman's without :idmap: the pod's root is the
// range's base uid there, so a setuid file it leaves in the host directory
// belongs to that unprivileged uid, never to host root, and host root's files
// are nobody's to it. Only a volume the user asks to idmap (idmap=true, or
// :idmap in the short form) makes the pod's ids the host's.
func TestPrivateUsersHostVolumeIsNotIdmapped(t *testing.T) {
	e := newEnv(t)
	if e.flavor() == "kvm" {
		t.Skip("the kvm flavor refuses --private-users (stage1-kvm/README.md)")
	}
	dir := t.TempDir()
	vols := map[string]string{}
	for _, name := range []string{"plain", "mapped", "short"} {
		v := filepath.Join(dir, name)
		if err := os.Mkdir(v, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(v, 0o777); err != nil { // writable by the range's base uid
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, "root-file"), []byte("host root's\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		vols[name] = v
	}
	uf := filepath.Join(t.TempDir(), "uuid")

	// The default: a plain bind mount, seen through the range.
	r := e.skiff(e.runArgs("--private-users", "--net=none", "--uuid-file-save="+uf,
		"--volume=plain,kind=host,source="+vols["plain"], "--mount=volume=plain,target=/plain",
		e.image("busybox"), "--", "/bin/sh", "-c", plantScript("/plain"))...)
	if r.code != 0 {
		t.Fatalf("private-users pod with a host volume: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	rng := e.privateUsers(uuidOf(t, uf))
	uid, mode := hostOwner(t, filepath.Join(vols["plain"], "suid"))
	if uid != rng.Base {
		t.Errorf("a setuid file the pod's root left in a host volume is owned by host uid %d (mode %v), want the range's base %d: a setuid-root file planted on the host",
			uid, mode, rng.Base)
	}
	if uid, mode = hostOwner(t, filepath.Join(vols["plain"], "root-file")); uid != 0 || mode&os.ModeSetuid != 0 {
		t.Errorf("host root's file in the volume: owner %d mode %v, want 0 and no setuid bit", uid, mode)
	}
	if strings.Contains(r.stdout, "chmod-root-file=ok") {
		t.Errorf("the pod's root changed the mode of host root's file in a host volume: %q", r.stdout)
	}
	if !strings.Contains(r.stdout, "65534 /plain/root-file") {
		t.Errorf("host root's file is not nobody's in the pod: %q", r.stdout)
	}

	// Not idmapped, a host volume may be on a filesystem that cannot be
	// (overlayfs here; only idmap=true needs one that can, TestPrivateUsersBadInput).
	e.ok(e.runArgs("--private-users", "--net=none", "--volume="+overlayMount(t)+":/ovl", e.image("busybox"), "--", "/bin/true")...)

	// Asked for: idmapped through the pod's range, so the pod's root is host
	// root in that volume (what the user accepted with idmap).
	r = e.skiff(e.runArgs("--private-users", "--net=none",
		"--volume=mapped,kind=host,source="+vols["mapped"]+",idmap=true", "--mount=volume=mapped,target=/mapped",
		"--volume="+vols["short"]+":/short:rw,idmap",
		e.image("busybox"), "--", "/bin/sh", "-c", plantScript("/mapped")+"\n"+plantScript("/short"))...)
	if r.code != 0 {
		t.Fatalf("private-users pod with idmapped host volumes: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, name := range []string{"mapped", "short"} {
		if uid, _ := hostOwner(t, filepath.Join(vols[name], "suid")); uid != 0 {
			t.Errorf("volume %s (idmap): the pod root's file is owned by host uid %d, want 0", name, uid)
		}
		if !strings.Contains(r.stdout, "0 /"+name+"/root-file") {
			t.Errorf("volume %s (idmap): host root's file is not root's in the pod: %q", name, r.stdout)
		}
	}

	// idmap means nothing without --private-users: refused, nothing made.
	before := len(e.pods())
	for _, v := range []string{"mapped,kind=host,source=" + vols["mapped"] + ",idmap=true", vols["short"] + ":/short:idmap"} {
		e.fails(125, []string{"--volume=" + v, "idmap", "--private-users"},
			e.runArgs("--net=none", "--volume="+v, e.image("busybox"), "--", "/bin/true")...)
	}
	e.fails(125, []string{"--volume=e,kind=empty,idmap=true", "host volumes"},
		e.runArgs("--private-users", "--volume=e,kind=empty,idmap=true", e.image("busybox"), "--", "/bin/true")...)
	if ps := e.pods(); len(ps) != before {
		t.Errorf("refused runs left pods: %+v", ps)
	}
}
