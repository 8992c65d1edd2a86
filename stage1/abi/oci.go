package abi

// OCI mode: "run an OCI bundle as a pod of one app" (issue #14), interface
// version 2; both flavors implement it (the kvm flavor's init is a host
// supervisor of its VM: stage1/README.md "OCI mode").
// A stage1 opts in by declaring AnnotationOCIRun in its image manifest; a
// stage1 that does not declare it cannot run a bundle, and skiff-oci
// (internal/ocipod) refuses it before creating anything (it never half-runs
// a container).
//
// In OCI mode the pod directory is the container's state directory under the
// runtime's --root (ROOT/ID/), pod.json holds one app whose rootfs is the
// bundle's rootfs (Rootfs.Layers is that one directory, used in place, no
// overlay, no image store), apps/NAME/config.json is the bundle's config.json
// as given, and there is no CNI and no logs/pod.log: the caller's stdio
// reaches the app. stage1 honours namespaces to create and to join by path,
// cgroupsPath, resources, mounts, rlimits, sysctls, masked and read-only
// paths, seccomp, capabilities, user and groups, noNewPrivileges,
// oomScoreAdj and terminal; it refuses a bundle without a new mount
// namespace (systemd is the init); linux.devices are made in the app's
// minimal /dev. A bundle without a pid namespace (the host's: Kubernetes'
// hostPID, podman's --pid=host) runs with the app as the container's init
// instead of systemd, in the host's pid namespace, as under runc (the
// default flavor, since v2's app-as-init addition; see
// EntrypointOCICreate; the kvm flavor refuses it). Hooks are the
// front end's (they run on the host, from the bundle, never from the pod
// directory).

// AnnotationOCIRun, in a stage1 image's manifest, is the path (in its rootfs)
// of the oci-create entrypoint; its presence declares that the stage1 can run
// an OCI bundle. Since v2.
const AnnotationOCIRun = "dev.skiff.stage1.oci-create"

// EntrypointOCICreate is the key of the oci-create entrypoint in Entrypoints.
// Argv: ENTRYPOINT [--console-socket=PATH] [--systemd-cgroup] [--debug]
// [--preserve-fds=N] ID, run with the pod directory as working directory and
// the app's stdio (and fds 3 to 3+N-1 for it) as its own. It sets the
// container up (namespaces, cgroup, mounts) with systemd to be the
// container's init, writes PIDFile (the init's host pid; the init is in the
// container's namespaces and oci-create's child, never double-forked away,
// so when oci-create exits it goes to the caller's subreaper, as runc's
// init does), makes OCIStartFIFO and writes OCICreatedFile, and returns. The
// init waits until OCIStartFIFO is opened for reading, then execs systemd,
// which starts the app's unit. systemd exits with the app's status (128+N
// for signal N). A front end stops the app with SIGTERM/SIGINT to the app's
// main process (never to systemd, which re-executes itself on SIGTERM), or
// SIGRTMIN+3 (halt) to the init while the app is not running; SIGKILL to the
// init ends the container's pid namespace. Since v2.
//
// App-as-init (v2): for a bundle whose linux.namespaces has no pid entry
// (or one whose path is the host's pid namespace), the init, once released, execs the app itself with the app's isolation
// (its root, user, capabilities, seccomp, as its unit would run it) and its
// own stdio and preserved descriptors, instead of systemd: PIDFile is then
// the app's host pid, and its status the container's. A front end sends
// signals to it as given (no SIGTERM mapping), SIGKILL and --all to every
// process of the container's cgroup; gc kills what is left there. A stage1
// that cannot (the kvm flavor, a v2 stage1 from before it) refuses such a
// bundle at create in one line.
const EntrypointOCICreate = "oci-create"

// Files of OCI mode in the pod directory. Since v2.
const (
	OCIBundleFile  = "bundle"     // absolute path of the bundle, as given to create
	OCIStartFIFO   = "start.fifo" // opened by start: the init starts the app
	OCICreatedFile = "created"    // empty marker: create finished; the init waits for start
	// OCIErrorFile holds why oci-create failed: one line, at most
	// OCIErrorMax bytes, written by the stage1 instead of printing it (its
	// stderr is the container's); the front end reads it as untrusted text
	// (no link followed, bounded, control characters dropped) and puts it
	// in its own one-line error. Since v2.
	OCIErrorFile = "oci-error"
	// OCIAppInitFile, an empty marker written by oci-create before
	// OCICreatedFile, says that the app is the container's init
	// (app-as-init, see EntrypointOCICreate). Since v2.
	OCIAppInitFile = "app-init"
)

// OCICgroupFile holds the container's cgroup: its path (absolute, clean,
// the same in every hierarchy; cgroupsPath as given, or with
// --systemd-cgroup the scope's slice path), written atomically by
// oci-create before it makes the cgroup, out of the app's reach. gc kills
// what is left there; the front end sends kill --all (and an app-as-init
// container's SIGKILL) to every process in it and below, in each hierarchy
// (never to a cgroup a process of the container names). The front end reads
// it with no link followed, bounded. Since v2.
const OCICgroupFile = Stage1Dir + "/oci-cgroup"

// OCIProcessMarker, an empty file apps/NAME/oci-process written by the front
// end, says that the app's config.json is an OCI bundle's as given: app-exec
// then honours process.capabilities and process.noNewPrivileges exactly as
// runc does, for a non-root user too (skiff's own mode gives a non-root app
// no capabilities and always no_new_privs). process.apparmorProfile is
// applied in both modes (app-exec writes "exec PROFILE" to the thread's
// attr/apparmor/exec right before the exec, as runc does); a host without
// AppArmor fails it, as runc does. Since v2.
const OCIProcessMarker = "oci-process"

// OCIErrorMax bounds OCIErrorFile.
const OCIErrorMax = 4096

// AnnotationOCIStage1, in a bundle's config.json annotations, selects the
// stage1 by name (as --stage1-name does: "kvm" selects stage1-kvm). Since
// v2.
const AnnotationOCIStage1 = "dev.skiff.oci.stage1"

// The enter entrypoint's flags added for OCI exec (v2): --process=FILE (an
// OCI process, JSON, read by enter on the host; run instead of CMD, with the
// app's isolation and at most its capabilities), --detach (return once the
// process runs), --pid-file=PATH (its host pid), --console-socket=PATH (with
// process.terminal: app-exec makes a pty on the app's devpts and sends the
// master there). Since v2.
const (
	EnterFlagProcess       = "process"
	EnterFlagDetach        = "detach"
	EnterFlagPidFile       = "pid-file"
	EnterFlagConsoleSocket = "console-socket"
)

// EnvOCIListenFDs, in oci-create's environment, says how many of the
// descriptors passed with --preserve-fds (the first ones) are
// socket-activated: the app gets LISTEN_FDS for them (and LISTEN_PID, its
// own pid), as runc passes its caller's LISTEN_FDS on. Since v2.
const EnvOCIListenFDs = "SKIFF_OCI_LISTEN_FDS"
