package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
)

// Env holds the shared inputs, built once per bench run under Tmp (removed
// at the end) and Cache (kept: the big image).
type Env struct {
	Skiff, Stage1 string // bin/skiff, bin/stage1-default.oci.tar
	Busybox       string // build/images/busybox.oci.tar
	Nginx         string // build/images/nginx.oci.tar (fetch-nginx; may be missing)
	KVMStage1     string // bin/stage1-kvm.oci.tar (kvm-boot; may be missing)
	KVMInit       string // build/bench/kvminit, the bare boot's init (kvm-boot)
	Big           string // Cache/big.oci.tar (~100 MB, 4 random layers + busybox)
	Cache, Tmp    string

	SkiffDir   string   // skiff --dir for the run-* scenarios
	skiffDirs  []string // every skiff --dir to gc at the end
	Rootfs     string   // busybox rootfs, unpacked with umoci (runc, crun, podman)
	RuncRoot   string
	CrunRoot   string
	Wrapper    string   // crun's mount-ns wrapper (MACHINE-NOTES §1)
	Podman     []string // podman with private --root/--runroot (CONTAINERS_CONF is private too)
	PodmanImg  string
	NspawnRoot string // skiff's stage1 rootfs + busybox + one oneshot unit per command

	seq        atomic.Int64
	bundles    map[string]string // app command → runc/crun bundle dir
	units      map[string]string // app command → unit name in NspawnRoot
	hostBefore map[string]bool   // host paths podman may create: did they exist before we ran it?
}

func (e *Env) next() int64 { return e.seq.Add(1) }

// skiffArgv runs app in image (an oci-archive) as a pod in dir. podFlags go before the image.
func (e *Env) skiffArgv(dir, image, net string, app []string, podFlags ...string) []string {
	a := []string{e.Skiff, "--dir=" + dir, "run", "--insecure-options=image",
		"--stage1-path=" + e.Stage1, "--net=" + net}
	a = append(a, podFlags...)
	a = append(a, "oci-archive:"+image, "--")
	return append(a, app...)
}

func (e *Env) newSkiffDir(name string) string {
	d := filepath.Join(e.Tmp, name)
	e.skiffDirs = append(e.skiffDirs, d)
	return d
}

// setupPeers builds everything the peers need from the same busybox archive.
func (e *Env) setupPeers(ctx context.Context) error {
	e.bundles, e.units = map[string]string{}, map[string]string{}
	e.SkiffDir = e.newSkiffDir("skiff")
	e.RuncRoot, e.CrunRoot = filepath.Join(e.Tmp, "runc-state"), filepath.Join(e.Tmp, "crun-state")

	// Busybox rootfs for runc, crun and podman.
	bb := filepath.Join(e.Tmp, "busybox")
	if err := unpackArchive(ctx, e.Busybox, "latest", bb, e.Tmp); err != nil {
		return err
	}
	e.Rootfs = filepath.Join(bb, "rootfs")

	// crun needs a private mount ns hiding cgroup2's controllers on this hybrid host.
	e.Wrapper = filepath.Join(e.Tmp, "crun-wrapper")
	wrapper := `#!/bin/sh
# MACHINE-NOTES §1: crun refuses hybrid cgroups when cgroup2 has a controller; hide it.
f=/sys/fs/cgroup/unified/cgroup.controllers
[ -e $f ] || exec "$@"
exec unshare -m --propagation private sh -c 'mount --bind /dev/null '$f' && exec "$@"' sh "$@"
`
	if err := os.WriteFile(e.Wrapper, []byte(wrapper), 0o755); err != nil {
		return err
	}

	if err := e.setupPodman(ctx); err != nil {
		return fmt.Errorf("podman: %v", err)
	}
	if err := e.setupNspawn(ctx); err != nil {
		return fmt.Errorf("nspawn rootfs: %v", err)
	}
	return nil
}

// unpackArchive extracts an OCI archive's layout and unpacks ref into dst (a bundle).
func unpackArchive(ctx context.Context, archive, ref, dst, tmp string) error {
	layout := dst + ".layout"
	if err := os.MkdirAll(layout, 0o755); err != nil {
		return err
	}
	if _, err := must(ctx, "tar", "-xf", archive, "-C", layout); err != nil {
		return err
	}
	_, err := must(ctx, "umoci", "unpack", "--image", layout+":"+ref, dst)
	return err
}

