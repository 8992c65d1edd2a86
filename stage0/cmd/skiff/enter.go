package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

func newEnterCmd(g *globals) *cobra.Command {
	var app string
	c := &cobra.Command{
		Use:   "enter [--app=NAME] UUID [--app=NAME] [--] [CMD [ARGS...]]",
		Short: "Run a command inside a running pod's app (default: /bin/sh)",
		Long: `enter runs CMD inside an app of a running pod: in the app's rootfs, as
the app's user, in the pod's namespaces and cgroup. Its stdin, stdout and
stderr are enter's own, and on a terminal CMD gets a pseudo-terminal of its
own (its controlling terminal, with enter's TERM), as 'podman exec -it' does.
skiff exits with CMD's code. --app is needed when the pod has several apps.
SIGTERM, SIGHUP and SIGINT to enter go to CMD; what CMD started is killed
when it ends (or 10 s later), so nothing outlives enter.`,
		Example: `  skiff enter 5f0c -- ls /
  skiff enter 5f0c --app=web -- cat /etc/os-release`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			argv, err := enterArgs(args[1:], &app)
			if err != nil {
				return err
			}
			p, err := pod.Load(g.dir, args[0])
			if err != nil {
				return err
			}
			defer p.Close()
			if len(argv) == 0 {
				argv = []string{"/bin/sh"}
			}
			return enterPod(g, p, app, argv)
		},
	}
	c.Flags().SetInterspersed(false) // flags after UUID belong to CMD
	c.Flags().StringVar(&app, "app", "", "the app to enter (default: the pod's only app)")
	return c
}

// enterArgs takes, after the UUID, enter's own --app (as 'enter UUID
// --app=NAME CMD') and the '--' that ends enter's flags; the rest is CMD.
func enterArgs(rest []string, app *string) ([]string, error) {
	for len(rest) > 0 {
		switch a := rest[0]; {
		case strings.HasPrefix(a, "--app="):
			*app, rest = strings.TrimPrefix(a, "--app="), rest[1:]
		case a == "--app":
			if len(rest) < 2 {
				return nil, fmt.Errorf("enter: --app needs an app name: --app=NAME")
			}
			*app, rest = rest[1], rest[2:]
		case a == "--":
			return rest[1:], nil
		default:
			return rest, nil
		}
	}
	return rest, nil
}

func enterPod(g *globals, p *pod.Pod, app string, argv []string) error {
	if p.State != pod.Running && p.State != pod.Preparing {
		return fmt.Errorf("pod %s is %s, not running; only a running pod can be entered", p.UUID, p.State)
	}
	st, err := waitStarted(p, 5*time.Second)
	if err != nil {
		return err
	}
	m, err := p.Manifest()
	if err != nil {
		return err
	}
	var names []string
	for _, a := range m.Apps {
		names = append(names, a.Name)
	}
	if app == "" {
		if len(m.Apps) != 1 {
			return fmt.Errorf("pod %s has %d apps (%s); choose one with --app=NAME", p.UUID, len(m.Apps), strings.Join(names, ", "))
		}
		app = m.Apps[0].Name
	}
	if !slices.Contains(names, app) {
		return fmt.Errorf("pod %s has no app %q; its apps: %s (choose one with --app=NAME)", p.UUID, app, strings.Join(names, ", "))
	}
	entry, err := stage1img.Entrypoint(m.Stage1, abi.EntrypointEnter)
	if err != nil {
		return err
	}
	// enter becomes the stage1's enter (as run does): signals to skiff, a
	// terminal's hangup included, reach it, and it passes them on.
	args := append([]string{m.Stage1.Entrypoints[abi.EntrypointEnter], "--pid=" + strconv.Itoa(st.PID), "--app=" + app, "--"}, argv...)
	env := os.Environ()
	if g.debug {
		env = append(env, abi.EnvDebug+"=1")
	}
	if err := os.Chdir(p.Dir); err != nil {
		return err
	}
	p.Close()
	err = syscall.Exec(entry, args, env)
	return fmt.Errorf("exec stage1 %s: %w", entry, err)
}

// waitStarted waits, briefly, for a starting pod to have its pid: enter right
// after run should not fail on a race.
func waitStarted(p *pod.Pod, limit time.Duration) (*pod.Status, error) {
	deadline := time.Now().Add(limit)
	for {
		st, err := p.Status()
		if err != nil {
			return nil, err
		}
		if st.PID > 0 {
			return st, nil
		}
		if st.State != pod.Running && st.State != pod.Preparing {
			return nil, fmt.Errorf("pod %s is %s, not running; only a running pod can be entered", p.UUID, st.State)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("pod %s has not started within %s; see 'skiff status %s'", p.UUID, limit, p.UUID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
