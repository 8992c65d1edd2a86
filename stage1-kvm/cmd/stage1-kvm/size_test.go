package main

import (
	"runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/stage1/abi"
)

func TestVMSize(t *testing.T) {
	limited := func(mem int64, quota int64) *specs.Spec {
		period := uint64(100000)
		return &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: &mem},
			CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
		}}}
	}
	for _, c := range []struct {
		name  string
		specs []*specs.Spec
		mem   int64
		cpus  int
	}{
		{"no limits", []*specs.Spec{{}}, 256 << 20, runtime.NumCPU()},
		{"one limited app", []*specs.Spec{limited(256<<20, 100000)}, 384 << 20, 1},
		{"a limit rounds up to MiB; quotas add up", []*specs.Spec{limited(100<<20+1, 50000), limited(64<<20, 60000)},
			(128 + 101 + 64) << 20, min(2, runtime.NumCPU())},
		{"an app without a quota gets the host's CPUs", []*specs.Spec{limited(64<<20, 50000), {}},
			(128 + 64 + 128) << 20, runtime.NumCPU()},
	} {
		v := &vm{m: &abi.PodManifest{}, specs: map[string]*specs.Spec{}}
		for i, s := range c.specs {
			name := string(rune('a' + i))
			v.m.Apps = append(v.m.Apps, abi.App{Name: name})
			v.specs[name] = s
		}
		mem, cpus := v.size()
		if mem != c.mem || cpus != c.cpus {
			t.Errorf("%s: %d MiB, %d CPUs; want %d MiB, %d CPUs", c.name, mem>>20, cpus, c.mem>>20, c.cpus)
		}
	}
}
