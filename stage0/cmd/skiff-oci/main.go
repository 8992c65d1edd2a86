// Command skiff-oci is skiff as an OCI runtime: runc's command line, for
// podman (through conmon), containerd's runc shim (BinaryName) and
// runtime-tools. Each container is a skiff pod of one app run through the
// stage1 contract (stage1/README.md, "OCI mode"), with systemd as its init;
// its state is a directory under --root, guarded by flocks, and no daemon
// stays behind. Errors are one line on stderr (and in --log, as runc writes
// it) and exit status 1, as runc's; callers match runc's wording.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

// Version and Commit are set at build time (-ldflags -X).
var (
	Version = "dev"
	Commit  = "unknown"
)

// globals are runc's global flags (and skiff's --stage1-dir).
type globals struct {
	root          string
	log           string
	logFormat     string
	systemdCgroup bool
	debug         bool
	stage1Dir     string
	be            backend
	name          string // skiff-oci, or skiff-oci-FLAVOR
}

// progName is the name skiff-oci runs as: skiff-oci-FLAVOR (a link or a
// copy, such as skiff-oci-kvm) makes FLAVOR the stage1 of bundles that do not
// name one, and /run/skiff-oci-FLAVOR its default --root.
func progName() string {
	n := filepath.Base(os.Args[0])
	if strings.HasPrefix(n, "skiff-oci-") && len(n) > len("skiff-oci-") {
		return n
	}
	return "skiff-oci"
}

// flavorOf is the stage1 flavor a program name selects ("" for skiff-oci).
func flavorOf(name string) string {
	return strings.TrimPrefix(strings.TrimPrefix(name, "skiff-oci"), "-")
}

func (g *globals) opts() globalOpts {
	return globalOpts{systemdCgroup: g.systemdCgroup, debug: g.debug, stage1Dir: g.stage1Dir, flavor: flavorOf(g.name)}
}

// exitStatus carries a process's exit status (run, exec) through cobra
// without a message.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func versionText() string {
	return fmt.Sprintf("skiff-oci version %s\ncommit: %s\nspec: %s\n", Version, Commit, specs.Version)
}

func newRoot(be backend) (*cobra.Command, *globals) {
	g := &globals{be: be, name: progName()}
	root := &cobra.Command{
		Use:   "skiff-oci",
		Short: "skiff as an OCI runtime (runc's command line): each container is a pod with systemd as its init",
		Long: `skiff-oci runs OCI bundles as skiff pods of one app, through the stage1 contract,
with systemd as each container's init. Its command line is runc's, so that podman
(--runtime), containerd's runc shim (BinaryName) and runtime-tools can drive it.`,
		Version:           strings.TrimSuffix(versionText(), "\n"),
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", "/run/"+g.name, "root directory for the containers' state")
	pf.StringVar(&g.log, "log", "", "append errors (and, with --debug, debugging lines) to this file")
	pf.StringVar(&g.logFormat, "log-format", "text", "format of --log: text or json")
	pf.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "cgroupsPath is slice:prefix:name (systemd's form)")
	pf.BoolVar(&g.debug, "debug", false, "print debugging information")
	pf.StringVar(&g.stage1Dir, "stage1-dir", "/usr/lib/skiff", "where stage1-NAME.oci.tar is looked for, after the binary's directory")
	// runc's flags that callers may send and that mean nothing here.
	pf.String("criu", "", "")
	pf.String("rootless", "", "")
	_ = pf.MarkHidden("criu")
	_ = pf.MarkHidden("rootless")
	root.Flags().BoolP("version", "v", false, "print the version")
	root.AddCommand(newCreateCmd(g), newStartCmd(g), newRunCmd(g), newStateCmd(g), newKillCmd(g),
		newDeleteCmd(g), newExecCmd(g), newPsCmd(g), newListCmd(g), newPauseCmd(g, true), newPauseCmd(g, false),
		newUpdateCmd(g), newFeaturesCmd(g))
	return root, g
}

func main() {
	root, g := newRoot(ocipodBackend{})
	os.Exit(execute(root, g, os.Stderr))
}

// execute runs the command line and turns its error into runc's exit
// status, one line on stderr and a line in --log.
func execute(root *cobra.Command, g *globals, stderr io.Writer) int {
	_, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	var es exitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	msg := oneLine(err)
	if g.log != "" {
		logLine(g.log, g.logFormat, "error", msg)
	}
	fmt.Fprintf(stderr, "skiff-oci: %s\n", msg)
	return 1
}

// debugf writes a debugging line to --log (or stderr) with --debug.
func (g *globals) debugf(format string, a ...any) {
	if !g.debug {
		return
	}
	msg := fmt.Sprintf(format, a...)
	if g.log != "" {
		logLine(g.log, g.logFormat, "debug", msg)
		return
	}
	fmt.Fprintf(os.Stderr, "skiff-oci: debug: %s\n", msg)
}

// logLine appends one line to the --log file as runc (logrus) writes it.
func logLine(path, format, level, msg string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	now := time.Now().Format(time.RFC3339Nano)
	if format == "json" {
		b, _ := json.Marshal(map[string]string{"level": level, "msg": msg, "time": now})
		f.Write(append(b, '\n'))
		return
	}
	fmt.Fprintf(f, "time=%q level=%s msg=%q\n", now, level, msg)
}

// oneLine folds a multi-line error into one line.
func oneLine(err error) string {
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

// checkGlobals validates the flags every verb shares.
func (g *globals) check() error {
	if g.logFormat != "text" && g.logFormat != "json" {
		return fmt.Errorf("--log-format %q: unknown format; use text or json", g.logFormat)
	}
	if g.root == "" {
		return errors.New("--root is empty; give the directory for the containers' state (default /run/skiff-oci)")
	}
	return nil
}

// exactArgs is cobra.ExactArgs with runc-like wording.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s: expects %s, got %d argument(s); see '%s --help'", cmd.CommandPath(), what, len(args), cmd.CommandPath())
		}
		return nil
	}
}
