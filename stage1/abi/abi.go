// Package abi is the stage1 contract: the files, arguments, environment and exit
// codes through which stage0 (the skiff CLI) and any stage1 flavor talk. It is the
// single Go home of the contract; stage1/README.md is its prose. Every name here
// carries the interface version that introduced it.
//
// stage0 writes the pod directory (PodManifest in pod.json, one OCI runtime-spec
// config.json per app), takes the pod lock, and execs the stage1 run entrypoint
// with the pod directory as its working directory. stage1 performs what the
// manifest describes (mounts, namespaces, cgroups, the apps) and reports back
// through the files named below.
package abi

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/internal/lazyre"
)

// InterfaceVersion is the newest contract version this build speaks.
const InterfaceVersion = 2

// Annotations in a stage1 image's manifest that declare its entrypoints (paths
// relative to the stage1 rootfs) and the contract version it speaks. Since v1.
const (
	AnnotationInterfaceVersion = "dev.skiff.stage1.interface-version"
	AnnotationFlavor           = "dev.skiff.stage1.flavor"
	AnnotationRun              = "dev.skiff.stage1.run"
	AnnotationEnter            = "dev.skiff.stage1.enter"
	AnnotationStop             = "dev.skiff.stage1.stop"
	AnnotationGC               = "dev.skiff.stage1.gc"
)

// AnnotationAppUser, in an app's config.json annotations, keeps the user as the
// image or the user named it ("name", "uid:gid", "name:group"); stage1 resolves
// names inside the app's rootfs. Since v1.
const AnnotationAppUser = "dev.skiff.app.user"

// AnnotationAppNotify, set to "true" in an app's config.json annotations, says
// that the app speaks sd_notify: stage1 gives it a NOTIFY_SOCKET and counts it
// ready only once it has sent READY=1. stage0 sets it when the image declares
// it (label or annotation "dev.skiff.notify=true", or appc's
// "appc.io/executor/supports-systemd-notify=true"). Since v1.
const AnnotationAppNotify = "dev.skiff.notify"

// AnnotationAppcNotify is appc's (and rkt's) name for the same declaration. Since v1.
const AnnotationAppcNotify = "appc.io/executor/supports-systemd-notify"

// EnvLockFD names the environment variable that carries the number of the
// inherited file descriptor on which stage0 holds the pod lock. The run
// entrypoint keeps it open for the pod's whole life. Since v1.
const EnvLockFD = "SKIFF_LOCK_FD"

// EnvDebug is set to "1" when the user asked for --debug. Since v1.
const EnvDebug = "SKIFF_DEBUG"

// Files and directories in the pod directory. Paths are relative to it.
const (
	PodManifestFile = "pod.json"     // stage0 writes; v1
	AppsDir         = "apps"         // apps/NAME/; v1
	AppSpecFile     = "config.json"  // apps/NAME/config.json, an OCI runtime spec; stage0 writes; v1
	AppExitFile     = "exit.json"    // apps/NAME/exit.json, an AppExit; stage1 writes; v1
	Stage1Dir       = "stage1"       // private to the stage1 flavor; v1
	PIDFile         = "pid"          // decimal host pid that enter joins; stage1 writes before ready; v1
	ReadyFile       = "ready"        // empty marker: all apps started, and notify apps sent READY=1; stage1 writes; v1
	LogFile         = "logs/pod.log" // the apps' output as LogEntry lines; stage1 writes; v1
	LogFileRotated  = LogFile + ".1" // the previous LogFile, once it reached its size cap; v1
	PodExitFile     = "exit.json"    // the pod's PodExit; stage1 writes when the pod ends; v1
	CleanFile       = "clean"        // empty marker: stage1 has undone everything it did on the host; v1
)

// Exit codes shared by stage0 and stage1 (the podman/docker convention).
const (
	ExitSkiffFailure = 125 // skiff or stage1 itself failed
	ExitCannotExec   = 126 // the app's command exists but cannot be executed
	ExitNotFound     = 127 // the app's command is not in its image
)

