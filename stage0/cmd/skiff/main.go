// Command skiff is stage0: the daemonless container runtime's CLI. It fetches
// and verifies images, prepares pods on disk and execs a stage1 to run them.
// Errors become one line on stderr and an exit code here, and only here.
package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/image/layer"
	"github.com/skiff-project/skiff/internal/idmap"
	"github.com/skiff-project/skiff/stage1/abi"
)

// Version is set at build time (-ldflags -X main.Version=...).
var Version = "dev"

// globals are the flags every verb shares (rkt's set).
type globals struct {
	dir          string
	localConfig  string
	systemConfig string
	debug        bool
	insecure     string
	maxLayerSize string
	maxEntries   int64
}

// exitError carries an exit code through cobra without a message of its own
// (the app's code, or a failure already reported).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "skiff",
		Short: "skiff runs containers as pods, without a daemon",
		Long: `skiff fetches OCI images, verifies their signatures, renders their root
filesystems with overlayfs and runs them as pods through a swappable stage1
(by default: namespaces, cgroups and systemd as the pod's init).

` + usageWays,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetFlagErrorFunc(flagHint) // a flag in the wrong place, or podman's, names skiff's way
	pf := root.PersistentFlags()
	pf.StringVar(&g.dir, "dir", "/var/lib/skiff", "skiff's data directory (images and pods)")
	pf.StringVar(&g.localConfig, "local-config", "/etc/skiff", "the administrator's configuration directory")
	pf.StringVar(&g.systemConfig, "system-config", "/usr/lib/skiff", "the vendor's configuration directory (and stage1 images)")
	pf.BoolVar(&g.debug, "debug", false, "print debugging information on stderr")
	pf.StringVar(&g.insecure, "insecure-options", "", "comma-separated checks to skip: "+strings.Join(insecureNames(), ", "))
	pf.StringVar(&g.maxLayerSize, "max-layer-size", "64GiB", "refuse an image layer (or ACI) that is or expands to more than this (K, M, G, T suffixes)")
	pf.Int64Var(&g.maxEntries, "max-layer-entries", layer.DefaultLimits.MaxEntries, "refuse an image layer (or ACI) of more than this many files")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if err := g.checkDirs(); err != nil {
			return err
		}
		return g.setLayerLimits()
	}
	root.AddCommand(newRunCmd(g), newListCmd(g), newStatusCmd(g), newGCCmd(g), newRmCmd(g),
		newCatManifestCmd(g), newStopCmd(g), newEnterCmd(g), newVersionCmd(g),
		newPrepareCmd(g), newRunPreparedCmd(g), newFetchCmd(g), newImageCmd(g), newTrustCmd(g),
		newLogsCmd(g), newGenerateCmd(g))
	return root
}

// checkDirs refuses an empty --dir, --local-config or --system-config (an
// unset variable, say), which would mean the current directory.
func (g *globals) checkDirs() error {
	for _, d := range []struct{ flag, val string }{{"dir", g.dir}, {"local-config", g.localConfig}, {"system-config", g.systemConfig}} {
		if strings.TrimSpace(d.val) == "" {
			return fmt.Errorf("--%s is empty (an unset variable?); name a directory, or leave the flag out for its default", d.flag)
		}
	}
	return nil
}

// setLayerLimits applies --max-layer-size and --max-layer-entries.
func (g *globals) setLayerLimits() error {
	size, err := parseByteSize(g.maxLayerSize)
	if err != nil {
		return fmt.Errorf("--max-layer-size=%s: %v; want a byte count such as 64GiB", g.maxLayerSize, err)
	}
	if g.maxEntries <= 0 {
		return fmt.Errorf("--max-layer-entries=%d: want a positive count", g.maxEntries)
	}
	layer.SetLimits(layer.Limits{MaxSize: size, MaxEntries: g.maxEntries})
	return nil
}

// parseByteSize reads a positive byte count with an optional K, M, G or T
// suffix (powers of 1024; "KiB", "KB" and "K" alike).
func parseByteSize(s string) (int64, error) {
	num := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	shift := 0
	if i := strings.IndexAny(num, "KMGT"); i >= 0 && i == len(num)-1 {
		shift = 10 * (1 + strings.IndexByte("KMGT", num[i]))
		num = num[:i]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64>>shift {
		return 0, errors.New("not a positive byte count")
	}
	return n << shift, nil
}

func main() {
	idmap.Hold() // the helper of idmap.UserNS; returns elsewhere
	root := newRoot()
	if err := needRoot(root, os.Args[1:], os.Geteuid()); err != nil {
		fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
		os.Exit(abi.ExitSkiffFailure)
	}
	cmd, err := root.ExecuteC()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(os.Stderr, "skiff: %v\n", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintf(os.Stderr, "skiff: %s\n", errorMessage(cmd, err))
	os.Exit(abi.ExitSkiffFailure)
}

// isUsageError tells cobra's own complaints about the command line (wrong
// number of arguments, unknown verb or flag), which deserve a pointer to help.
func isUsageError(msg string) bool {
	for _, s := range []string{"arg(s)", "unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// oneLine folds a multi-line error (cobra's suggestions) into one line.
func oneLine(err error) string {
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.ReplaceAll(strings.Join(parts, " "), " Did you mean this? ", "; did you mean: ")
}
