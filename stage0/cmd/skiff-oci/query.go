package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

func jsonStrict(b []byte, v any) error { return json.Unmarshal(b, v) }

func writeJSONIndent(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// stateJSON is runc's state output: the runtime-spec state plus rootfs,
// created and owner.
type stateJSON struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func (g *globals) stateOut(st *specs.State) stateJSON {
	s := stateJSON{OCIVersion: st.Version, ID: st.ID, Pid: st.Pid, Status: string(st.Status),
		Bundle: st.Bundle, Annotations: st.Annotations, Owner: "root"}
	if s.OCIVersion == "" {
		s.OCIVersion = specs.Version
	}
	if st.Status == specs.StateStopped {
		s.Pid = 0
	}
	if fi, err := os.Stat(filepath.Join(g.root, st.ID)); err == nil {
		s.Created = fi.ModTime().UTC()
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
			s.Owner = strconv.Itoa(int(sys.Uid))
		}
	}
	if b, err := os.ReadFile(filepath.Join(st.Bundle, "config.json")); err == nil {
		var spec specs.Spec
		if json.Unmarshal(b, &spec) == nil && spec.Root != nil {
			s.Rootfs = spec.Root.Path
			if !filepath.IsAbs(s.Rootfs) {
				s.Rootfs = filepath.Join(st.Bundle, s.Rootfs)
			}
		}
	}
	return s
}

// listStates reads every container under --root (holding the root lock
// shared, so that none is half made or half removed).
func (g *globals) listStates() ([]stateJSON, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(g.root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state root %s: %w", g.root, err)
	}
	rl, err := lockRoot(g.root, false)
	if err != nil {
		return nil, err
	}
	defer rl.unlock()
	var out []stateJSON
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || checkID(e.Name()) != nil {
			continue
		}
		c, err := g.be.Open(g.root, e.Name())
		if err != nil {
			continue // not a container (or gone meanwhile)
		}
		st, err := status(c)
		if err != nil {
			continue
		}
		out = append(out, g.stateOut(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func newListCmd(g *globals) *cobra.Command {
	var format string
	var quiet bool
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the containers under --root",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: unknown format; use table or json", format)
			}
			states, err := g.listStates()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch {
			case quiet:
				for _, s := range states {
					fmt.Fprintln(w, s.ID)
				}
			case format == "json":
				if states == nil {
					states = []stateJSON{}
				}
				b, _ := json.Marshal(states)
				fmt.Fprintln(w, string(b))
			default:
				tw := tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)
				fmt.Fprint(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
				for _, s := range states {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle,
						s.Created.Format(time.RFC3339Nano), s.Owner)
				}
				tw.Flush()
			}
			return nil
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the ids only")
	return c
}
