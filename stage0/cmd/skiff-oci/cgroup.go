package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/internal/cgtree"
)

// The container's cgroups are the stage1's record of them
// (container.Cgroup: one path, the same in each hierarchy), never a
// process's own /proc/PID/cgroup: the container's root, given write access
// to its cgroupfs, could move its init into a group of its own below the
// container's, and pause would then freeze, ps list and update limit only
// that group. pause/resume, ps and update work on them directly, as runc
// does; the stage1 is not involved.

const cgroupRoot = "/sys/fs/cgroup"

// cgroupPaths maps a v1 controller (and "" for cgroup2) to the host
// directory of the container's cgroup in its hierarchy, for those that have
// it.
func cgroupPaths(c container) (map[string]string, error) {
	cg, err := c.Cgroup()
	if err != nil {
		return nil, err
	}
	return cgtree.Dirs(cgroupRoot, cg), nil
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// frozen tells whether the container's cgroup is frozen (or freezing).
// state asks it of every running container an orchestrator polls: it
// looks at the freezer's hierarchy and cgroup2 only (cgtree.Dir), not all
// of them.
func frozen(c container) bool {
	cg, err := c.Cgroup()
	if err != nil {
		return false
	}
	if d, ok := cgtree.Dir(cgroupRoot, cg, "freezer"); ok {
		s := readTrim(filepath.Join(d, "freezer.state"))
		return s == "FROZEN" || s == "FREEZING"
	}
	if d, ok := cgtree.Dir(cgroupRoot, cg, ""); ok {
		return readTrim(filepath.Join(d, "cgroup.freeze")) == "1"
	}
	return false
}

// freeze freezes (or thaws) the container's cgroup and waits until it is
// done.
func freeze(c container, on bool) error {
	paths, err := cgroupPaths(c)
	if err != nil {
		return err
	}
	return freezePaths(paths, on)
}

// freezePaths freezes (or thaws) the cgroup whose directories are paths
// (cgroupPaths) and waits until it is done.
func freezePaths(paths map[string]string, on bool) error {
	file, val, done := "", "", func() bool { return true }
	if d, ok := paths["freezer"]; ok {
		file, val = filepath.Join(d, "freezer.state"), "THAWED"
		if on {
			val = "FROZEN"
		}
		done = func() bool { return readTrim(file) == val }
	} else if d, ok := paths[""]; ok {
		file, val = filepath.Join(d, "cgroup.freeze"), "0"
		if on {
			val = "1"
		}
		want := "frozen " + val
		done = func() bool { return strings.Contains(readTrim(filepath.Join(d, "cgroup.events")), want) }
	} else {
		return errors.New("no freezer cgroup (neither the v1 freezer nor cgroup2)")
	}
	for i := 0; ; i++ {
		if err := os.WriteFile(file, []byte(val), 0); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if done() {
			return nil
		}
		if i == 1000 {
			return fmt.Errorf("%s: still not %s after 10 s", file, val)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func thaw(c container) { freeze(c, false) }

func newPauseCmd(g *globals, pause bool) *cobra.Command {
	use, short := "pause ID", "Freeze every process of a container (cgroup freezer)"
	if !pause {
		use, short = "resume ID", "Thaw a paused container"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1, "the container's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, l, st, err := g.openStatus(args[0])
			if err != nil {
				return err
			}
			defer l.unlock()
			switch {
			case pause && st.Status != specs.StateRunning:
				return fmt.Errorf("container %s: %w (%s)", args[0], errNotRunning, st.Status)
			case !pause && st.Status != statePaused:
				return fmt.Errorf("container %s: container not paused (%s)", args[0], st.Status)
			}
			if err := freeze(c, pause); err != nil {
				return wrapC(args[0], err)
			}
			return nil
		},
	}
}

// containerPids lists every process in the container's cgroup and in the
// groups below it (cgtree: a bounded part of a tree the container may have
// grown, no symlink followed).
func containerPids(c container) ([]int, error) {
	paths, err := cgroupPaths(c)
	if err != nil {
		return nil, err
	}
	dir, ok := paths[""]
	if !ok {
		if dir, ok = paths["freezer"]; !ok {
			if dir, ok = paths["pids"]; !ok {
				return nil, errors.New("its cgroup is in no hierarchy (cgroup2, freezer or pids)")
			}
		}
	}
	return cgtree.Pids(dir)
}

func newPsCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "ps [--format table|json] ID [PS_ARGS...]",
		Short: "List a container's processes (json: their pids; table: ps -ef's lines)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("%s: expects the container's id; see '%s --help'", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: unknown format; use table or json", format)
			}
			c, l, st, err := g.openStatus(args[0])
			if err != nil {
				return err
			}
			l.unlock()
			if st.Status == specs.StateStopped || st.Pid <= 0 {
				return fmt.Errorf("container %s: %w", args[0], errNotRunning)
			}
			pids, err := containerPids(c)
			if err != nil {
				return wrapC(args[0], err)
			}
			if format == "json" {
				if pids == nil {
					pids = []int{}
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(pids)
			}
			return psTable(cmd.OutOrStdout(), pids, args[1:])
		},
	}
	c.Flags().SetInterspersed(false)
	c.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	return c
}

