package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage0/prepare"
)

func newPrepareCmd(g *globals) *cobra.Command {
	f := &prepareFlags{}
	c := &cobra.Command{
		Use:   "prepare [pod flags] IMAGE [app flags] [-- ARGS] [--- IMAGE ...]",
		Short: "Fetch, verify and prepare a pod without running it; prints its UUID",
		Long: `prepare does everything run does up to starting the pod, and prints the
prepared pod's UUID for 'skiff run-prepared'. Prepared pods that are not run
expire in 'skiff gc' (--expire-prepared).

Images: ` + reference.Forms + `

` + prepare.AppFlagUsage,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, err := preparePod(cmd.Context(), g, f, args)
			if err != nil {
				return err
			}
			defer p.Close()
			fmt.Fprintln(cmd.OutOrStdout(), p.UUID)
			return nil
		},
	}
	c.Flags().SetInterspersed(false)
	f.register(c.Flags())
	return c
}

func newRunPreparedCmd(g *globals) *cobra.Command {
	f := &startFlags{}
	c := &cobra.Command{
		Use:   "run-prepared [--net=...] [--hostname=...] [--interactive] UUID",
		Short: "Run a prepared pod in the foreground; exits with the pod's exit code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(g); err != nil {
				return err
			}
			if err := f.checkPortsFree(); err != nil {
				return err
			}
			p, err := pod.Load(g.dir, args[0])
			if err != nil {
				return err
			}
			if p.State != pod.Prepared {
				p.Close()
				return fmt.Errorf("pod %s is %s; only a prepared pod can be run with run-prepared", p.UUID, p.State)
			}
			if err := p.Lock(); err != nil {
				return fmt.Errorf("pod %s: %w (another skiff is running it?)", p.UUID, err)
			}
			m, err := p.Manifest()
			if err != nil {
				return err
			}
			if err := checkStage1Flags(m.Stage1.Flavor, false, f.net); err != nil {
				return err
			}
			if err := p.Transition(pod.Running); err != nil {
				return err
			}
			return execStage1(g, f, p, m)
		},
	}
	f.register(c.Flags())
	return c
}
