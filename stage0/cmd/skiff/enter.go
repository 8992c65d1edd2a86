package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

func newEnterCmd(g *globals) *cobra.Command {
	var app string
	c := &cobra.Command{
		Use:   "enter [--app=NAME] UUID [CMD [ARGS...]]",
		Short: "Run a command inside a running pod's app (default: /bin/sh)",
		Long: `enter runs CMD inside an app of a running pod: in the app's rootfs, as
the app's user, in the pod's namespaces and cgroup. Its stdin, stdout and
stderr are enter's own; skiff exits with CMD's code. --app is needed when the
pod has several apps.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := pod.Load(g.dir, args[0])
			if err != nil {
				return err
			}
			defer p.Close()
			argv := args[1:]
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
	if app == "" {
		if len(m.Apps) != 1 {
			return fmt.Errorf("pod %s has %d apps; choose one with --app", p.UUID, len(m.Apps))
		}
		app = m.Apps[0].Name
	}
	found := false
	for _, a := range m.Apps {
		found = found || a.Name == app
	}
	if !found {
		return fmt.Errorf("pod %s has no app %q; see 'skiff status %s'", p.UUID, app, p.UUID)
	}
	entry, err := stage1img.Entrypoint(m.Stage1, abi.EntrypointEnter)
	if err != nil {
		return err
	}
	cmd := exec.Command(entry, append([]string{"--pid=" + strconv.Itoa(st.PID), "--app=" + app, "--"}, argv...)...)
	cmd.Args[0] = m.Stage1.Entrypoints[abi.EntrypointEnter]
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = p.Dir, os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.ExitCode()}
	}
	return err
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
