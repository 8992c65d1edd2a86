package main

import (
	"fmt"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
)

// podCgroup is the pod's cgroup on the host, /skiff/UUID in every hierarchy
// (as the default flavor's): QEMU runs in it, so the VM's host resources are
// accounted to the pod and show under its name.
type podCgroup struct{ m cgroups.Manager }

func cgroupConfig(path string) *cgroups.Cgroup {
	return &cgroups.Cgroup{Path: path, Resources: &cgroups.Resources{}}
}

// newPodCgroupAt makes the pod's cgroup (/skiff/UUID; in OCI mode the
// container's) and moves pid into it.
func newPodCgroupAt(path string, pid int) (*podCgroup, error) {
	m, err := manager.New(cgroupConfig(path))
	if err != nil {
		return nil, fmt.Errorf("pod cgroup: %w", err)
	}
	if err := m.Apply(pid); err != nil {
		_ = m.Destroy()
		return nil, fmt.Errorf("pod cgroup: %w", err)
	}
	return &podCgroup{m: m}, nil
}

// add moves pid into the pod's cgroup too (a VM booted again).
func (c *podCgroup) add(pid int) error {
	if err := c.m.Apply(pid); err != nil {
		return fmt.Errorf("pod cgroup: %w", err)
	}
	return nil
}

// destroy removes the pod's cgroup (QEMU must be gone); nil is fine.
func (c *podCgroup) destroy() error {
	if c == nil {
		return nil
	}
	return c.m.Destroy()
}

// destroyPodCgroup removes the cgroup at path: gc's way after a crash.
func destroyPodCgroup(path string) error {
	m, err := manager.New(cgroupConfig(path))
	if err != nil {
		return err
	}
	return m.Destroy()
}