// Entrypoint names, the keys of Entrypoints.
const (
	EntrypointRun   = "run"
	EntrypointEnter = "enter"
	EntrypointStop  = "stop"
	EntrypointGC    = "gc"
)

// Stage1 describes the stage1 image a pod runs with: where its rootfs comes from
// and what it declares.
type Stage1 struct {
	Name             string            `json:"name"`
	ImageID          string            `json:"imageID"`
	Flavor           string            `json:"flavor,omitempty"`
	InterfaceVersion int               `json:"interfaceVersion"`
	Entrypoints      map[string]string `json:"entrypoints"`
	Rootfs           Rootfs            `json:"rootfs"`
}

// Rootfs describes a root filesystem as a stack of read-only layer directories;
// stage1 mounts it as an overlay with its upper and work directories inside the
// pod directory. Layers are absolute host paths, lowest layer first.
type Rootfs struct {
	Layers []string `json:"layers"`
}

// Image names the image an app comes from.
type Image struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

// App is one app of a pod. Its process (argv, env, cwd, user, terminal) is in
// apps/NAME/config.json as an OCI runtime spec.
type App struct {
	Name        string            `json:"name"`
	Image       Image             `json:"image"`
	Rootfs      Rootfs            `json:"rootfs"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Volume kinds.
const (
	VolumeHost  = "host"  // a host directory or file, bind-mounted
	VolumeEmpty = "empty" // a fresh directory in the pod directory (volumes/NAME)
)

// VolumesDir holds the pod's empty volumes, one directory each. Since v1.
const VolumesDir = "volumes"

// Volume is a pod volume. Apps mount it through their config.json mounts: a
// bind mount whose source is the host path (host kind) or VolumesDir/NAME
// relative to the pod directory (empty kind), which stage1 creates with Mode,
// UID and GID. Since v1.
type Volume struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Source    string `json:"source,omitempty"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
	Mode      uint32 `json:"mode,omitempty"`
	UID       int    `json:"uid,omitempty"`
	GID       int    `json:"gid,omitempty"`
	// IDMap (host kind, pods with private users only) says the user asked
	// for the volume to be idmapped through the pod's range, so that the
	// pod's ids are the host's in it (its root is host root there). The
	// apps' mounts of it carry the runtime-spec option idmap (ridmap for an
	// rbind); without it a host volume is a plain bind mount, seen through
	// the pod's user namespace. Since v1.
	IDMap bool `json:"idmap,omitempty"`
}

