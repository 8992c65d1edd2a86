// Package prepare turns what the user asked for (images and per-app flags, in
// rkt's `IMAGE [app flags] [-- ARGS] [--- IMAGE ...]` shape) and what the images
// say (their OCI configs) into the stage1 contract's files: the pod manifest and
// one OCI runtime-spec config.json per app. It decides; it performs nothing.
package prepare

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/spf13/pflag"
)

// AppArgs is one app as given on the command line.
type AppArgs struct {
	Image      string
	Name       string
	Exec       string
	Args       []string
	ArgsGiven  bool // "--" was present, so Args replaces the image's Cmd (even when empty)
	SetEnv     []string
	User       string
	Group      string
	SuppGIDs   []uint32
	WorkingDir string
	CapsRetain []string
	CapsRemove []string
	Seccomp    string
	NoNewPrivs bool
	Readonly   bool
	Mounts     []MountArg
	Resources  Resources
	Signature  string // --signature: the image file's detached signature
}

// ErrNoImage is returned when the command line names no image.
var ErrNoImage = errors.New("no image given; usage: skiff run [pod flags] IMAGE [app flags] [-- ARGS] [--- IMAGE ...]")

// AppFlagUsage documents the per-app flags, for --help.
const AppFlagUsage = `App flags (after the image):
      --name=NAME           the app's name (default: derived from the image)
      --exec=PATH           replace the image's entrypoint
      --signature=FILE      the image file's detached signature (default: FILE.asc beside it)
      --set-env=K=V         set an environment variable (repeatable)
      --user=USER[:GROUP]   run as this user (name or number, resolved in the image)
      --group=GROUP         run with this primary group
      --supplementary-gids=N,N  extra groups
      --working-dir=DIR     the app's working directory
      --mount=volume=NAME,target=PATH  mount a pod volume in this app
      --readonly-rootfs     make the app's root filesystem read-only
      --caps-retain=CAP,... keep exactly these capabilities
      --caps-remove=CAP,... drop these from the default set
      --seccomp=mode=remove|retain[,errno=E],SYSCALL|@SET,...  the app's syscall filter
      --no-new-privileges   set no_new_privs (always set for non-root apps)
      --memory=SIZE --cpu=MILLICORES --cpu-shares=N --pids-limit=N --oom-score-adj=N  limits
  -- ARGS                   replace the image's cmd with ARGS
  ---                       start the next app of the same pod`

// ParseApps splits args (everything from the first image on) into apps.
func ParseApps(args []string) ([]AppArgs, error) {
	var apps []AppArgs
	for len(args) > 0 {
		seg := args
		next := []string(nil)
		// "---" always separates apps, even after an app's "--" (rkt's rule).
		for i, a := range args {
			if a == "---" {
				seg, next = args[:i], args[i+1:]
				break
			}
		}
		app, err := parseApp(seg)
		if err != nil {
			return nil, err
		}
		apps = append(apps, app)
		args = next
	}
	if len(apps) == 0 {
		return nil, ErrNoImage
	}
	return apps, nil
}

func parseApp(seg []string) (AppArgs, error) {
	var a AppArgs
	if len(seg) == 0 || strings.HasPrefix(seg[0], "-") {
		return a, ErrNoImage
	}
	a.Image = seg[0]
	rest := seg[1:]
	for i, s := range rest {
		if s == "--" {
			a.Args, a.ArgsGiven = append([]string{}, rest[i+1:]...), true
			rest = rest[:i]
			break
		}
	}
	var mounts []string
	var oom int
	fs := appFlagSet(&a, &mounts, &oom)
	if err := fs.Parse(rest); err != nil {
		return a, &AppFlagError{Image: a.Image, Err: err}
	}
	// Errors name the app as every later message does: by its name (given,
	// or derived from the image reference), not by the reference.
	label := a.Image
	if n, err := AppName(a); err == nil {
		label = n
	}
	if fs.NArg() > 0 {
		return a, fmt.Errorf("app %s: unexpected argument %q; put the app's arguments after '--'", label, fs.Arg(0))
	}
	if fs.Changed("oom-score-adj") {
		a.Resources.OOMScoreAdj = &oom
	}
	gids, _ := fs.GetUintSlice("supplementary-gids")
	for _, g := range gids {
		a.SuppGIDs = append(a.SuppGIDs, uint32(g))
	}
	for _, m := range mounts {
		ma, err := ParseMount(m)
		if err != nil {
			return a, fmt.Errorf("app %s: %w", label, err)
		}
		a.Mounts = append(a.Mounts, ma)
	}
	for _, kv := range a.SetEnv {
		if err := CheckEnv(kv); err != nil {
			return a, fmt.Errorf("app %s: %w", label, err)
		}
	}
	if err := checkAppValues(a); err != nil {
		return a, fmt.Errorf("app %s: %w", label, err)
	}
	return a, nil
}

