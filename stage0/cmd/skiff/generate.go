package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/internal/lazyre"
)

func newGenerateCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "generate",
		Short: "Generate files that run skiff from other tools (systemd units)",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newGenerateUnitCmd(g))
	return c
}

type unitFlags struct {
	restart   string
	sockets   []string
	name      string
	outputDir string
}

var restartPolicies = []string{"no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always"}

// Flags of generate unit itself; every other flag set goes into ExecStart.
var unitOnlyFlags = []string{"restart", "socket", "unit-name", "output-dir"}

// Flags that name files: made absolute, since systemd runs skiff in /.
var pathFlags = []string{"dir", "local-config", "system-config", "stage1-path", "uuid-file-save", "set-env-file"}

func newGenerateUnitCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	u := &unitFlags{}
	c := &cobra.Command{
		Use:   "unit [unit flags] [run flags] IMAGE [app flags] [-- ARGS] [--- IMAGE ...]",
		Short: "Print a systemd service (and with --socket a socket unit) that runs the pod",
		Long: `generate unit writes a Type=notify service whose ExecStart is 'skiff run' with
the given flags and images: systemd learns the pod is ready from skiff (which
waits for apps that speak sd_notify), SIGTERM stops the pod cleanly
(KillMode=mixed), the pod stays in the unit's cgroup (Delegate=yes), and
ExecStopPost marks the ended pod for 'skiff gc'. With --socket, a socket unit
of the same name listens on ADDR and hands the socket to the app as fd 3.
Without --output-dir the service is printed on stdout.`,
		Example: `  skiff generate unit --restart=on-failure --net=host docker://registry.local/web:v3 > /etc/systemd/system/web.service
  skiff generate unit --unit-name=web --socket=127.0.0.1:8080 --output-dir=/etc/systemd/system --net=host IMG`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return generateUnit(cmd, g, f, u, args)
		},
	}
	c.Flags().SetInterspersed(false)
	f.prepareFlags.register(c.Flags())
	f.startFlags.register(c.Flags())
	c.Flags().StringVar(&u.restart, "restart", "no", "the service's Restart= policy: "+strings.Join(restartPolicies, ", "))
	c.Flags().StringArrayVar(&u.sockets, "socket", nil, "also write a socket unit listening on ADDR (ListenStream=: HOST:PORT, PORT or a path; repeatable); needs --output-dir")
	c.Flags().StringVar(&u.name, "unit-name", "", "the units' name (default: skiff- and the first image's name)")
	c.Flags().StringVar(&u.outputDir, "output-dir", "", "write NAME.service (and NAME.socket) into this directory")
	return c
}

var unitNameUnsafe = lazyre.New(`[^A-Za-z0-9:_.\-]+`)

func generateUnit(cmd *cobra.Command, g *globals, f *runFlags, u *unitFlags, args []string) error {
	if !slices.Contains(restartPolicies, u.restart) {
		return fmt.Errorf("--restart=%s: use one of %s", u.restart, strings.Join(restartPolicies, ", "))
	}
	if len(u.sockets) > 0 && u.outputDir == "" {
		return fmt.Errorf("--socket writes a second unit: give --output-dir=DIR")
	}
	if err := f.startFlags.check(g); err != nil {
		return err
	}
	plan, err := f.prepareFlags.check(g, args)
	if err != nil {
		return err
	}
	apps := plan.apps
	for _, a := range apps {
		if err := checkImageRef(a.Image, true); err != nil {
			return err
		}
	}
	s1path, err := stage1File(g, &f.prepareFlags)
	if err != nil {
		return err
	}
	// The flavor by the file's name: the unit imports the stage1 later.
	if err := checkStage1Flags(flavorOfFile(s1path), f.privateUsers, f.net); err != nil {
		return err
	}
	if args, err = absImageArgs(args); err != nil {
		return err
	}
	name := u.name
	if name == "" {
		img := apps[0].Image
		img = img[strings.LastIndexAny(img, "/:")+1:]
		name = "skiff-" + strings.Trim(unitNameUnsafe.ReplaceAllString(img, "-"), "-")
	}
	name = strings.TrimSuffix(name, ".service")
	skiff, err := os.Executable()
	if err != nil {
		return err
	}
	globalArgs, runArgs, err := unitArgs(cmd)
	if err != nil {
		return err
	}
	start := append(append(append([]string{skiff}, globalArgs...), "run"), runArgs...)
	start = append(start, args...)
	stopPost := append(append([]string{skiff}, globalArgs...), "gc", "--mark-only")
	service := serviceUnit(strings.Join(args, " "), name, u, start, stopPost, f.stopTimeout)
	if u.outputDir == "" {
		_, err := cmd.OutOrStdout().Write([]byte(service))
		return err
	}
	files := map[string]string{name + ".service": service}
	if len(u.sockets) > 0 {
		files[name+".socket"] = socketUnit(strings.Join(args, " "), u.sockets)
	}
	for file, body := range files {
		path := filepath.Join(u.outputDir, file)
		if err := atomicfile.WriteFile(path, []byte(body), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), path)
	}
	return nil
}

