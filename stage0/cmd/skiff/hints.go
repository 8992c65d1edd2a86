package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiff-project/skiff/internal/lazyre"
	"github.com/skiff-project/skiff/stage0/prepare"
)

// Where a flag goes on run's (prepare's, generate unit's) command line.
const (
	podFlagWhere = "a pod flag: put it before the first image, as in '%s --%s IMAGE'"
	appFlagWhere = "an app flag: put it after its image, as in '%s IMAGE --%s'"
)

// foreignFlags maps flags users of podman, docker and runc type (without
// dashes) to skiff's way of saying the same.
var foreignFlags = map[string]string{
	"d":            "skiff runs a pod in the foreground; for the background write a unit with 'skiff generate unit' (or 'systemd-run skiff run ...'), or 'skiff prepare' then run the UUID with 'skiff run-prepared'",
	"detach":       "skiff runs a pod in the foreground; for the background write a unit with 'skiff generate unit' (or 'systemd-run skiff run ...'), or 'skiff prepare' then run the UUID with 'skiff run-prepared'",
	"i":            "use --interactive (a pod flag, before the image): the app gets stdin, and the terminal when stdin is one",
	"t":            "use --interactive (a pod flag, before the image): the app gets the terminal when stdin is one",
	"it":           "use --interactive (a pod flag, before the image): the app gets stdin, and the terminal when stdin is one",
	"ti":           "use --interactive (a pod flag, before the image): the app gets stdin, and the terminal when stdin is one",
	"tty":          "use --interactive (a pod flag, before the image): the app gets the terminal when stdin is one",
	"e":            "use --set-env=NAME=VALUE: before the image for every app, after an image for that app",
	"env":          "use --set-env=NAME=VALUE: before the image for every app, after an image for that app",
	"env-file":     "use --set-env-file=FILE (a pod flag, before the image)",
	"p":            "use --port=[HOSTIP:]HOSTPORT:PODPORT[/udp] (a pod flag, before the image)",
	"publish":      "use --port=[HOSTIP:]HOSTPORT:PODPORT[/udp] (a pod flag, before the image)",
	"v":            "use --volume=SOURCE:TARGET[:ro] (a pod flag, before the image)",
	"rm":           "skiff keeps an exited pod until 'skiff gc' removes it (after --grace-period) or 'skiff rm UUID' does",
	"network":      "use --net=default|host|none|NAME (a pod flag, before the image)",
	"entrypoint":   "use --exec=PATH (an app flag, after the image)",
	"w":            "use --working-dir=DIR (an app flag, after the image)",
	"workdir":      "use --working-dir=DIR (an app flag, after the image)",
	"u":            "use --user=USER[:GROUP] (an app flag, after the image)",
	"m":            "use --memory=SIZE (an app flag, after the image)",
	"cpus":         "use --cpu=MILLICORES (an app flag, after the image): --cpu=1500 is 1.5 CPUs",
	"cap-add":      "use --caps-retain=CAP,... (an app flag, after the image): the app keeps exactly these",
	"cap-drop":     "use --caps-remove=CAP,... (an app flag, after the image)",
	"privileged":   "skiff has no privileged mode; keep capabilities with --caps-retain=CAP,... (an app flag, after the image)",
	"read-only":    "use --readonly-rootfs (an app flag, after the image)",
	"userns":       "use --private-users (a pod flag, before the image)",
	"add-host":     "use --hosts-entry=IP=NAME (a pod flag, before the image)",
	"restart":      "restarts are systemd's: write a unit with 'skiff generate unit --restart=on-failure ...'",
	"pull":         "use --pull-policy=new|update|never (a pod flag, before the image)",
	"uuid-file":    "use --uuid-file-save=FILE",
	"security-opt": "use --seccomp=... or --no-new-privileges (app flags, after the image)",
}

// foreignVerbs maps verbs of podman, docker and rkt's neighbours to skiff's.
var foreignVerbs = map[string]string{
	"ps":      "skiff list (pods) or skiff status UUID (one pod)",
	"exec":    "skiff enter [--app=NAME] UUID [CMD [ARGS...]]",
	"attach":  "skiff enter UUID (a shell in the app) or skiff logs --follow UUID (its output)",
	"pull":    "skiff fetch IMAGE",
	"kill":    "skiff stop --force UUID (or skiff stop UUID for SIGTERM first)",
	"images":  "skiff image list",
	"rmi":     "skiff image rm NAME|ID",
	"inspect": "skiff status UUID, skiff cat-manifest UUID or skiff image cat-manifest NAME",
	"create":  "skiff prepare IMAGE (then skiff run-prepared UUID)",
	"start":   "skiff run-prepared UUID",
	"prune":   "skiff gc (pods) and skiff image gc (images)",
	"load":    "skiff fetch docker-archive:FILE or skiff fetch oci-archive:FILE",
	"import":  "skiff fetch oci-archive:FILE",
	"save":    "skiff image export NAME FILE",
	"export":  "skiff image export NAME FILE",
	"login":   "registry credentials go in LOCAL_CONFIG/auth.d/*.json or ~/.docker/config.json (see skiff fetch --help)",
	"info":    "skiff version",
	"top":     "skiff status UUID",
}