// bundle returns a runc/crun bundle running app on the shared busybox rootfs
// (one small directory with config.json per distinct command).
func (e *Env) bundle(app []string) string {
	key := strings.Join(app, "\x00")
	if b, ok := e.bundles[key]; ok {
		return b
	}
	b := filepath.Join(e.Tmp, fmt.Sprintf("bundle-%d", len(e.bundles)))
	err := func() error {
		if err := os.MkdirAll(b, 0o755); err != nil {
			return err
		}
		if _, err := must(context.Background(), "runc", "spec", "--bundle", b); err != nil {
			return err
		}
		p := filepath.Join(b, "config.json")
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var spec map[string]any
		if err := json.Unmarshal(raw, &spec); err != nil {
			return err
		}
		proc := spec["process"].(map[string]any)
		proc["terminal"] = false
		proc["args"] = app
		spec["root"] = map[string]any{"path": e.Rootfs, "readonly": true}
		raw, _ = json.MarshalIndent(spec, "", "  ")
		return os.WriteFile(p, raw, 0o644)
	}()
	if err != nil {
		logf("bundle for %q: %v", app, err)
		return "/nonexistent-bundle"
	}
	e.bundles[key] = b
	return b
}

func (e *Env) runcArgv(app []string) []string {
	return []string{"runc", "--root", e.RuncRoot, "run", "--bundle", e.bundle(app), fmt.Sprintf("skiffbench-%d", e.next())}
}

func (e *Env) crunArgv(app []string) []string {
	return []string{e.Wrapper, "crun", "--root", e.CrunRoot, "run", "--bundle", e.bundle(app), fmt.Sprintf("skiffbench-%d", e.next())}
}

