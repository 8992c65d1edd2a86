package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

// The verbs that act on pods through their stage1: stop, gc, rm.

// podGC undoes what the pod left on the host before gc or rm remove its
// directory: what its stage1 did, unless the stage1 says it already has
// (abi.CleanFile), then its private uid/gid range, which no process of the
// pod uses any more. A pod without a manifest (a prepare killed before it
// wrote one) never had a stage1 run: there is nothing to undo, and a gc
// that insisted would keep it for ever.
func podGC(g *globals, p *pod.Pod) error {
	if _, err := os.Stat(filepath.Join(p.Dir, abi.PodManifestFile)); errors.Is(err, os.ErrNotExist) {
		return nil // never a range either (a crash in between: see idrange)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, abi.CleanFile)); err != nil {
		if err := stage1Op(g, p, abi.EntrypointGC); err != nil {
			return err
		}
	}
	if m, err := p.Manifest(); err == nil {
		return releaseUsers(p, m)
	}
	return nil // never got a manifest, so never a range (a crash in between: see idrange)
}

// stage1Op runs one of a pod's stage1 entrypoints with the pod directory as its
// working directory. A stage1 without that entrypoint has nothing to do.
func stage1Op(g *globals, p *pod.Pod, name string, args ...string) error {
	m, err := p.Manifest()
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.UUID, err)
	}
	if m.Stage1.Entrypoints[name] == "" {
		return nil
	}
	entry, err := stage1img.Entrypoint(m.Stage1, name)
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.UUID, err)
	}
	cmd := exec.Command(entry, append(args, p.UUID)...)
	cmd.Args[0] = m.Stage1.Entrypoints[name] // a multi-call stage1 dispatches on it
	cmd.Dir, cmd.Stdout, cmd.Stderr = p.Dir, os.Stderr, os.Stderr
	if g.debug {
		cmd.Env = append(os.Environ(), abi.EnvDebug+"=1")
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pod %s: stage1 %s: %w", p.UUID, name, err)
	}
	return nil
}

func newGCCmd(g *globals) *cobra.Command {
	var grace, expire time.Duration
	var markOnly bool
	c := &cobra.Command{
		Use:   "gc [--grace-period=30m] [--mark-only]",
		Short: "Mark exited pods and remove those exited longer than the grace period",
		Long: `gc moves exited pods to exited-garbage, then removes every pod that has
been there longer than --grace-period through its stage1's gc entrypoint
(cgroups, mounts, network) and deletes its directory. Running pods are never
touched. --mark-only only marks (a unit's ExecStopPost runs it, so the grace
period of the unit's pod starts when it ends).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := pod.GC(g.dir, pod.GCOptions{GracePeriod: grace, ExpirePrepared: expire, MarkOnly: markOnly},
				func(p *pod.Pod) error { return podGC(g, p) })
			if err != nil {
				return err
			}
			for _, u := range r.Marked {
				fmt.Fprintf(cmd.ErrOrStderr(), "marked %s for removal\n", u)
			}
			for _, u := range r.Removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", u)
			}
			if len(r.Errors) > 0 {
				for _, e := range r.Errors[1:] {
					fmt.Fprintf(os.Stderr, "skiff: gc: %v\n", e)
				}
				return fmt.Errorf("gc: %w", r.Errors[0])
			}
			return nil
		},
	}
	c.Flags().DurationVar(&grace, "grace-period", 30*time.Minute, "how long exited pods are kept before removal")
	c.Flags().DurationVar(&expire, "expire-prepared", 24*time.Hour, "how long prepared pods are kept (negative: forever)")
	c.Flags().BoolVar(&markOnly, "mark-only", false, "only mark exited pods for removal; remove nothing")
	return c
}

func newRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm UUID...",
		Short: "Remove exited pods now (a running pod is refused)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var failed error
			for _, a := range args {
				err := removePod(g, a)
				if err == nil {
					continue
				}
				if failed != nil {
					fmt.Fprintf(os.Stderr, "skiff: %v\n", failed)
				}
				failed = err
			}
			return failed
		},
	}
}

func removePod(g *globals, arg string) error {
	p, err := pod.Load(g.dir, arg)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := pod.Remove(p, func(p *pod.Pod) error { return podGC(g, p) }); err != nil {
		if errors.Is(err, pod.ErrRunning) {
			return fmt.Errorf("pod %s is running; stop it first with 'skiff stop %s'", p.UUID, p.UUID)
		}
		return fmt.Errorf("remove pod %s: %w", p.UUID, err)
	}
	fmt.Println(p.UUID)
	return nil
}

// stopParallel bounds how many pods one `skiff stop` stops at a time.
const stopParallel = 16

// stopPod stops one running pod through its stage1, returns once the pod's
// init is gone and says which pod (arg may be a UUID's prefix).
func stopPod(g *globals, arg string, force bool) (string, error) {
	p, err := pod.Load(g.dir, arg)
	if err != nil {
		return "", err
	}
	defer p.Close()
	if p.State != pod.Running {
		return "", fmt.Errorf("pod %s is %s, not running", p.UUID, p.State)
	}
	var extra []string
	if force {
		extra = append(extra, "--force")
	}
	return p.UUID, stage1Op(g, p, abi.EntrypointStop, extra...)
}

func newStopCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "stop [--force] UUID...",
		Short: "Stop running pods: apps get SIGTERM, then SIGKILL after their stop timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Every pod is stopped, at the same time (each stop waits for its
			// pod's apps to end): one that cannot be is reported, and the
			// others are still stopped. The UUIDs stopped are printed in the
			// order given.
			uuids, errs := make([]string, len(args)), make([]error, len(args))
			sem := make(chan struct{}, stopParallel)
			var wg sync.WaitGroup
			for i, a := range args {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					uuids[i], errs[i] = stopPod(g, a, force)
				}()
			}
			wg.Wait()
			var failed error
			for i, err := range errs {
				if err == nil {
					fmt.Println(uuids[i])
					continue
				}
				if failed != nil {
					fmt.Fprintf(os.Stderr, "skiff: %v\n", failed)
				}
				failed = err
			}
			return failed
		},
	}
	c.Flags().BoolVar(&force, "force", false, "kill the pod at once")
	return c
}
