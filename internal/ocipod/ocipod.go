// Package ocipod runs an OCI bundle as a skiff pod of one app, through the
// stage1 contract's OCI mode (stage1/abi/oci.go, stage1/README.md "OCI
// mode"). It is the host side that skiff-oci (runc's command line) calls: one
// container is one pod directory ROOT/ID/ under the runtime's --root, and
// every verb works from what is on disk there (no daemon), so each is
// restartable after a crash of any skiff process.
//
// The life of a container:
//
//	p, err := ocipod.Prepare(root, id, bundle, stage1) // ROOT/ID/ made, pod files written; status "creating"
//	pid, err := p.Create(ocipod.CreateOpts{...})     // stage1's oci-create: init waits; status "created"
//	err = p.Start()                                  // the init starts the app; status "running"
//	err = p.Signal(unix.SIGTERM, false)              // clean stop of the app; status "stopped" once the init exits
//	err = p.Delete(false)                            // stage1's gc, then ROOT/ID/ goes
//
// Verbs on an existing container start with Load(root, id). Each method takes
// an flock on ROOT/ID/ for its duration, so two verbs on one container do not
// interleave; the lock is not held between calls.
//
// The stage1 rootfs: Prepare extracts the stage1 image (an OCI archive such as
// bin/stage1-default.oci.tar) once into a read-only cache under ROOT (an image
// store in ROOT/.stage1, keyed by the archive's digest) and the pod's
// pod.json names those layer directories; stage1 overlays them per pod as in
// v1 (upper and work directories inside the pod directory). A stage1 image
// that does not declare abi.AnnotationOCIRun is refused before anything is
// created.
package ocipod