// PodManifest is pod.json: everything stage1 needs to run the pod.
type PodManifest struct {
	Version     int               `json:"version"`
	UUID        string            `json:"uuid"`
	Created     time.Time         `json:"created"`
	Stage1      Stage1            `json:"stage1"`
	Apps        []App             `json:"apps"`
	Volumes     []Volume          `json:"volumes,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// PrivateUsers is the range stage0 leased for the pod (--private-users),
	// which it passes to run as RunFlags.PrivateUsers; nil: no user
	// namespace. Since v1.
	PrivateUsers *IDRange `json:"privateUsers,omitempty"`
}

// PrivateUsersSize is how many uids and gids a pod gets with --private-users
// (rkt's choice: 65536, what a Linux distribution's images use). Since v1.
const PrivateUsersSize = 65536

// IDRange is a pod's private user and group ids: ids 0 to Size-1 in the pod
// are host ids Base to Base+Size-1, for uids and gids alike. Since v1.
type IDRange struct {
	Base uint32 `json:"base"`
	Size uint32 `json:"size"`
}

// String renders the range as BASE:SIZE, its run flag form.
func (r IDRange) String() string { return fmt.Sprintf("%d:%d", r.Base, r.Size) }

// ErrBadIDRange is returned for a range that is empty, starts at host id 0
// (the pod's root would be the host's) or runs past the last id.
var ErrBadIDRange = errors.New("want BASE:SIZE with BASE > 0, SIZE > 0 and BASE+SIZE <= 4294967295")

// ParseIDRange reads BASE:SIZE.
func ParseIDRange(s string) (IDRange, error) {
	b, n, ok := strings.Cut(s, ":")
	base, err1 := strconv.ParseUint(b, 10, 32)
	size, err2 := strconv.ParseUint(n, 10, 32)
	if !ok || err1 != nil || err2 != nil || base == 0 || size == 0 || base+size > 1<<32-1 {
		return IDRange{}, fmt.Errorf("id range %q: %w", s, ErrBadIDRange)
	}
	return IDRange{Base: uint32(base), Size: uint32(size)}, nil
}

// AppExit is apps/NAME/exit.json: how one app ended. Signal is set (and Code is
// 128+signal) when the app was killed by a signal.
type AppExit struct {
	App       string    `json:"app"`
	Code      int       `json:"code"`
	Signal    string    `json:"signal,omitempty"`
	OOMKilled bool      `json:"oomKilled,omitempty"` // the kernel's OOM killer ended it (over its memory limit)
	ExitedAt  time.Time `json:"exitedAt"`
}

// PodExit is exit.json: how the pod ended. Code is the first failing app's code,
// or 0 when every app succeeded.
type PodExit struct {
	Code     int       `json:"code"`
	ExitedAt time.Time `json:"exitedAt"`
}

// RunFlags are what stage0 decided for a pod, passed to the run entrypoint as
// flags before the UUID. MinVersion says from which interface version each flag
// exists, so stage0 can drop what an older stage1 does not understand.
type RunFlags struct {
	Net         string   // "none", "host", or CNI networks "default", "a,b:IP=10.1.2.3"; v1
	Hostname    string   // v1
	Interactive bool     // v1: the app gets stdin (and the terminal when stdin is one)
	Debug       bool     // v1
	Ports       []string // [HOSTIP:]HOSTPORT:PODPORT[/PROTO], repeated; v1
	DNS         []string // servers, or "host" (the host's resolv.conf) or "none" (the image's); v1
	DNSSearch   []string // v1
	DNSOpt      []string // v1
	HostsEntry  []string // IP=NAME, repeated; v1
	NetConfDirs []string // where named networks' .conflist files are, in priority order; v1
	// StopTimeout is how long each app gets between SIGTERM and SIGKILL when
	// the pod stops (zero: stage1's default, 10s). v1.
	StopTimeout time.Duration
	// ListenFDsApp names the app that receives the socket-activated
	// descriptors run inherits (LISTEN_FDS); empty: the first app. v1.
	ListenFDsApp string
	// PrivateUsers, when its Size is not zero, runs the whole pod (stage1's
	// sandbox and its apps) in a user namespace of its own with this range
	// (pod.json's PrivateUsers). A stage1 that cannot must refuse to run the
	// pod rather than run it without one. v1.
	PrivateUsers IDRange
}

// runFlag is one run flag with the version that introduced it.
type runFlag struct {
	name       string
	minVersion int
	value      func(RunFlags) (string, bool)
}

// runList is a repeated run flag.
type runList struct {
	name       string
	minVersion int
	values     func(RunFlags) []string
}

var runFlagTable = []runFlag{
	{"net", 1, func(f RunFlags) (string, bool) { return f.Net, f.Net != "" }},
	{"hostname", 1, func(f RunFlags) (string, bool) { return f.Hostname, f.Hostname != "" }},
	{"interactive", 1, func(f RunFlags) (string, bool) { return "true", f.Interactive }},
	{"debug", 1, func(f RunFlags) (string, bool) { return "true", f.Debug }},
	{"stop-timeout", 1, func(f RunFlags) (string, bool) { return f.StopTimeout.String(), f.StopTimeout > 0 }},
	{"listen-fds-app", 1, func(f RunFlags) (string, bool) { return f.ListenFDsApp, f.ListenFDsApp != "" }},
	{"private-users", 1, func(f RunFlags) (string, bool) { return f.PrivateUsers.String(), f.PrivateUsers.Size > 0 }},
}

var runListTable = []runList{
	{"port", 1, func(f RunFlags) []string { return f.Ports }},
	{"dns", 1, func(f RunFlags) []string { return f.DNS }},
	{"dns-search", 1, func(f RunFlags) []string { return f.DNSSearch }},
	{"dns-opt", 1, func(f RunFlags) []string { return f.DNSOpt }},
	{"hosts-entry", 1, func(f RunFlags) []string { return f.HostsEntry }},
	{"net-conf-dir", 1, func(f RunFlags) []string { return f.NetConfDirs }},
}

// Args renders the flags for a stage1 speaking version v. It returns the names of
// the set flags that v does not support, so stage0 can warn about them.
func (f RunFlags) Args(v int) (args []string, dropped []string) {
	for _, rf := range runFlagTable {
		val, set := rf.value(f)
		if !set {
			continue
		}
		if v < rf.minVersion {
			dropped = append(dropped, rf.name)
			continue
		}
		args = append(args, "--"+rf.name+"="+val)
	}
	for _, rl := range runListTable {
		vals := rl.values(f)
		if len(vals) > 0 && v < rl.minVersion {
			dropped = append(dropped, rl.name)
			continue
		}
		for _, val := range vals {
			args = append(args, "--"+rl.name+"="+val)
		}
	}
	return args, dropped
}

// ParseRunFlags reads what Args wrote: the run entrypoint's flags and its
// UUID argument. Every flavor parses its argv with it, so the flags stage0
// renders and the flags a stage1 understands cannot drift apart. --net
// defaults to "none".
func ParseRunFlags(args []string) (RunFlags, string, error) {
	var f RunFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.Net, "net", "none", "")
	fs.StringVar(&f.Hostname, "hostname", "", "")
	fs.BoolVar(&f.Interactive, "interactive", false, "")
	fs.BoolVar(&f.Debug, "debug", false, "")
	fs.DurationVar(&f.StopTimeout, "stop-timeout", 0, "")
	fs.StringVar(&f.ListenFDsApp, "listen-fds-app", "", "")
	fs.Func("private-users", "", func(v string) (err error) { f.PrivateUsers, err = ParseIDRange(v); return err })
	lists := map[string]*[]string{"port": &f.Ports, "dns": &f.DNS, "dns-search": &f.DNSSearch,
		"dns-opt": &f.DNSOpt, "hosts-entry": &f.HostsEntry, "net-conf-dir": &f.NetConfDirs}
	for _, rl := range runListTable {
		dst := lists[rl.name]
		fs.Func(rl.name, "", func(v string) error { *dst = append(*dst, v); return nil })
	}
	if err := fs.Parse(args); err != nil {
		return f, "", fmt.Errorf("run flags: %w", err)
	}
	if fs.NArg() != 1 {
		return f, "", errors.New("usage: run [flags] UUID")
	}
	return f, fs.Arg(0), nil
}

// NetworksFile is networks.json, a []NetworkStatus: the pod's networks as
// stage1 set them up (stage0 shows them in status). Since v1.
const NetworksFile = "networks.json"

// NetworkStatus is one network the pod is attached to.
type NetworkStatus struct {
	Name   string   `json:"name"`
	IfName string   `json:"ifName"`
	IPs    []string `json:"ips"` // CIDR notation
}

var appNameRE = lazyre.New(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ErrBadAppName is returned for an app name that cannot name a unit and a directory.
var ErrBadAppName = errors.New("app names are 1 to 63 lowercase letters, digits and dashes, not starting or ending with a dash")

// ValidateAppName checks that name can be used for the app's directory and unit.
func ValidateAppName(name string) error {
	if !appNameRE.MatchString(name) {
		return fmt.Errorf("app name %q: %w", name, ErrBadAppName)
	}
	return nil
}

// AppDir is the app's directory inside the pod directory.
func AppDir(podDir, app string) string {
	return filepath.Join(podDir, AppsDir, app)
}

// WriteJSON writes v to path atomically (see internal/atomicfile).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// PodCode is the pod's exit code from its apps' exits: the code of the app that
// failed first, or 0 when none failed.
func PodCode(exits []AppExit) int {
	code := 0
	var first time.Time
	for _, x := range exits {
		if x.Code != 0 && (code == 0 || x.ExitedAt.Before(first)) {
			code, first = x.Code, x.ExitedAt
		}
	}
	return code
}