// flagName is the flag pflag did not know, as typed ("net", "it"), and
// whether it was given as a shorthand.
func flagName(err error) (name string, short bool, ok bool) {
	var ne *pflag.NotExistError
	if !errors.As(err, &ne) {
		return "", false, false
	}
	if sh := ne.GetSpecifiedShortnames(); sh != "" {
		return sh, true, true
	}
	return ne.GetSpecifiedName(), false, true
}

// takesApps tells the verbs whose command line is [pod flags] IMAGE [app flags].
func takesApps(cmd *cobra.Command) bool {
	switch cmd.CommandPath() {
	case "skiff run", "skiff prepare", "skiff generate unit":
		return true
	}
	return false
}

// flagHint words pflag's complaint about a verb's own flags with where the
// flag belongs, or what skiff calls it.
func flagHint(cmd *cobra.Command, err error) error {
	name, short, ok := flagName(err)
	if !ok {
		return err
	}
	if !short && takesApps(cmd) && prepare.IsAppFlag(name) {
		return fmt.Errorf("%v: it is "+appFlagWhere, err, cmd.CommandPath(), name+"=...")
	}
	if h, ok := foreignFlags[name]; ok {
		return fmt.Errorf("%v: %s", err, h)
	}
	if short && len(name) > 1 {
		if h, ok := foreignFlags[name[:1]]; ok {
			return fmt.Errorf("%v: %s", err, h)
		}
	}
	return err
}

// appFlagHint words an app's flag pflag refused: a pod flag or a global one
// given after the image goes before it.
func appFlagHint(cmd *cobra.Command, err error) error {
	var ae *prepare.AppFlagError
	if !errors.As(err, &ae) {
		return err
	}
	name, short, ok := flagName(ae.Err)
	if !ok {
		return err
	}
	if !short && (cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil) {
		return fmt.Errorf("%v: it is "+podFlagWhere, err, cmd.CommandPath(), name+"=...")
	}
	if h, ok := foreignFlags[name]; ok {
		return fmt.Errorf("%v: %s", err, h)
	}
	if short && len(name) > 1 {
		if h, ok := foreignFlags[name[:1]]; ok {
			return fmt.Errorf("%v: %s", err, h)
		}
	}
	return fmt.Errorf("%v: see the app flags in '%s --help'", err, cmd.CommandPath())
}

var unknownVerbRE = lazyre.New(`^unknown command "([^"]*)" for "skiff"`)

// errorMessage is the one line skiff prints for err, cmd the verb it came
// from: cobra's complaints about the command line get what skiff calls the
// thing, and a pointer to the verb's help.
func errorMessage(cmd *cobra.Command, err error) string {
	if cmd != nil && takesApps(cmd) {
		err = appFlagHint(cmd, err)
	}
	msg := oneLine(err)
	if m := unknownVerbRE.FindStringSubmatch(msg); m != nil {
		if h, ok := foreignVerbs[m[1]]; ok {
			return fmt.Sprintf("unknown command %q: use %s; see 'skiff --help'", m[1], h)
		}
	}
	if isUsageError(msg) && !strings.Contains(msg, "--help'") {
		path := "skiff"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		msg += fmt.Sprintf("; see '%s --help'", path)
	}
	return msg
}

// usageWays are the three ways to use skiff, for --help and version.
const usageWays = `Three ways to use it:
  from the command line:  skiff run IMAGE (see 'skiff run --help')
  as systemd units:       skiff generate unit IMAGE (see 'skiff generate unit --help')
  under an orchestrator:  skiff-oci, a runc-compatible OCI runtime (see 'skiff-oci --help')
Read on in the README (a short tour, the security model, skiff-oci) and stage1/README.md.`

// rootless are the verbs that work without root: they touch neither the
// store nor a pod.
var rootless = map[string]bool{"skiff version": true, "skiff generate unit": true, "skiff help": true}

// needRoot refuses, in one line and before anything is tried, a verb run
// without root (args: the command line after "skiff"): pods need
// namespaces, cgroups and mounts, and the data directory is root's alone.
// Help is given to anyone.
func needRoot(root *cobra.Command, args []string, euid int) error {
	if euid == 0 {
		return nil
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--help" || a == "-h" {
			return nil
		}
	}
	cmd, _, err := root.Find(args)
	if err != nil || !cmd.Runnable() || rootless[cmd.CommandPath()] {
		return nil // an unknown verb is cobra's to report; a group of verbs prints its help
	}
	return fmt.Errorf("%s needs root (pods need namespaces, cgroups and mounts, and the data directory is root's); run it as root, e.g. with sudo (without root: skiff version, skiff generate unit and --help)",
		strings.TrimPrefix(cmd.CommandPath(), "skiff "))
}
