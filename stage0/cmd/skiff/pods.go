package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage1/abi"
)

// output is the one set of output flags of every listing verb (rkt's):
// --format=table|json|json-pretty, --no-legend and --full.
type output struct {
	format   string
	noLegend bool
	full     bool
}

// register adds the flags; table says what the verb's table is.
func (o *output) register(c *cobra.Command, table string) {
	c.Flags().StringVar(&o.format, "format", "table", "output format: table ("+table+"), json (one line) or json-pretty (indented)")
	c.Flags().BoolVar(&o.noLegend, "no-legend", false, "omit the table's header line")
	c.Flags().BoolVar(&o.full, "full", false, "do not shorten IDs in the table")
}

func (o *output) check() error {
	switch o.format {
	case "", "table", "json", "json-pretty":
		return nil
	}
	return fmt.Errorf("--format=%s: unknown format; use table, json or json-pretty", o.format)
}

// isJSON tells the JSON formats from the table.
func (o *output) isJSON() bool { return o.format == "json" || o.format == "json-pretty" }

// writeJSON writes v as --format asks: one line, or indented.
func (o *output) writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	if o.format == "json-pretty" {
		enc.SetIndent("", "  ")
	}
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
	st, err := p.Status()
	if err != nil {
		st = &pod.Status{UUID: p.UUID, State: p.State}
		st.Manifest, _ = p.Manifest()
	}
	return viewOf(st)
}

// viewOf is what list and status show of a pod's status.
func viewOf(st *pod.Status) podView {
	v := podView{UUID: st.UUID, State: st.State.String(), PID: st.PID, Ready: st.Ready, Networks: st.Networks}
	v.Created, v.Started, v.Exited = timePtr(st.Created), timePtr(st.Started), timePtr(st.Exited)
	if !st.Exited.IsZero() {
		c := st.ExitCode
		v.ExitCode = &c
	}
	if m := st.Manifest; m != nil {
		v.PrivateUsers = m.PrivateUsers
		for i, a := range m.Apps {
			av := appView{Name: a.Name, Image: a.Image.Name, ImageID: a.Image.ID}
			if i < len(st.Apps) && st.Apps[i].Exit != nil {
				c := st.Apps[i].Exit.Code
				av.ExitCode, av.Signal, av.OOMKilled = &c, st.Apps[i].Exit.Signal, st.Apps[i].Exit.OOMKilled
			}
			v.Apps = append(v.Apps, av)
		}
	}
	return v
}

// ago is a table's time: RFC 3339 in the local time zone, with its offset.
func ago(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func newListCmd(g *globals) *cobra.Command {
	var o output
	c := &cobra.Command{
		Use:   "list",
		Short: "List pods, oldest first: UUID, apps, images, state, created, started, exited",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			sts, err := pod.ListStatus(g.dir, !o.isJSON()) // the table shows less
			if err != nil {
				return err
			}
			views := make([]podView, 0, len(sts))
			for _, st := range sts {
				views = append(views, viewOf(st))
			}
			slices.SortStableFunc(views, func(a, b podView) int { return compareCreated(a.Created, b.Created) })
			out := bufio.NewWriter(cmd.OutOrStdout())
			if o.isJSON() {
				if err := o.writeJSON(out, views); err != nil {
					return err
				}
				return out.Flush()
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !o.noLegend {
				legend := "UUID\tAPP\tIMAGE\tSTATE\tCREATED\tSTARTED\tEXITED"
				if o.full {
					legend += "\tIMAGE ID"
				}
				fmt.Fprintln(tw, legend)
			}
			for _, v := range views {
				var names, images, ids []string
				for _, a := range v.Apps {
					names, images, ids = append(names, a.Name), append(images, a.Image), append(ids, a.ImageID)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s", v.UUID, strings.Join(names, ","),
					strings.Join(images, ","), v.State, ago(v.Created), ago(v.Started), ago(v.Exited))
				if o.full {
					fmt.Fprintf(tw, "\t%s", strings.Join(ids, ","))
				}
				fmt.Fprintln(tw)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return out.Flush()
		},
	}
	o.register(c, "a line per pod")
	return c
}

// compareCreated orders pods by creation, a pod without a time last.
func compareCreated(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return a.Compare(*b)
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
			if o.isJSON() {
				return o.writeJSON(cmd.OutOrStdout(), v)
			}
			printStatus(cmd.OutOrStdout(), v)
			return nil
		},
	}
	o.register(c, "KEY=VALUE lines")
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
