package abi

// OCI mode: "run an OCI bundle as a pod of one app" (issue #14). This is a
// draft of interface version 2: the names below are fixed, no flavor
// implements them yet, and InterfaceVersion stays 1 until one does. A stage1
// opts in by declaring AnnotationOCIRun in its image manifest; a stage1 that
// does not declare it cannot run a bundle, and skiff-oci refuses it before
// creating anything (it never half-runs a container).
//
// In OCI mode the pod directory is the container's state directory under the
// runtime's --root (ROOT/ID/), pod.json holds one app whose rootfs is the
// bundle's rootfs (Rootfs.Layers is that one directory, used in place, no
// overlay, no image store), apps/NAME/config.json is the bundle's config.json
// as given (stage1 honours all of it: namespaces to create and to join by
// path, cgroupsPath, mounts, rlimits, sysctls, devices, masked and read-only
// paths, seccomp, capabilities, user, noNewPrivileges, oomScoreAdj, terminal),
// and there is no CNI and no logs/pod.log: the caller's stdio reaches the app.

// AnnotationOCIRun, in a stage1 image's manifest, is the path (in its rootfs)
// of the oci-create entrypoint; its presence declares that the stage1 can run
// an OCI bundle. Since v2 (draft).
const AnnotationOCIRun = "dev.skiff.stage1.oci-create"

// EntrypointOCICreate is the key of the oci-create entrypoint in Entrypoints.
// Argv: ENTRYPOINT [--console-socket=PATH] [--systemd-cgroup] [--debug]
// [--preserve-fds=N] ID, run with the pod directory as working directory. It
// sets the container up (namespaces, cgroup, mounts) with systemd as the
// container's init, writes PIDFile (the init's pid, in the container's
// namespaces and a child of the caller: stage1 must not double-fork it
// away) and OCICreatedFile, and returns; the init then waits for
// OCIStartFIFO to be opened before it starts the app's unit. The init exits
// with the app's status (SuccessAction=/FailureAction=exit-force). SIGTERM and
// SIGINT to the init mean a clean stop of the app (stage1 maps them to
// SIGRTMIN+3), SIGKILL kills the container. Since v2 (draft).
const EntrypointOCICreate = "oci-create"

// Files of OCI mode in the pod directory. Since v2 (draft).
const (
	OCIBundleFile  = "bundle"     // absolute path of the bundle, as given to create
	OCIStartFIFO   = "start.fifo" // opened by start: the init starts the app
	OCICreatedFile = "created"    // empty marker: create finished; the init waits for start
)

// AnnotationOCIStage1, in a bundle's config.json annotations, selects the
// stage1 by name (as --stage1-name does: "kvm" selects stage1-kvm). Since v2
// (draft).
const AnnotationOCIStage1 = "dev.skiff.oci.stage1"
