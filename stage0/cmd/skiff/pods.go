package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage1/abi"
)

// output is the shared --format/--no-legend pair of listing verbs.
type output struct {
	format   string
	noLegend bool
}

func (o *output) register(c *cobra.Command, legend bool) {
	c.Flags().StringVar(&o.format, "format", "", `output format: "" (a table) or "json"`)
	if legend {
		c.Flags().BoolVar(&o.noLegend, "no-legend", false, "omit the table's header line")
	}
}

func (o *output) check() error {
	if o.format != "" && o.format != "json" {
		return fmt.Errorf("--format=%s: unknown format; use --format=json or leave it out", o.format)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// podView is what list and status show of a pod.
type podView struct {
	UUID     string              `json:"uuid"`
	State    string              `json:"state"`
	Apps     []appView           `json:"apps"`
	PID      int                 `json:"pid,omitempty"`
	Ready    bool                `json:"ready"`
	Created  *time.Time          `json:"created,omitempty"`
	Started  *time.Time          `json:"started,omitempty"`
	Exited   *time.Time          `json:"exited,omitempty"`
	ExitCode *int                `json:"exitCode,omitempty"`
	Networks []abi.NetworkStatus `json:"networks,omitempty"`
	// PrivateUsers is the pod's uid/gid range (--private-users).
	PrivateUsers *abi.IDRange `json:"privateUsers,omitempty"`
}

type appView struct {
	Name      string `json:"name"`
	Image     string `json:"image"`
	ImageID   string `json:"imageID"`
	ExitCode  *int   `json:"exitCode,omitempty"`
	Signal    string `json:"signal,omitempty"`
	OOMKilled bool   `json:"oomKilled,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func view(p *pod.Pod) podView {
	v := podView{UUID: p.UUID, State: p.State.String()}
	m, _ := p.Manifest()
	st, err := p.Status()
	if err == nil {
		v.State, v.PID, v.Ready = st.State.String(), st.PID, st.Ready
		v.Created, v.Started, v.Exited = timePtr(st.Created), timePtr(st.Started), timePtr(st.Exited)
		if !st.Exited.IsZero() {
			c := st.ExitCode
			v.ExitCode = &c
		}
	}
	if d, err := os.Open(p.Dir); err == nil { // networks.json is absent before the network is up
		_ = abi.ReadJSONAt(d, abi.NetworksFile, &v.Networks)
		d.Close()
	}
	if m != nil {
		v.PrivateUsers = m.PrivateUsers
		for i, a := range m.Apps {
			av := appView{Name: a.Name, Image: a.Image.Name, ImageID: a.Image.ID}
			if st != nil && i < len(st.Apps) && st.Apps[i].Exit != nil {
				c := st.Apps[i].Exit.Code
				av.ExitCode, av.Signal, av.OOMKilled = &c, st.Apps[i].Exit.Signal, st.Apps[i].Exit.OOMKilled
			}
			v.Apps = append(v.Apps, av)
		}
	}
	return v
}

func ago(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func newListCmd(g *globals) *cobra.Command {
	var o output
	c := &cobra.Command{
		Use:   "list",
		Short: "List pods: UUID, apps, images, state, created, started, exited",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			pods, err := pod.List(g.dir)
			if err != nil {
				return err
			}
			views := make([]podView, 0, len(pods))
			for _, p := range pods {
				views = append(views, view(p))
			}
			if o.format == "json" {
				return writeJSON(cmd.OutOrStdout(), views)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if !o.noLegend {
				fmt.Fprintln(tw, "UUID\tAPP\tIMAGE\tSTATE\tCREATED\tSTARTED\tEXITED")
			}
			for _, v := range views {
				var names, images []string
				for _, a := range v.Apps {
					names, images = append(names, a.Name), append(images, a.Image)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.UUID, strings.Join(names, ","),
					strings.Join(images, ","), v.State, ago(v.Created), ago(v.Started), ago(v.Exited))
			}
			return tw.Flush()
		},
	}
	o.register(c, true)
	return c
}

func newStatusCmd(g *globals) *cobra.Command {
	var o output
	var wait, waitReadyLimit time.Duration
	c := &cobra.Command{
		Use:   "status [--wait[=DURATION]] [--wait-ready[=DURATION]] UUID",
		Short: "Show a pod's state, pid, timestamps and per-app exit codes",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if len(args) == 2 {
				// "--wait 1s UUID": the limit given as a word of its own.
				if err := bareWaitLimit(cmd, args[0], &wait, &waitReadyLimit); err != nil {
					return err
				}
				args = args[1:]
			}
			p, err := pod.Load(g.dir, args[0])
			if err != nil {
				return err
			}
			defer p.Close()
			if cmd.Flags().Changed("wait-ready") {
				if err := waitReady(g, p, waitReadyLimit); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("wait") {
				if err := waitFor(p, wait); err != nil {
					return err
				}
			}
			v := view(p)
			if o.format == "json" {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			printStatus(cmd.OutOrStdout(), v)
			return nil
		},
	}
	o.register(c, false)
	c.Flags().DurationVar(&wait, "wait", 0, "wait for the pod to exit (at most DURATION; 0 or no value: no limit)")
	c.Flags().Lookup("wait").NoOptDefVal = "0s"
	c.Flags().DurationVar(&waitReadyLimit, "wait-ready", 0, "wait for the pod to be ready: its apps started, and those that speak sd_notify sent READY=1 (at most DURATION; 0 or no value: no limit)")
	c.Flags().Lookup("wait-ready").NoOptDefVal = "0s"
	return c
}

// bareWaitLimit reads "status --wait 1s UUID": --wait (or --wait-ready)
// given without a value, followed by its limit as an argument.
func bareWaitLimit(cmd *cobra.Command, word string, wait, waitReady *time.Duration) error {
	d, err := time.ParseDuration(word)
	bare := func(name string) bool {
		fl := cmd.Flags().Lookup(name)
		return fl.Changed && fl.Value.String() == (time.Duration(0)).String()
	}
	switch {
	case err != nil || d < 0:
		return fmt.Errorf("status takes one pod UUID, and %q is not a duration for --wait; write --wait=DURATION UUID", word)
	case bare("wait") && !bare("wait-ready"):
		*wait = d
	case bare("wait-ready") && !bare("wait"):
		*waitReady = d
	default:
		return fmt.Errorf("status takes one pod UUID; give a limit as --wait=%s or --wait-ready=%s", word, word)
	}
	return nil
}

func waitFor(p *pod.Pod, limit time.Duration) error {
	ctx := context.Background()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	if err := waitEnded(ctx, p); err != nil {
		if p.State == pod.Prepared || p.State == pod.Preparing {
			return fmt.Errorf("pod %s: still prepared after %s; start it with 'skiff run-prepared %s'", p.UUID, limit, p.UUID)
		}
		return fmt.Errorf("pod %s: still running after %s", p.UUID, limit)
	}
	return nil
}

// waitEnded waits until the pod has run and ended: a prepared pod is waited
// for until someone runs it (run-prepared) and it exits.
func waitEnded(ctx context.Context, p *pod.Pod) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if err := p.WaitExit(ctx); err != nil {
			return err
		}
		if p.State != pod.Prepared && p.State != pod.Preparing {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func printStatus(w io.Writer, v podView) {
	fmt.Fprintf(w, "uuid=%s\nstate=%s\n", v.UUID, v.State)
	if v.PID > 0 {
		fmt.Fprintf(w, "pid=%d\n", v.PID)
	}
	fmt.Fprintf(w, "ready=%t\ncreated=%s\nstarted=%s\nexited=%s\n", v.Ready, ago(v.Created), ago(v.Started), ago(v.Exited))
	if v.ExitCode != nil {
		fmt.Fprintf(w, "exit-code=%d\n", *v.ExitCode)
	}
	for _, n := range v.Networks {
		fmt.Fprintf(w, "network-%s=%s %s\n", n.Name, n.IfName, strings.Join(n.IPs, ","))
	}
	if v.PrivateUsers != nil {
		fmt.Fprintf(w, "private-users=%s\n", v.PrivateUsers)
	}
	for _, a := range v.Apps {
		fmt.Fprintf(w, "app-%s=%s", a.Name, a.Image)
		if a.ExitCode != nil {
			fmt.Fprintf(w, " exit-code=%d", *a.ExitCode)
		}
		if a.Signal != "" {
			fmt.Fprintf(w, " signal=%s", a.Signal)
		}
		if a.OOMKilled {
			fmt.Fprint(w, " oom-killed=true")
		}
		fmt.Fprintln(w)
	}
}

func newCatManifestCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cat-manifest UUID",
		Short: "Print a pod's manifest (pod.json)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := pod.Load(g.dir, args[0])
			if err != nil {
				return err
			}
			defer p.Close()
			d, err := os.Open(p.Dir)
			if err != nil {
				return err
			}
			defer d.Close()
			b, err := abi.ReadFileAt(d, abi.PodManifestFile, abi.MaxFileSize)
			if err != nil {
				return fmt.Errorf("pod %s has no manifest yet: %w", p.UUID, err)
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}