import (
	"errors"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// Errors, matched with errors.Is. Their text carries runc's wording where
// callers match strings (podman, containerd, runtime-tools), so skiff-oci can
// print them as they are.
var (
	// ErrExist: a container with this id is already under ROOT.
	ErrExist = errors.New("container with id exists")
	// ErrNotExist: no container with this id under ROOT.
	ErrNotExist = errors.New("does not exist")
	// ErrNotRunning: the verb needs a live container init (kill, exec).
	ErrNotRunning = errors.New("container not running")
	// ErrNotCreated: start of a container that is not in the created state
	// (already started, or stopped).
	ErrNotCreated = errors.New("cannot start a container that is not in the created state")
	// ErrNotStopped: delete without force of a container whose init still runs.
	ErrNotStopped = errors.New("container is not stopped; stop it or pass --force")
	// ErrBadBundle: the bundle cannot be run (config.json missing, unreadable
	// or invalid, no process, rootfs missing). The wrapping error names the
	// bundle and the fix.
	ErrBadBundle = errors.New("invalid bundle")
	// ErrNoOCIMode: the stage1 image does not declare abi.AnnotationOCIRun.
	ErrNoOCIMode = errors.New("stage1 cannot run an OCI bundle")
	// ErrBadID: the id is empty, ".", "..", starts with "." or holds a
	// character other than letters, digits, '_', '+', '-' and '.'.
	ErrBadID = errors.New("invalid container id")
)

// Stage1 names the stage1 image a container runs with.
type Stage1 struct {
	// Name is the flavor's name ("default", "kvm"): what the bundle
	// annotation abi.AnnotationOCIStage1 selects.
	Name string
	// Path is the stage1 image, an OCI archive (stage1-NAME.oci.tar).
	Path string
}

// FindStage1 finds the stage1 image called name ("" is "default") as skiff
// does: the file stage1-NAME.oci.tar beside the running binary, then in
// systemDir (default /usr/lib/skiff).
func FindStage1(name, systemDir string) (Stage1, error) { return findStage1(name, systemDir) }

// Stage1Name is the stage1 a bundle's config asks for with the annotation
// abi.AnnotationOCIStage1, or "default".
func Stage1Name(spec *specs.Spec) string {
	if spec != nil && spec.Annotations[abi.AnnotationOCIStage1] != "" {
		return spec.Annotations[abi.AnnotationOCIStage1]
	}
	return "default"
}

// Pod is one container: the pod directory ROOT/ID/ and what it was made from.
type Pod struct {
	Root   string      // the runtime's --root
	ID     string      // the container id
	Dir    string      // ROOT/ID, the pod directory
	Bundle string      // the bundle's absolute path
	Spec   *specs.Spec // the bundle's config.json as given (apps/APP/config.json)
	// Manifest is pod.json: one app (AppName) whose rootfs is the bundle's
	// root.path, and the stage1.
	Manifest abi.PodManifest
}

// AppName is the name of the pod's one app.
const AppName = "app"

// Prepare validates the bundle (config.json readable and valid, ociVersion
// 1.x, a process, root.path an existing directory; an error wraps
// ErrBadBundle and names the bundle and the fix), imports the stage1 (an
// error wraps ErrNoOCIMode when it does not declare OCI mode), then creates
// ROOT/ID/ exclusively (ErrExist when it is there, ErrBadID for an id runc
// refuses too) and writes pod.json, apps/APP/config.json and bundle. On
// failure nothing is left under ROOT but the stage1 cache.
func Prepare(root, id, bundle string, stage1 Stage1) (*Pod, error) {
	return prepare(root, id, bundle, stage1)
}

// Load opens the container id under root (ErrNotExist when there is none).
func Load(root, id string) (*Pod, error) { return load(root, id) }

// List returns the ids of the containers under root, sorted; a missing root
// is an empty list.
func List(root string) ([]string, error) { return list(root) }

// CreateOpts are create's options (runc's flags of the same names).
type CreateOpts struct {
	// ConsoleSocket, when the process asks for a terminal, is the unix
	// socket to which the pty master is sent (SCM_RIGHTS, as runc does).
	ConsoleSocket string
	// PidFile, when set, receives the init's pid (written atomically).
	PidFile string
	// PreserveFDs passes the caller's fds 3 to 3+N-1 on to the app (and
	// LISTEN_FDS descriptors when LISTEN_PID is the caller's pid).
	PreserveFDs int
	// SystemdCgroup reads cgroupsPath as slice:prefix:name.
	SystemdCgroup bool
	// Debug makes stage1 say what it does on stderr.
	Debug bool
	// Stdio is the app's stdin, stdout and stderr (nil: the caller's own).
	// With a terminal they are ignored: the app gets the pty.
	Stdio [3]*os.File
}

// Create runs the stage1's oci-create entrypoint with the pod directory as
// working directory: it sets the container up with systemd as its init and
// returns the init's pid (a host pid; the process is in the container's
// namespaces) once the container is created. The init waits for Start. A
// failed create leaves the pod in the stopped state (Delete removes it).
func (p *Pod) Create(opts CreateOpts) (pid int, err error) { return p.create(opts) }

// Start tells a created container's init to start the app (it opens
// abi.OCIStartFIFO) and returns once the app runs (at most 30 s), or has
// already ended. ErrNotCreated when the container is not created.
func (p *Pod) Start() error { return p.start() }

// Signal sends sig to the container: SIGTERM and SIGINT become a clean stop
// of the app (SIGRTMIN+3 to the init, which then exits with the app's
// status), SIGKILL kills every process of the container (its cgroup), any
// other signal goes to the app's main process. all sends sig to every
// process of the container (SIGKILL alike). When the app is the init (a
// bundle without a pid namespace, hostpid.go) sig goes to it as given,
// SIGKILL and all to every process of the container's cgroup (the stage1's
// record of it). ErrNotRunning when the init has exited, but for all: then
// what is left in the container's cgroup gets sig, as with runc (only an
// app that was the init can leave anything).
func (p *Pod) Signal(sig unix.Signal, all bool) error { return p.signal(sig, all) }

// ExecOpts are exec's options (runc's flags of the same names).
type ExecOpts struct {
	ConsoleSocket string      // the pty master goes there when process.terminal is set
	PidFile       string      // receives the exec'd process's host pid
	PreserveFDs   int         // not supported yet: Exec refuses N > 0
	Stdio         [3]*os.File // nil: the caller's own
	// Detach returns once the process runs: the returned process is then
	// the exec'd process itself (not the caller's child: when the caller
	// exits, its subreaper reaps it, as with runc exec --detach).
	Detach bool
	Debug  bool
}

// Exec runs process inside the created or running container with its
// isolation (namespaces, cgroup, rootfs, seccomp filter; the process's
// capabilities cut down to the app's bounding set, its user, env, cwd,
// rlimits, no_new_privs), through the stage1's enter entrypoint (--process,
// v2). Without Detach the returned process is the enter entrypoint, a child
// of the caller: wait for it to get the process's exit code (128+N for
// signal N). ErrNotRunning when the container is stopped.
func (p *Pod) Exec(process *specs.Process, opts ExecOpts) (*os.Process, error) {
	return p.exec(process, opts)
}

// Delete undoes the container: with force it kills a running container
// first (ErrNotStopped without force), then runs the stage1's gc entrypoint
// (processes, cgroups, mounts) and removes ROOT/ID/. It works with no live
// process and after any crash; deleting twice is ErrNotExist.
func (p *Pod) Delete(force bool) error { return p.delete(force) }

// State is the runtime-spec state of the container: status creating (Prepare
// done, create not finished), created (the init waits for start), running,
// or stopped (the init has exited, or create failed); pid is the init's host
// pid (0 when stopped); bundle and annotations as given. skiff-oci reports
// "paused" itself (cgroup freezer).
func (p *Pod) State() (specs.State, error) { return p.state() }

// ExitCode is the init's exit status once stopped, as the app ended (128+N
// for signal N), and false while it runs or when it is unknown.
func (p *Pod) ExitCode() (int, bool) { return p.exitCode() }

// Cgroup is the container's cgroup as its stage1 recorded it at create
// (abi.OCICgroupFile): a path relative to each hierarchy's root, the same
// in each. Never a process's own /proc/PID/cgroup, which the container's
// root could change by moving the process.
func (p *Pod) Cgroup() (string, error) { return p.cgroup() }
