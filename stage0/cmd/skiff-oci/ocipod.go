package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/ocipod"
	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

// ocipodBackend runs containers through internal/ocipod (the stage1
// contract's OCI mode): the bundle's annotation dev.skiff.oci.stage1 picks
// the stage1 flavor (default "default"), looked for beside the binary and
// in --stage1-dir.
type ocipodBackend struct{}

// mapErr gives ocipod's errors skiff-oci's sentinels (same wording).
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ocipod.ErrExist):
		return fmt.Errorf("%w: %v", errExists, err)
	case errors.Is(err, ocipod.ErrNotExist):
		return errNotExist
	}
	return err
}

func (ocipodBackend) Prepare(root, id, bundle string, o globalOpts) (container, error) {
	var spec *specs.Spec
	if b, err := os.ReadFile(filepath.Join(bundle, "config.json")); err == nil {
		spec = &specs.Spec{}
		if jsonStrict(b, spec) != nil {
			spec = nil
		}
	}
	name := ocipod.Stage1Name(spec)
	if o.flavor != "" && (spec == nil || spec.Annotations[abi.AnnotationOCIStage1] == "") {
		name = o.flavor // skiff-oci-FLAVOR
	}
	s1, err := ocipod.FindStage1(name, o.stage1Dir)
	if errors.Is(err, stage1img.ErrNotFound) {
		return nil, fmt.Errorf("stage1 %q (annotation %s): %w beside skiff-oci or in --stage1-dir %s; install it ('make install') or ask for another flavor",
			name, abi.AnnotationOCIStage1, stage1img.ErrNotFound, o.stage1Dir)
	}
	if err != nil {
		return nil, err
	}
	p, err := ocipod.Prepare(root, id, bundle, s1)
	if err != nil {
		return nil, mapErr(err)
	}
	return &pod{p: p, o: o}, nil
}

func (ocipodBackend) Open(root, id string) (container, error) {
	p, err := ocipod.Load(root, id)
	if err != nil {
		return nil, mapErr(err)
	}
	return &pod{p: p}, nil
}

type pod struct {
	p *ocipod.Pod
	o globalOpts
}

func (c *pod) Create(o createOpts) (int, error) {
	return c.p.Create(ocipod.CreateOpts{ConsoleSocket: o.consoleSocket, PidFile: o.pidFile,
		PreserveFDs: o.preserveFDs, SystemdCgroup: c.o.systemdCgroup, Debug: c.o.debug, Stdio: o.stdio})
}

func (c *pod) Start() error                   { return c.p.Start() }
func (c *pod) Signal(sig int, all bool) error { return c.p.Signal(unix.Signal(sig), all) }
func (c *pod) Delete(force bool) error        { return mapErr(c.p.Delete(force)) }
func (c *pod) ExitCode() (int, bool)          { return c.p.ExitCode() }
func (c *pod) Cgroup() (string, error)        { return c.p.Cgroup() }

func (c *pod) Exec(p *specs.Process, o execOpts) (*os.Process, error) {
	return c.p.Exec(p, ocipod.ExecOpts{ConsoleSocket: o.consoleSocket, PidFile: o.pidFile,
		PreserveFDs: o.preserveFDs, Stdio: o.stdio, Detach: o.detach, Debug: c.o.debug})
}

func (c *pod) State() (*specs.State, error) {
	st, err := c.p.State()
	if err != nil {
		return nil, mapErr(err)
	}
	return &st, nil
}
