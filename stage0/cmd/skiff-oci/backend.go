package main

import (
	"errors"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The verbs talk to containers through these two interfaces; the real
// implementation (pods run through the stage1 contract, package
// internal/ocipod) is in ocipod.go, and the unit tests use a fake.

// backend makes and finds containers under a state root.
type backend interface {
	// Prepare validates the bundle and creates the container's state
	// directory ROOT/ID (errExists when it is there); nothing runs yet.
	Prepare(root, id, bundle string, o globalOpts) (container, error)
	// Open finds the container ID under root (errNotExist when it is not
	// there).
	Open(root, id string) (container, error)
}

// container is one container's state directory and its processes.
type container interface {
	// Create starts the container's init, which waits for Start; it
	// returns the init's pid (a child of this process).
	Create(o createOpts) (int, error)
	// Start lets the init start the app.
	Start() error
	// Signal sends sig to the init (all: to every process of the container).
	Signal(sig int, all bool) error
	// Exec runs p in the container; the process is a child of this one.
	Exec(p *specs.Process, o execOpts) (*os.Process, error)
	// Delete removes everything of the container (force: kills it first).
	Delete(force bool) error
	// State is the runtime-spec state; Status is creating, created,
	// running or stopped (paused is skiff-oci's, from the freezer).
	State() (*specs.State, error)
	// ExitCode is the app's exit status once the container has stopped.
	ExitCode() (int, bool)
	// Cgroup is the container's cgroup as its stage1 recorded it (the
	// same path in each hierarchy).
	Cgroup() (string, error)
}

// globalOpts are the global flags a backend needs.
type globalOpts struct {
	systemdCgroup bool
	debug         bool
	stage1Dir     string // where stage1-NAME.oci.tar is looked for (besides beside the binary)
	flavor        string // the stage1 of bundles that name none ("": default)
}

type createOpts struct {
	consoleSocket string
	pidFile       string
	preserveFDs   int
	noPivot       bool
	noNewKeyring  bool
	stdio         [3]*os.File
}

type execOpts struct {
	consoleSocket string
	pidFile       string
	detach        bool
	preserveFDs   int
	stdio         [3]*os.File
}

var (
	errExists   = errors.New("container with id exists")
	errNotExist = errors.New("does not exist")
)

// statePaused is runc's status for a frozen container (not in the spec).
const statePaused specs.ContainerState = "paused"
