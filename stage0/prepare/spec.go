package prepare

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/internal/lazyre"
	"github.com/skiff-project/skiff/stage1/abi"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Pod is what the pod's flags decide for every app.
type Pod struct {
	Terminal  bool                  // the apps get the user's terminal
	Volumes   map[string]abi.Volume // by name
	Mounts    []MountArg            // pod-wide mounts, for every app
	NoSeccomp bool                  // --insecure-options=seccomp
	NoPaths   bool                  // --insecure-options=paths: no masked or read-only /proc and /sys paths
}

// Masked and read-only kernel paths of an app, as runc and rkt have them.
var (
	maskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// AppSpec is the OCI runtime spec stage1 runs the app with: the image's config
// with the user's flags on top (docker's rules: --exec replaces the entrypoint
// and the cmd, "-- ARGS" replaces the cmd), and the app's isolation. It also
// returns the empty volumes it made for volumes the image declares.
func AppSpec(name string, a AppArgs, img ocispec.ImageConfig, p Pod) (*specs.Spec, []abi.Volume, error) {
	s, err := processSpec(name, a, img, p.Terminal)
	if err != nil {
		return nil, nil, err
	}
	if s.Process.Capabilities, err = Capabilities(a.CapsRetain, a.CapsRemove); err != nil {
		return nil, nil, fmt.Errorf("app %s: %w", name, err)
	}
	s.Process.NoNewPrivileges = a.NoNewPrivs
	s.Process.OOMScoreAdj = a.Resources.OOMScoreAdj
	s.Root.Readonly = a.Readonly
	s.Linux = &specs.Linux{}
	if s.Linux.Resources, err = a.Resources.LinuxResources(); err != nil {
		return nil, nil, fmt.Errorf("app %s: %w", name, err)
	}
	if !p.NoSeccomp {
		if s.Linux.Seccomp, err = Seccomp(a.Seccomp); err != nil {
			return nil, nil, fmt.Errorf("app %s: %w", name, err)
		}
	} else if a.Seccomp != "" {
		return nil, nil, fmt.Errorf("app %s: --seccomp and --insecure-options=seccomp exclude each other", name)
	}
	if !p.NoPaths {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = maskedPaths, readonlyPaths
	}
	mounts, added, err := AppMounts(name, p.Volumes, append(append([]MountArg{}, p.Mounts...), a.Mounts...), img.Volumes)
	if err != nil {
		return nil, nil, err
	}
	s.Mounts = mounts
	return s, added, nil
}

func processSpec(name string, a AppArgs, img ocispec.ImageConfig, terminal bool) (*specs.Spec, error) {
	args := append(append([]string{}, img.Entrypoint...), img.Cmd...)
	switch {
	case a.Exec != "":
		args = append([]string{a.Exec}, a.Args...)
	case a.ArgsGiven:
		args = append(append([]string{}, img.Entrypoint...), a.Args...)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("image %s has no entrypoint or cmd; give a command with --exec=PATH or after '--'", a.Image)
	}
	cwd := img.WorkingDir
	if a.WorkingDir != "" {
		cwd = a.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, fmt.Errorf("app %s: working directory %q must be absolute", name, cwd)
	}
	userStr := img.User
	if a.User != "" {
		userStr = a.User
	}
	if a.Group != "" {
		name, _, _ := strings.Cut(userStr, ":")
		if name == "" {
			name = "0"
		}
		userStr = name + ":" + a.Group
	}
	u, named, err := parseUser(userStr)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", name, err)
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: terminal, Args: args, Env: mergeEnv(img.Env, a.SetEnv),
			Cwd: cwd, User: u,
		},
		Root: &specs.Root{Path: "rootfs"},
	}
	s.Process.User.AdditionalGids = a.SuppGIDs
	if named {
		s.Annotations = map[string]string{abi.AnnotationAppUser: userStr}
	}
	return s, nil
}

// mergeEnv applies overrides (K=V) to base, keeping base's order; PATH gets a
// default when nobody set one.
func mergeEnv(base, overrides []string) []string {
	env := append([]string{}, base...)
	index := map[string]int{}
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, kv := range overrides {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			env[i] = kv
		} else {
			index[k] = len(env)
			env = append(env, kv)
		}
	}
	if _, ok := index["PATH"]; !ok {
		env = append(env, defaultPath)
	}
	return env
}

var userRE = lazyre.New(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?$`)

// parseUser reads "", "uid", "uid:gid", "name", "name:group". Numbers go into
// the spec; names are resolved by stage1 inside the app's rootfs (named=true).
func parseUser(s string) (u specs.User, named bool, err error) {
	if s == "" {
		return u, false, nil
	}
	if !userRE.MatchString(s) {
		return u, false, fmt.Errorf("user %q: want USER[:GROUP], names or numbers", s)
	}
	name, group, hasGroup := strings.Cut(s, ":")
	uid, uerr := strconv.ParseUint(name, 10, 32)
	gid, gerr := strconv.ParseUint(group, 10, 32)
	if uerr != nil || (hasGroup && gerr != nil) {
		return u, true, nil
	}
	u.UID = uint32(uid)
	if hasGroup {
		u.GID = uint32(gid)
	}
	// "uid" alone: the group comes from the image's passwd entry, if any.
	return u, !hasGroup, nil
}

var nameCleanRE = lazyre.New(`[^a-z0-9-]+`)

// AppName is the app's name: the user's, or one derived from the image
// reference's last path element (rkt's habit).
func AppName(a AppArgs) (string, error) {
	if a.Name != "" {
		return a.Name, abi.ValidateAppName(a.Name)
	}
	base := a.Image
	// Drop a transport ("oci-archive:", "docker://"), the path and a tag or digest.
	if i := strings.Index(base, ":"); i > 0 && !strings.ContainsAny(base[:i], "/.") {
		base = strings.TrimPrefix(base[i+1:], "//")
	}
	base = path.Base(base)
	if i := strings.IndexAny(base, ":@"); i > 0 {
		base = base[:i]
	}
	for _, suf := range []string{".tar", ".oci", ".aci"} {
		base = strings.TrimSuffix(base, suf)
	}
	base = strings.Trim(nameCleanRE.ReplaceAllString(strings.ToLower(base), "-"), "-")
	if len(base) > 63 {
		base = strings.Trim(base[:63], "-")
	}
	if base == "" {
		base = "app"
	}
	return base, abi.ValidateAppName(base)
}