// absImageArgs makes the image files and signature files of the app
// arguments absolute: systemd starts the service in /.
func absImageArgs(args []string) ([]string, error) {
	out := append([]string{}, args...)
	image, inArgs, sigNext := true, false, false
	for i, a := range out {
		switch {
		case sigNext:
			sigNext = false
			abs, err := filepath.Abs(a)
			if err != nil {
				return nil, err
			}
			out[i] = abs
		case a == "---":
			image, inArgs = true, false
		case inArgs:
		case a == "--":
			inArgs = true
		case image:
			image = false
			ref, err := reference.Parse(a)
			if err != nil {
				return nil, err
			}
			if ref.Path == "" {
				continue
			}
			abs, err := filepath.Abs(ref.Path)
			if err != nil {
				return nil, err
			}
			switch {
			case ref.Transport == reference.ACI:
				out[i] = abs
			case ref.Ref != "":
				out[i] = string(ref.Transport) + ":" + abs + ":" + ref.Ref
			default:
				out[i] = string(ref.Transport) + ":" + abs
			}
		case a == "--signature":
			sigNext = true
		case strings.HasPrefix(a, "--signature="):
			abs, err := filepath.Abs(strings.TrimPrefix(a, "--signature="))
			if err != nil {
				return nil, err
			}
			out[i] = "--signature=" + abs
		}
	}
	return out, nil
}

// unitArgs renders the flags the user set: global ones (for both skiff
// commands of the unit) and run's.
func unitArgs(cmd *cobra.Command) (global, run []string, err error) {
	inherited := cmd.InheritedFlags()
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if slices.Contains(unitOnlyFlags, fl.Name) || err != nil {
			return
		}
		vals := []string{fl.Value.String()}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			vals = sv.GetSlice()
		}
		for _, v := range vals {
			if slices.Contains(pathFlags, fl.Name) && v != "-" {
				if v, err = filepath.Abs(v); err != nil {
					return
				}
			}
			a := "--" + fl.Name + "=" + v
			if inherited.Lookup(fl.Name) != nil {
				global = append(global, a)
			} else {
				run = append(run, a)
			}
		}
	})
	return global, run, err
}

func serviceUnit(what, name string, u *unitFlags, start, stopPost []string, stopTimeout time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by 'skiff generate unit' (skiff %s).\n[Unit]\nDescription=skiff pod %s\n", Version, unitEscape(what))
	b.WriteString("Wants=network-online.target\nAfter=network-online.target\n")
	if len(u.sockets) > 0 {
		fmt.Fprintf(&b, "Requires=%[1]s.socket\nAfter=%[1]s.socket\n", name)
	}
	b.WriteString("\n[Service]\nType=notify\nNotifyAccess=main\n")
	fmt.Fprintf(&b, "ExecStart=%s\n", execLine(start))
	fmt.Fprintf(&b, "ExecStopPost=-%s\n", execLine(stopPost))
	// SIGTERM to skiff alone, which stops the apps in order; SIGKILL to all
	// that is left when the stop timeout (the apps' plus a margin) is over.
	b.WriteString("KillMode=mixed\nDelegate=yes\n")
	fmt.Fprintf(&b, "TimeoutStopSec=%dms\n", (stopTimeout + 10*time.Second).Milliseconds())
	fmt.Fprintf(&b, "Restart=%s\n", u.restart)
	b.WriteString("\n[Install]\nWantedBy=multi-user.target\n")
	return b.String()
}

func socketUnit(what string, addrs []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by 'skiff generate unit' (skiff %s).\n[Unit]\nDescription=socket of skiff pod %s\n\n[Socket]\n", Version, unitEscape(what))
	for _, a := range addrs {
		fmt.Fprintf(&b, "ListenStream=%s\n", unitEscape(a))
	}
	b.WriteString("\n[Install]\nWantedBy=sockets.target\n")
	return b.String()
}

// unitEscape escapes systemd's specifiers (%) in a plain setting.
func unitEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "%", "%%"), "\n", " ")
}

// execLine quotes argv for an Exec*= setting (systemd.service(5), "Command
// lines"): specifiers and variables are escaped, words with blanks, quotes or
// backslashes double-quoted.
func execLine(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		a = strings.ReplaceAll(strings.ReplaceAll(a, "%", "%%"), "$", "$$")
		if a != "" && !strings.ContainsAny(a, " \t\n\"'\\;") {
			words[i] = a
			continue
		}
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
		words[i] = `"` + r.Replace(a) + `"`
	}
	return strings.Join(words, " ")
}
