package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Per-app limits. On a host whose controllers live in cgroup v1 (legacy or
// hybrid, like this project's CI machine) the pod's systemd only sees a
// controller-less cgroup2 tree, so stage1 enforces an app's limits from the
// host: when the app checks in for its stdio, its process joins
// /skiff/UUID/app-NAME in the memory, cpu and pids v1 hierarchies (and only
// those: its cgroup2 group stays the one its systemd service owns). On a pure
// cgroup v2 host the units carry the limits and the pod's systemd applies them
// (see stage1/units).

// appCgroupName is an app's cgroup below the pod's.
func appCgroupName(podCgroup, app string) string { return podCgroup + "/app-" + app }

// v1Resources converts what the app's spec asks for; ok is false when it asks
// for nothing.
func v1Resources(r *specs.LinuxResources) (res *cgroups.Resources, subsystems []string) {
	res = &cgroups.Resources{}
	if r == nil {
		return res, nil
	}
	if r.Memory != nil && r.Memory.Limit != nil {
		res.Memory = *r.Memory.Limit
		subsystems = append(subsystems, "memory")
	}
	if r.CPU != nil {
		if r.CPU.Quota != nil && r.CPU.Period != nil {
			res.CpuQuota, res.CpuPeriod = *r.CPU.Quota, *r.CPU.Period
		}
		if r.CPU.Shares != nil {
			res.CpuShares = *r.CPU.Shares
		}
		if res.CpuQuota != 0 || res.CpuShares != 0 {
			subsystems = append(subsystems, "cpu")
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		limit := *r.Pids.Limit
		res.PidsLimit = &limit
		subsystems = append(subsystems, "pids")
	}
	return res, subsystems
}

// applyLimits puts pid into the app's limited cgroups (v1 hosts) and sets its
// OOM score adjustment.
func applyLimits(podCgroup, app string, pid int, spec *specs.Spec) error {
	if spec.Process != nil && spec.Process.OOMScoreAdj != nil {
		adj := strconv.Itoa(*spec.Process.OOMScoreAdj)
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(adj), 0); err != nil {
			if errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrInvalid) {
				return fmt.Errorf("--oom-score-adj=%s: %w (lowering it needs CAP_SYS_RESOURCE, which this host may withhold)", adj, err)
			}
			return fmt.Errorf("--oom-score-adj=%s: %w", adj, err)
		}
	}
	if cgroups.IsCgroup2UnifiedMode() || spec.Linux == nil {
		return nil
	}
	res, subsystems := v1Resources(spec.Linux.Resources)
	if len(subsystems) == 0 {
		return nil
	}
	for _, sub := range subsystems {
		mnt, err := cgroups.FindCgroupMountpoint("", sub)
		if err != nil {
			return fmt.Errorf("limits need the %s cgroup controller: %w", sub, err)
		}
		path := filepath.Join(mnt, appCgroupName(podCgroup, app))
		ctl := v1Controllers[sub]
		if err := ctl.Apply(path, res, pid); err != nil {
			return fmt.Errorf("join the app's %s cgroup: %w", sub, err)
		}
		if err := ctl.Set(path, res); err != nil {
			return fmt.Errorf("set the app's %s limits: %w", sub, err)
		}
	}
	return nil
}

// v1Controller is the part of a cgroup v1 controller stage1 uses.
type v1Controller interface {
	Apply(path string, r *cgroups.Resources, pid int) error
	Set(path string, r *cgroups.Resources) error
}

// v1Controllers are the controllers per-app limits use.
var v1Controllers = map[string]v1Controller{"memory": &fs.MemoryGroup{}, "cpu": &fs.CpuGroup{}, "pids": &fs.PidsGroup{}}

// oomKilled tells whether the kernel's OOM killer killed a process of the
// app's memory cgroup (v1: memory.oom_control's oom_kill counter).
func oomKilled(podCgroup, app string) bool {
	mnt, err := cgroups.FindCgroupMountpoint("", "memory")
	if err != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join(mnt, appCgroupName(podCgroup, app), "memory.oom_control"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(v)
			return n > 0
		}
	}
	return false
}

// enterCgroups are the v1 cgroups, below the pod's, that the app's limits put
// it in (see applyLimits), for a process entering the app; nil on a pure
// cgroup2 host, where app-exec joins the app's unit's cgroup itself.
func enterCgroups(app string, spec *specs.Spec) map[string]string {
	if cgroups.IsCgroup2UnifiedMode() || spec.Linux == nil {
		return nil
	}
	_, subsystems := v1Resources(spec.Linux.Resources)
	if len(subsystems) == 0 {
		return nil
	}
	sub := map[string]string{}
	for _, s := range subsystems {
		sub[s] = appCgroupName("", app)[1:]
	}
	return sub
}
