package prepare

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/stage1/abi"
)

// MountArg is --mount=volume=NAME,target=PATH.
type MountArg struct {
	Volume string
	Target string
}

// ParseVolume reads rkt's long form NAME,kind=host,source=PATH[,readOnly=BOOL][,recursive=BOOL][,idmap=BOOL]
// or NAME,kind=empty[,mode=0755][,uid=N][,gid=N][,readOnly=BOOL], and the short
// form SOURCE:TARGET[:OPTS] (OPTS: ro or rw, and idmap, comma-separated, as
// podman's), which also mounts the volume in every app (the returned
// MountArg). idmap (a host volume of a pod with --private-users, which the
// caller checks) makes the pod's ids the host's in the volume.
func ParseVolume(s string) (abi.Volume, *MountArg, error) {
	if !strings.Contains(s, "kind=") && strings.Count(s, ":") >= 1 {
		return parseShortVolume(s)
	}
	parts := strings.Split(s, ",")
	v := abi.Volume{Name: parts[0], Recursive: true, Mode: 0o755}
	if err := abi.ValidateAppName(v.Name); err != nil {
		return v, nil, fmt.Errorf("--volume=%s: volume name %q: lowercase letters, digits and dashes", s, v.Name)
	}
	for _, kv := range parts[1:] {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return v, nil, fmt.Errorf("--volume=%s: %q is not KEY=VALUE", s, kv)
		}
		var err error
		switch k {
		case "kind":
			v.Kind = val
		case "source":
			v.Source = val
		case "readOnly":
			v.ReadOnly, err = strconv.ParseBool(val)
		case "recursive":
			v.Recursive, err = strconv.ParseBool(val)
		case "mode":
			var m uint64
			m, err = strconv.ParseUint(val, 8, 32)
			v.Mode = uint32(m)
		case "uid":
			v.UID, err = strconv.Atoi(val)
		case "gid":
			v.GID, err = strconv.Atoi(val)
		case "idmap":
			v.IDMap, err = strconv.ParseBool(val)
		default:
			return v, nil, fmt.Errorf("--volume=%s: unknown key %q (kind, source, readOnly, recursive, idmap, mode, uid, gid)", s, k)
		}
		if err != nil {
			return v, nil, fmt.Errorf("--volume=%s: %s=%s: %v", s, k, val, err)
		}
	}
	return v, nil, checkVolume(s, v)
}

func parseShortVolume(s string) (abi.Volume, *MountArg, error) {
	f := strings.Split(s, ":")
	if len(f) < 2 || len(f) > 3 || f[0] == "" || f[1] == "" {
		return abi.Volume{}, nil, fmt.Errorf("--volume=%s: want SOURCE:TARGET[:ro][,idmap] or NAME,kind=host,source=PATH", s)
	}
	v := abi.Volume{Kind: abi.VolumeHost, Source: f[0], Recursive: true}
	if len(f) == 3 {
		for _, o := range strings.Split(f[2], ",") {
			switch o {
			case "ro":
				v.ReadOnly = true
			case "rw":
				v.ReadOnly = false
			case "idmap":
				v.IDMap = true
			default:
				return v, nil, fmt.Errorf("--volume=%s: option %q: want ro, rw or idmap", s, o)
			}
		}
	}
	v.Name = "vol-" + strings.Trim(nameCleanRE.ReplaceAllString(strings.ToLower(f[1]), "-"), "-")
	if len(v.Name) > 63 {
		v.Name = strings.Trim(v.Name[:63], "-")
	}
	return v, &MountArg{Volume: v.Name, Target: f[1]}, checkVolume(s, v)
}

func checkVolume(flag string, v abi.Volume) error {
	switch v.Kind {
	case abi.VolumeHost:
		if !filepath.IsAbs(v.Source) {
			return fmt.Errorf("--volume=%s: source must be an absolute host path", flag)
		}
		if _, err := os.Stat(v.Source); err != nil {
			return fmt.Errorf("--volume=%s: host source %s: %w; create it first", flag, v.Source, err)
		}
	case abi.VolumeEmpty:
		if v.Source != "" {
			return fmt.Errorf("--volume=%s: an empty volume has no source", flag)
		}
		if v.IDMap {
			return fmt.Errorf("--volume=%s: idmap is for host volumes; an empty volume already belongs to the pod's ids (set its owner with uid= and gid=)", flag)
		}
	default:
		return fmt.Errorf("--volume=%s: kind=%q: want kind=host or kind=empty", flag, v.Kind)
	}
	return nil
}

// ParseMount reads volume=NAME,target=PATH.
func ParseMount(s string) (MountArg, error) {
	var m MountArg
	for _, kv := range strings.Split(s, ",") {
		k, val, _ := strings.Cut(kv, "=")
		switch k {
		case "volume":
			m.Volume = val
		case "target":
			m.Target = val
		default:
			return m, fmt.Errorf("--mount=%s: unknown key %q (volume, target)", s, k)
		}
	}
	if m.Volume == "" || m.Target == "" {
		return m, fmt.Errorf("--mount=%s: want volume=NAME,target=PATH", s)
	}
	if !path.IsAbs(m.Target) {
		return m, fmt.Errorf("--mount=%s: target %q must be an absolute path in the app", s, m.Target)
	}
	return m, nil
}

// AppMounts resolves the mounts of one app: the user's (pod-wide and the
// app's own) and, for every volume the image declares that nobody mounted, a
// fresh empty volume. It returns the app's runtime-spec mounts and the
// implicit volumes it added to the pod.
func AppMounts(app string, vols map[string]abi.Volume, mounts []MountArg, imageVolumes map[string]struct{}) ([]specs.Mount, []abi.Volume, error) {
	var out []specs.Mount
	var added []abi.Volume
	targets := map[string]bool{}
	for _, m := range mounts {
		v, ok := vols[m.Volume]
		if !ok {
			return nil, nil, fmt.Errorf("app %s: --mount names volume %q, which no --volume defines", app, m.Volume)
		}
		t := path.Clean(m.Target)
		if targets[t] {
			return nil, nil, fmt.Errorf("app %s: two mounts target %s", app, t)
		}
		targets[t] = true
		out = append(out, bindMount(v, t))
	}
	declared := make([]string, 0, len(imageVolumes))
	for t := range imageVolumes {
		declared = append(declared, path.Clean(t))
	}
	sort.Strings(declared)
	for i, t := range declared {
		if targets[t] || !path.IsAbs(t) {
			continue
		}
		v := abi.Volume{Name: fmt.Sprintf("%s-image-%d", app, i), Kind: abi.VolumeEmpty, Mode: 0o755}
		added = append(added, v)
		out = append(out, bindMount(v, t))
	}
	return out, added, nil
}

func bindMount(v abi.Volume, target string) specs.Mount {
	src := v.Source
	if v.Kind == abi.VolumeEmpty {
		src = path.Join(abi.VolumesDir, v.Name)
	}
	opts := []string{"bind"}
	if v.Recursive || v.Kind == abi.VolumeEmpty {
		opts = []string{"rbind"}
	}
	if v.ReadOnly {
		opts = append(opts, "ro")
	}
	if v.IDMap { // through the pod's user namespace (runtime-spec idmap/ridmap)
		if opts[0] == "rbind" {
			opts = append(opts, "ridmap")
		} else {
			opts = append(opts, "idmap")
		}
	}
	return specs.Mount{Destination: target, Type: "bind", Source: src, Options: opts}
}
