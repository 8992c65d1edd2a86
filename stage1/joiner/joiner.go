// Package joiner makes the stage1 binaries' joiners (enter, oci-join,
// app-exec) not dumpable from their first instruction: a constructor, run by
// the C library before the Go runtime starts (as runc's nsexec), sets it, so
// there is no window between the exec (which made the process dumpable
// again) and main. glibc hands constructors argc and argv, static binaries
// included. The stage1 binaries link it (import it, and call Ensure
// in main, in case the C library gave the constructor no
// argv): in the kvm guest, app-exec starts each app and each entered command
// as the guest's root before it isolates them, beside the pod's apps.
package joiner

/*
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

static const char *skiff_base(const char *p) {
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

// skiff_joiner says whether argv calls one of the joiners: by its name, or
// as "stage1 NAME" or "stage1-kvm NAME".
static int skiff_joiner(int argc, char **argv) {
	if (argc < 1 || argv == NULL || argv[0] == NULL)
		return 0;
	const char *name = skiff_base(argv[0]);
	if (strcmp(name, "stage1") == 0 || strcmp(name, "stage1-kvm") == 0) {
		if (argc < 2 || argv[1] == NULL)
			return 0;
		name = argv[1];
	}
	return strcmp(name, "enter") == 0 || strcmp(name, "oci-join") == 0 || strcmp(name, "app-exec") == 0;
}

__attribute__((constructor)) static void skiff_non_dumpable(int argc, char **argv, char **envp) {
	(void)envp;
	if (skiff_joiner(argc, argv))
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// Is says whether args (os.Args) call a joiner, as the constructor decides
// it: by the program's name, or as "stage1 NAME" or "stage1-kvm NAME".
func Is(args []string) bool {
	if len(args) == 0 {
		return false
	}
	cargs := make([]*C.char, len(args)+1)
	for i, a := range args {
		cargs[i] = C.CString(a)
		defer C.free(unsafe.Pointer(cargs[i]))
	}
	return C.skiff_joiner(C.int(len(args)), &cargs[0]) != 0
}

// NonDumpable makes this process not dumpable (PR_SET_DUMPABLE 0), as runc's
// nsexec makes its init (CVE-2016-9962): a process of the pod with the same
// uid and no CAP_SYS_PTRACE can then neither ptrace it nor open its
// /proc/PID/{mem,environ,fd,root}, which reach the host's descriptors and
// the stage1's tree, while it joins the pod and until it execs (the exec
// sets dumpability anew from the program and the credentials: the app's
// process is as under runc). It is per process and a fork inherits it until
// its exec: oci-join, started by enter in the pod's namespaces, and
// app-exec, exec'd there, are not dumpable by their own constructor. main
// calls it again for a joiner (Ensure), in case the C library gave the constructor
// no argv. (app-exec in a pod with a user namespace is exec'd in it: the
// pod's root keeps CAP_SYS_PTRACE over it there.)
func NonDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make the process not dumpable: %w", err)
	}
	return nil
}

// Ensure makes this process not dumpable when os.Args call a joiner (Is),
// as each stage1 binary's main does first: on failure it says so on stderr
// and exits with 125, naming the command name.
func Ensure(name string) {
	if !Is(os.Args) {
		return
	}
	if err := NonDumpable(); err != nil {
		fmt.Fprintf(os.Stderr, "skiff: %s: %v\n", name, err)
		os.Exit(abi.ExitSkiffFailure)
	}
}