// psTable prints ps's header and its lines for pids, as runc does.
func psTable(w io.Writer, pids []int, psArgs []string) error {
	if len(psArgs) == 0 {
		psArgs = []string{"-ef"}
	}
	out, err := exec.Command("ps", psArgs...).Output()
	if err != nil {
		return fmt.Errorf("ps %s: %w", strings.Join(psArgs, " "), err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	col := -1
	for i, f := range strings.Fields(lines[0]) {
		if f == "PID" {
			col = i
		}
	}
	if col < 0 {
		return fmt.Errorf("ps %s: no PID column in its output", strings.Join(psArgs, " "))
	}
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	fmt.Fprintln(w, lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > col {
			if n, err := strconv.Atoi(f[col]); err == nil && in[n] {
				fmt.Fprintln(w, l)
			}
		}
	}
	return nil
}

func newUpdateCmd(g *globals) *cobra.Command {
	var resources string
	c := &cobra.Command{
		Use:   "update --resources FILE|- ID",
		Short: "Change a running container's cgroup limits (linux.resources JSON)",
		Args:  exactArgs(1, "the container's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if resources == "" {
				return fmt.Errorf("update: give the new limits with --resources FILE (or - for stdin)")
			}
			var b []byte
			var err error
			if resources == "-" {
				b, err = io.ReadAll(cmd.InOrStdin())
			} else {
				b, err = os.ReadFile(resources)
			}
			if err != nil {
				return fmt.Errorf("--resources %s: %w", resources, err)
			}
			var r specs.LinuxResources
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("--resources %s: not linux.resources JSON: %v", resources, err)
			}
			c, l, st, err := g.openStatus(args[0])
			if err != nil {
				return err
			}
			defer l.unlock()
			if st.Status == specs.StateStopped || st.Pid <= 0 {
				return fmt.Errorf("container %s: %w", args[0], errNotRunning)
			}
			paths, err := cgroupPaths(c)
			if err != nil {
				return wrapC(args[0], err)
			}
			if err := applyResources(paths, &r); err != nil {
				return wrapC(args[0], err)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&resources, "resources", "r", "", "file with linux.resources JSON, or - for stdin")
	return c
}

// applyResources writes the limits that are set in r (memory, cpu, cpuset,
// pids) to the v1 hierarchies, or to cgroup2 where there is no v1 one.
func applyResources(paths map[string]string, r *specs.LinuxResources) error {
	type w struct{ ctrl, v1, v2, val string }
	var ws []w
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	max := func(v int64) string {
		if v < 0 {
			return "max"
		}
		return i64(v)
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			ws = append(ws, w{"memory", "memory.limit_in_bytes", "memory.max", max(*m.Limit)})
		}
		if m.Reservation != nil {
			ws = append(ws, w{"memory", "memory.soft_limit_in_bytes", "memory.low", max(*m.Reservation)})
		}
		if m.Swap != nil {
			ws = append(ws, w{"memory", "memory.memsw.limit_in_bytes", "memory.swap.max", max(*m.Swap)})
		}
	}
	if cp := r.CPU; cp != nil {
		if cp.Shares != nil && *cp.Shares > 0 {
			weight := 1 + ((*cp.Shares-2)*9999)/262142
			ws = append(ws, w{"cpu", "cpu.shares", "cpu.weight", strconv.FormatUint(*cp.Shares, 10)})
			ws[len(ws)-1].v2 = "cpu.weight=" + strconv.FormatUint(weight, 10)
		}
		if cp.Period != nil && *cp.Period > 0 {
			ws = append(ws, w{"cpu", "cpu.cfs_period_us", "", strconv.FormatUint(*cp.Period, 10)})
		}
		if cp.Quota != nil && *cp.Quota != 0 {
			ws = append(ws, w{"cpu", "cpu.cfs_quota_us", "", i64(*cp.Quota)})
		}
		if cp.Cpus != "" {
			ws = append(ws, w{"cpuset", "cpuset.cpus", "cpuset.cpus", cp.Cpus})
		}
		if cp.Mems != "" {
			ws = append(ws, w{"cpuset", "cpuset.mems", "cpuset.mems", cp.Mems})
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		ws = append(ws, w{"pids", "pids.max", "pids.max", max(*p.Limit)})
	}
	for _, x := range ws {
		file, val := "", x.val
		if d, ok := paths[x.ctrl]; ok {
			file = filepath.Join(d, x.v1)
		} else if d, ok := paths[""]; ok && x.v2 != "" {
			file = filepath.Join(d, x.v2)
			if name, v, ok := strings.Cut(x.v2, "="); ok {
				file, val = filepath.Join(d, name), v
			}
		} else {
			return fmt.Errorf("no %s cgroup to apply %s to", x.ctrl, x.v1)
		}
		if err := os.WriteFile(file, []byte(val), 0); err != nil {
			return fmt.Errorf("%s = %s: %w", file, val, err)
		}
	}
	return nil
}