// setupPodman writes a private containers.conf (MACHINE-NOTES §2: ulimits this
// host allows, runc, no journald; its own CNI config dir and default network)
// and imports the busybox rootfs into private storage.
func (e *Env) setupPodman(ctx context.Context) error {
	d := filepath.Join(e.Tmp, "podman")
	for _, s := range []string{"net.d", "tmp"} {
		if err := os.MkdirAll(filepath.Join(d, s), 0o755); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
events_logger = "file"
tmp_dir = "%[1]s/tmp"
[network]
network_config_dir = "%[1]s/net.d"
default_network = "skiffbench"
default_subnet = "10.89.213.0/24"
`, d)
	if err := os.WriteFile(filepath.Join(d, "containers.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	os.Setenv("CONTAINERS_CONF", filepath.Join(d, "containers.conf"))
	e.hostBefore = map[string]bool{}
	for _, p := range podmanHostPaths {
		_, err := os.Stat(p)
		e.hostBefore[p] = err == nil
	}
	e.Podman = []string{"podman", "--root", filepath.Join(d, "root"), "--runroot", filepath.Join(d, "runroot"),
		"--storage-driver", "overlay"}
	e.PodmanImg = "localhost/skiffbench-busybox:latest"
	tarball := filepath.Join(d, "busybox.tar")
	if _, err := must(ctx, "tar", "-C", e.Rootfs, "-cf", tarball, "."); err != nil {
		return err
	}
	_, err := must(ctx, append(e.Podman, "import", "-q", tarball, e.PodmanImg)...)
	return err
}

func (e *Env) podmanArgv(net string, app []string) []string {
	a := append(append([]string(nil), e.Podman...), "run", "--rm")
	if net != "" {
		a = append(a, "--network="+net)
	}
	return append(append(a, e.PodmanImg), app...)
}

// setupNspawn builds a systemd rootfs for nspawn from skiff's own stage1 image
// (the same systemd skiff boots) plus busybox.
func (e *Env) setupNspawn(ctx context.Context) error {
	b := filepath.Join(e.Tmp, "nspawn")
	if err := unpackArchive(ctx, e.Stage1, "default", b, e.Tmp); err != nil {
		return err
	}
	e.NspawnRoot = filepath.Join(b, "rootfs")
	bin := filepath.Join(e.NspawnRoot, "bin")
	if _, err := must(ctx, "cp", "/bin/busybox", filepath.Join(bin, "busybox")); err != nil {
		return err
	}
	for _, a := range []string{"sh", "true", "false", "echo", "cat", "sleep"} {
		if _, err := os.Lstat(filepath.Join(bin, a)); err != nil {
			if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
				return err
			}
		}
	}
	return os.MkdirAll(filepath.Join(e.NspawnRoot, "etc/systemd/system"), 0o755)
}

// unit returns a oneshot unit in the nspawn rootfs that runs app, then makes
// systemd exit (0 on success, non-zero on failure), with no default dependencies.
func (e *Env) unit(app []string) string {
	key := strings.Join(app, "\x00")
	if u, ok := e.units[key]; ok {
		return u
	}
	name := fmt.Sprintf("skiffbench-%d.service", len(e.units))
	text := fmt.Sprintf(`[Unit]
Description=skiffbench app
DefaultDependencies=no
SuccessAction=exit-force
FailureAction=exit-force
[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/console
ExecStart=%s
`, strings.Join(app, " "))
	if err := os.WriteFile(filepath.Join(e.NspawnRoot, "etc/systemd/system", name), []byte(text), 0o644); err != nil {
		logf("unit: %v", err)
	}
	e.units[key] = name
	return name
}

func (e *Env) nspawnBootArgv(app []string) []string {
	return []string{"systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet", "--console=read-only",
		"-D", e.NspawnRoot, "systemd.unit=" + e.unit(app)}
}

func (e *Env) nspawnArgv(app []string) []string {
	return append([]string{"systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-D", e.NspawnRoot}, app...)
}

// ---- big image ----

const bigVersion = "big-v2: busybox + 4 layers x 5 files x 5 MiB random, 5 layers"

// buildBig makes (once; cached under Cache) a ~100 MB OCI archive of five
// layers: the busybox rootfs, then four layers of incompressible random files.
// Each repack refreshes the bundle, so that the next one adds a layer of what
// changed since (without --refresh-bundle umoci diffs against the unpacked
// image every time: big-v1 was one layer of everything).
func (e *Env) buildBig(ctx context.Context) error {
	e.Big = filepath.Join(e.Cache, "big.oci.tar")
	stamp := e.Big + ".stamp"
	if b, err := os.ReadFile(stamp); err == nil && string(b) == bigVersion {
		if _, err := os.Stat(e.Big); err == nil {
			return nil
		}
	}
	logf("building %s (once, cached)", e.Big)
	layout, bundle := filepath.Join(e.Tmp, "big-layout"), filepath.Join(e.Tmp, "big-bundle")
	steps := [][]string{
		{"umoci", "init", "--layout", layout},
		{"umoci", "new", "--image", layout + ":latest"},
		{"umoci", "unpack", "--image", layout + ":latest", bundle},
		{"cp", "-a", e.Rootfs + "/.", filepath.Join(bundle, "rootfs")},
		{"umoci", "repack", "--refresh-bundle", "--image", layout + ":latest", bundle},
	}
	for _, s := range steps {
		if _, err := must(ctx, s...); err != nil {
			return err
		}
	}
	rng := rand.NewChaCha8(sha256.Sum256([]byte(bigVersion)))
	for l := 1; l <= 4; l++ {
		dir := filepath.Join(bundle, "rootfs", "data", fmt.Sprintf("layer%d", l))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for f := 1; f <= 5; f++ {
			if err := writeRandom(filepath.Join(dir, fmt.Sprintf("blob%d", f)), 5<<20, rng); err != nil {
				return err
			}
		}
		if _, err := must(ctx, "umoci", "repack", "--refresh-bundle", "--image", layout+":latest", bundle); err != nil {
			return err
		}
	}
	for _, s := range [][]string{
		{"umoci", "config", "--image", layout + ":latest", "--config.cmd", "/bin/sh"},
		{"umoci", "gc", "--layout", layout},
		{"tar", "-C", layout, "-cf", e.Big + ".tmp", "."},
		{"mv", "-f", e.Big + ".tmp", e.Big},
	} {
		if _, err := must(ctx, s...); err != nil {
			return err
		}
	}
	os.RemoveAll(bundle)
	os.RemoveAll(layout)
	return os.WriteFile(stamp, []byte(bigVersion), 0o644)
}

func writeRandom(path string, n int64, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, n); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ---- 1,000 exited pods ----

// PodFarm fills a skiff --dir with copies of one real exited pod.
type PodFarm struct {
	Dir      string // skiff --dir
	template string // the real pod's directory, moved out of Dir/pods/run
	uuid     string // its UUID (replaced in each copy's pod.json)
}

func (e *Env) newPodFarm(ctx context.Context) (*PodFarm, error) {
	f := &PodFarm{Dir: e.newSkiffDir("skiff-pods")}
	uf := filepath.Join(e.Tmp, "farm.uuid")
	if _, err := must(ctx, e.skiffArgv(f.Dir, e.Busybox, "none", []string{"/bin/true"}, "--uuid-file-save="+uf)...); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(uf)
	if err != nil {
		return nil, err
	}
	f.uuid = strings.TrimSpace(string(b))
	f.template = filepath.Join(e.Tmp, "pod-template")
	return f, os.Rename(filepath.Join(f.Dir, "pods/run", f.uuid), f.template)
}

// Populate copies the template pod n times into Dir/pods/run with fresh UUIDs.
func (f *PodFarm) Populate(n int) error {
	for i := 0; i < n; i++ {
		b, err := os.ReadFile("/proc/sys/kernel/random/uuid")
		if err != nil {
			return err
		}
		u := strings.TrimSpace(string(b))
		dst := filepath.Join(f.Dir, "pods/run", u)
		if err := copyTree(f.template, dst); err != nil {
			return err
		}
		pj := filepath.Join(dst, "pod.json")
		raw, err := os.ReadFile(pj)
		if err != nil {
			return err
		}
		if err := os.WriteFile(pj, bytes.ReplaceAll(raw, []byte(f.uuid), []byte(u)), 0o644); err != nil {
			return err
		}
	}
	// Written back before timing, as an exited pod's files are: removing
	// files whose fresh data is still being written back costs more.
	syscall.Sync()
	return nil
}

// Count returns how many pod directories are under Dir/pods/SUB.
func (f *PodFarm) Count(sub string) int {
	ents, _ := os.ReadDir(filepath.Join(f.Dir, "pods", sub))
	return len(ents)
}

// copyTree copies directories, regular files and symlinks with modes and owners.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		t := filepath.Join(dst, rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.IsDir():
			if err := os.Mkdir(t, m.Perm()); err != nil {
				return err
			}
		case m&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(l, t); err != nil {
				return err
			}
		case m.IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(t, b, m.Perm()); err != nil {
				return err
			}
		default:
			return nil // sockets, fifos: none in an exited pod
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			os.Lchown(t, int(st.Uid), int(st.Gid))
		}
		if !info.Mode().IsDir() && info.Mode()&fs.ModeSymlink == 0 {
			return os.Chmod(t, info.Mode().Perm()|info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		}
		return nil
	})
}

// ---- cleanup ----

// cleanup removes everything the run started or created: podman containers
// and images, skiff pods (skiff gc), mounts under Tmp, Tmp itself, and the
// CNI bridge/IPAM state podman created if it was not there before.
func (e *Env) cleanup() {
	ctx := context.Background()
	if e.Podman != nil {
		run(ctx, append(append([]string(nil), e.Podman...), "rm", "-a", "-f", "-t", "0"))
		run(ctx, append(append([]string(nil), e.Podman...), "rmi", "-a", "-f"))
	}
	for _, d := range e.skiffDirs {
		if _, err := os.Stat(d); err == nil {
			run(ctx, []string{e.Skiff, "--dir=" + d, "gc", "--grace-period=0s"})
		}
	}
	unmountUnder(e.Tmp)
	if err := os.RemoveAll(e.Tmp); err != nil {
		logf("cleanup: %v", err)
	}
	if e.Podman != nil {
		e.cleanupPodmanHost()
	}
}

// Host state podman creates outside its --root: the CNI bridge, CNI's IPAM
// and result cache, and its cgroup parent.
var podmanHostPaths = []string{"/sys/class/net/cni-podman0", "/var/lib/cni", "/sys/fs/cgroup/memory/libpod_parent"}

// cleanupPodmanHost removes what podman created on the host, if it was not
// there before the bench (and, for directories and cgroups, only when empty).
func (e *Env) cleanupPodmanHost() {
	os.RemoveAll("/var/lib/cni/networks/skiffbench")
	if !e.hostBefore["/sys/class/net/cni-podman0"] {
		if _, err := os.Stat("/sys/class/net/cni-podman0"); err == nil {
			run(context.Background(), []string{"ip", "link", "del", "cni-podman0"})
		}
	}
	if !e.hostBefore["/var/lib/cni"] {
		for _, d := range []string{"/var/lib/cni/networks", "/var/lib/cni/results", "/var/lib/cni"} {
			os.Remove(d)
		}
	}
	if !e.hostBefore["/sys/fs/cgroup/memory/libpod_parent"] {
		hier, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent")
		for _, h := range hier {
			var dirs []string
			filepath.WalkDir(h, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				os.Remove(dirs[i]) // rmdir: fails, harmlessly, on a cgroup still in use
			}
		}
	}
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}