// CheckEnv refuses a --set-env value that is not NAME=VALUE.
func CheckEnv(kv string) error {
	if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(k, "\x00") {
		return fmt.Errorf("--set-env=%q: want NAME=VALUE", kv)
	}
	return nil
}

// checkAppValues checks the values of an app's flags that need no image, so
// that a typo is refused before anything is fetched (AppSpec applies them).
func checkAppValues(a AppArgs) error {
	if _, err := a.Resources.LinuxResources(); err != nil {
		return err
	}
	if _, err := Capabilities(a.CapsRetain, a.CapsRemove); err != nil {
		return err
	}
	if a.Seccomp != "" {
		if _, err := Seccomp(a.Seccomp); err != nil {
			return err
		}
	}
	if a.WorkingDir != "" && !path.IsAbs(a.WorkingDir) {
		return fmt.Errorf("--working-dir=%s: want an absolute path", a.WorkingDir)
	}
	if a.User != "" {
		if _, _, err := parseUser(a.User); err != nil {
			return err
		}
	}
	return nil
}

// appFlagSet defines the app flags, bound to a, mounts and oom.
func appFlagSet(a *AppArgs, mounts *[]string, oom *int) *pflag.FlagSet {
	fs := pflag.NewFlagSet("app "+a.Image, pflag.ContinueOnError)
	fs.SetOutput(discard{})
	fs.StringVar(&a.Name, "name", "", "")
	fs.StringVar(&a.Exec, "exec", "", "")
	fs.StringVar(&a.Signature, "signature", "", "")
	fs.StringArrayVar(&a.SetEnv, "set-env", nil, "")
	fs.StringVar(&a.User, "user", "", "")
	fs.StringVar(&a.Group, "group", "", "")
	fs.UintSliceVar(new([]uint), "supplementary-gids", nil, "")
	fs.StringVar(&a.WorkingDir, "working-dir", "", "")
	fs.StringSliceVar(&a.CapsRetain, "caps-retain", nil, "")
	fs.StringSliceVar(&a.CapsRemove, "caps-remove", nil, "")
	fs.StringVar(&a.Seccomp, "seccomp", "", "")
	fs.BoolVar(&a.NoNewPrivs, "no-new-privileges", false, "")
	fs.BoolVar(&a.Readonly, "readonly-rootfs", false, "")
	fs.StringArrayVar(mounts, "mount", nil, "")
	fs.StringVar(&a.Resources.Memory, "memory", "", "")
	fs.StringVar(&a.Resources.CPU, "cpu", "", "")
	fs.Uint64Var(&a.Resources.CPUShares, "cpu-shares", 0, "")
	fs.Int64Var(&a.Resources.PidsLimit, "pids-limit", 0, "")
	fs.IntVar(oom, "oom-score-adj", 0, "")
	return fs
}

// IsAppFlag tells whether name (without dashes) is an app flag.
func IsAppFlag(name string) bool {
	return appFlagSet(&AppArgs{}, new([]string), new(int)).Lookup(name) != nil
}

// AppFlagError is an app's flag that did not parse (unknown, or its value
// missing or malformed). The CLI words the hint: it knows the pod flags.
type AppFlagError struct {
	Image string
	Err   error // pflag's
}

func (e *AppFlagError) Error() string { return fmt.Sprintf("app %s: %v", e.Image, e.Err) }
func (e *AppFlagError) Unwrap() error { return e.Err }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
