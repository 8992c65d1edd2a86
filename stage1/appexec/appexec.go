// Package appexec is the in-pod side of an app's life, shared by every stage1
// flavor that runs apps under the pod's systemd: Exec turns the app's service
// into the app (stdio from stage1, a mount namespace of its own with the app's
// rootfs as root (pivot_root), user, env, exec) and RecordExit, run by the service's ExecStopPost, writes how it ended.
// EndAll is the pod's last step in both flavors: its init's systemd-shutdown
// ends what is left of the apps.
//
// Paths are as seen inside the stage1 rootfs. The pod directory's apps/ and
// stage1's run/ directories are bind-mounted under /skiff.
package appexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/stdio"
)

// Paths inside the stage1 rootfs.
const (
	SkiffDir    = "/skiff"
	AppsDir     = SkiffDir + "/apps"     // the pod directory's apps/
	RunDir      = SkiffDir + "/run"      // stage1's socket directory
	StdioSocket = RunDir + "/stdio.sock" // see stage1/stdio
	Stage2Dir   = "/opt/stage2"
	// AppsMountNSFile, where it exists (the kvm guest), is the mount
	// namespace the apps' roots are mounted in, apart from the pod's
	// systemd's: enterRoot starts from it.
	AppsMountNSFile = RunDir + "/apps-mnt"
)

// AppRoot is where app's rootfs is mounted inside the stage1 rootfs.
func AppRoot(app string) string { return filepath.Join(Stage2Dir, app, "rootfs") }

// ExitError carries the exit code app-exec must end with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func fail(code int, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// Exec becomes app: it takes its stdio, socket-activated descriptors (fd 3 on)
// and their environment (LISTEN_FDS, LISTEN_FDNAMES, NOTIFY_SOCKET, ...) from
// stage1 (unless inherit is set, as for enter), enters its rootfs, drops to its user and execs args (the app's
// own command when args is empty). It returns only on failure.
func Exec(app string, args []string, inherit bool) error {
	return exec(app, args, inherit, nil, nil, 0)
}

// exec is Exec with addEnv added to the app's environment (a key already there
// is replaced); nested is execSpec's.
func exec(app string, args []string, inherit bool, addEnv []string, inRoot func() error, nested int) error {
	var spec specs.Spec
	if err := abi.ReadJSON(filepath.Join(AppsDir, app, abi.AppSpecFile), &spec); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: read its spec: %v", app, err)
	}
	return execSpec(app, &spec, args, inherit, addEnv, inRoot, nested)
}

// execProcess runs an OCI process (JSON, from the host's enter --process) in
// app with the app's isolation: its namespaces, cgroup, rootfs and seccomp
// filter, and at most its capabilities (each set is cut down to the app's
// bounding set) and no fewer restrictions (no_new_privs when either asks).
func execProcess(app string, process []byte, consoleFD, nested int) error {
	var spec specs.Spec
	if err := abi.ReadJSON(filepath.Join(AppsDir, app, abi.AppSpecFile), &spec); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: read its spec: %v", app, err)
	}
	var p specs.Process
	if err := json.Unmarshal(process, &p); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: --process: %v", app, err)
	}
	if spec.Process == nil || len(p.Args) == 0 {
		return fail(abi.ExitSkiffFailure, "app %s: the process to run has no args", app)
	}
	var bounding []string
	if spec.Process.Capabilities != nil {
		bounding = spec.Process.Capabilities.Bounding
	}
	if p.Capabilities != nil {
		c := *p.Capabilities
		c.Bounding, c.Effective, c.Permitted = within(c.Bounding, bounding), within(c.Effective, bounding), within(c.Permitted, bounding)
		c.Inheritable, c.Ambient = within(c.Inheritable, bounding), within(c.Ambient, bounding)
		p.Capabilities = &c
	} else {
		p.Capabilities = spec.Process.Capabilities
	}
	p.NoNewPrivileges = p.NoNewPrivileges || spec.Process.NoNewPrivileges
	// runc's exec keeps the container's AppArmor profile unless the process
	// names one: an exec never runs less confined than the container.
	if p.ApparmorProfile == "" {
		p.ApparmorProfile = spec.Process.ApparmorProfile
	}
	if p.OOMScoreAdj == nil {
		p.OOMScoreAdj = spec.Process.OOMScoreAdj
	}
	delete(spec.Annotations, abi.AnnotationAppUser) // the process names its user by id
	spec.Process = &p
	var inRoot func() error
	if consoleFD > 0 {
		inRoot = func() error { return ptyOnConsoleSocket(consoleFD) }
	}
	return execSpec(app, &spec, p.Args, true, nil, inRoot, nested)
}

// ptyOnConsoleSocket makes a pty on the app's devpts (this process is in the
// app's root), sends its master over the console socket at fd sock (runc's
// protocol) and makes the slave this process's controlling terminal and
// stdio.
func ptyOnConsoleSocket(sock int) error {
	defer unix.Close(sock)
	master, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("console: unlock pty: %w", err)
	}
	ptn, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("console: pty number: %w", err)
	}
	slave, err := unix.Open("/dev/pts/"+strconv.Itoa(ptn), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer unix.Close(slave)
	if err := unix.Sendmsg(sock, []byte("/dev/ptmx"), unix.UnixRights(master), nil, 0); err != nil {
		return fmt.Errorf("console: send the pty master: %w", err)
	}
	// A controlling terminal needs a session of its own: not for a process
	// group leader (setsid fails with EPERM); it then keeps the pty as its
	// stdio only. A process that already leads its session (libcontainer's
	// exec makes one) takes the pty as it is.
	_, errSid := unix.Setsid()
	if sid, err := unix.Getsid(0); errSid == nil || (err == nil && sid == unix.Getpid()) {
		if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil && errSid == nil {
			return fmt.Errorf("console: controlling terminal: %w", err)
		}
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("console: %w", err)
		}
	}
	return nil
}

// within keeps the capabilities of set that are in allowed.
func within(set, allowed []string) []string {
	ok := map[string]bool{}
	for _, c := range allowed {
		ok[c] = true
	}
	var out []string
	for _, c := range set {
		if ok[c] {
			out = append(out, c)
		}
	}
	return out
}

// execSpec is exec with the spec given; inRoot, when set, runs once this
// process is in the app's root. nested, when not 0, says that this process
// is app-exec started again in the app's own pid namespace (pidns.go) by
// the one that got the stdio (its descriptors 0 to nested-1, its
// environment the hand-over's) or, with inherit, joined the app's cgroup.
func execSpec(app string, specp *specs.Spec, args []string, inherit bool, addEnv []string, inRoot func() error, nested int) error {
	spec := *specp
	// Credentials, no_new_privs and seccomp filters belong to a thread: do all
	// of it, and the exec, on this one.
	runtime.LockOSThread()
	if spec.Process == nil {
		return fail(abi.ExitSkiffFailure, "app %s: spec has no process", app)
	}
	var extraEnv []string
	keepFDs := 3 // stdio; then the socket-activated descriptors
	switch {
	case initFDs > 0: // the container's init (hostpid.go): its own stdio
		keepFDs = initFDs
		if p := spec.Process; p.OOMScoreAdj != nil {
			if err := setOOMScoreAdj(*p.OOMScoreAdj); err != nil {
				return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
			}
		}
	case nested > 0 && !inherit:
		keepFDs, extraEnv = nested, os.Environ()
	case nested > 0: // the supervisor has joined the app's cgroup
	case !inherit:
		got, err := stdio.Receive(StdioSocket, app)
		if err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
		}
		if err := stdio.Place(got.FDs); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
		}
		extraEnv = got.Env
		keepFDs = len(got.FDs)
		// Run has set it from the host already; in OCI mode nothing on the
		// host does (rewriting the same value needs no privilege).
		if p := spec.Process; p.OOMScoreAdj != nil {
			if err := setOOMScoreAdj(*p.OOMScoreAdj); err != nil {
				return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
			}
		}
	default:
		// enter: the app's cgroup (cgroup2; the host has put this process in
		// its v1 cgroups) and OOM score, before anything else.
		if err := joinAppCgroup(app); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
		}
		if p := spec.Process; p.OOMScoreAdj != nil {
			if err := setOOMScoreAdj(*p.OOMScoreAdj); err != nil {
				return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
			}
		}
	}
	if nested == 0 && nestedPIDNS() {
		return superviseNested(app, inherit, keepFDs, extraEnv)
	}
	p := spec.Process
	// The AppArmor attribute is opened in the pod's /proc, before the app's
	// tree (whose /proc the app may have replaced) is entered.
	aa, err := openAppArmorExec(p.ApparmorProfile)
	if err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	if aa != nil {
		defer aa.Close()
	}
	oci := ociProcess(app)
	if len(args) == 0 {
		args = p.Args
	}
	if len(args) == 0 {
		return fail(abi.ExitSkiffFailure, "app %s: no command: the image has no entrypoint or cmd; pass one after '--'", app)
	}
	// From here on nothing of the stage1's tree is reachable (see root.go):
	// enter joins the app's own mount namespace (the mounts it made itself
	// included) when there is one, else, like the app, gets a fresh root.
	joined := false
	if inherit {
		// What reads /proc happens first, in the pod's namespace: the
		// app's tree (its own /proc perhaps) is the app's to forge.
		if _, err := capabilities.New(&configs.Capabilities{}); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: capabilities: %v", app, err)
		}
		if err := closeExtraFDs(keepFDs); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
		}
		join := func() (bool, error) { return joinAppMountNS(app) }
		if nested > 0 {
			join = joinNestedMountNS
		}
		if joined, err = join(); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
		}
	}
	if !joined {
		var procfs func() error // the app's own pid namespace's (pidns.go)
		if nested > 0 {
			procfs = func() error { return mountNestedProc(&spec) }
		}
		if err := enterRoot(AppRoot(app), procfs); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: enter its rootfs: %v", app, err)
		}
	}
	devLinks()
	if !joined {
		if err := devConsole(); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: /dev/console: %v", app, err)
		}
	}
	if inRoot != nil {
		if err := inRoot(); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
		}
	}
	for _, kv := range addEnv {
		k, _, _ := strings.Cut(kv, "=")
		extraEnv = append(withoutEnv(extraEnv, k), kv)
	}
	env := append([]string{}, p.Env...)
	for _, kv := range extraEnv {
		k, _, _ := strings.Cut(kv, "=")
		env = append(withoutEnv(env, k), kv)
	}
	u, err := resolveUser(p.User, spec.Annotations[abi.AnnotationAppUser])
	if err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	if !hasEnv(env, "HOME") && u.Home != "" {
		env = append(env, "HOME="+u.Home)
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// runc's order: the working directory (resolved in the app's root), then
	// no descriptor but the app's own, then the user and capabilities.
	if err := chdirInRoot(cwd); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: working directory %s: %v (it must be a directory inside the image)", app, cwd, err)
	}
	if err := closeExtraFDs(keepFDs); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	if err := setRlimits(p.Rlimits, false); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	if !inherit {
		if err := ownStdioPipes(u.Uid); err != nil {
			return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
		}
	}
	if err := applyAppArmor(aa, p.ApparmorProfile); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	if err := isolate(&spec, u, oci); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	path, err := lookPath(args[0], env)
	if err != nil {
		return err
	}
	if hasEnv(env, "LISTEN_FDS") {
		// The socket-activation protocol names the process the fds are for:
		// this one, which exec turns into the app with the same pid.
		env = append(withoutEnv(env, "LISTEN_PID"), "LISTEN_PID="+strconv.Itoa(os.Getpid()))
	}
	if err := setRlimits(p.Rlimits, true); err != nil {
		return fail(abi.ExitSkiffFailure, "app %s: %v", app, err)
	}
	err = syscall.Exec(path, args, env)
	code := abi.ExitCannotExec
	if errors.Is(err, syscall.ENOENT) {
		code = abi.ExitNotFound // e.g. a missing interpreter or loader
	}
	return fail(code, "app %s: cannot execute %s: %v", app, args[0], err)
}

// devLinks adds the links of a Linux /dev that the app's minimal /dev lacks
// (runc makes the same ones); one that is there is left alone.
func devLinks() {
	for name, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2", "/dev/ptmx": "pts/ptmx"} {
		_ = os.Symlink(target, name)
	}
}

// ownStdioPipes gives the pipes among the app's stdio (its output, as stage1
// hands it over) to the app's user, as runc does for a container's first
// process: only a pipe's owner may reopen it as /dev/stdout or /dev/stderr
// (/proc/self/fd/N), which images link their logs to. Only anonymous pipes:
// terminals, files and named pipes stay as they are (they may be the user's
// own); a pipe whose owner or uid this user namespace does not map stays too.
func ownStdioPipes(uid int) error {
	for fd := 0; fd <= 2; fd++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stdio: %w", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFIFO || int(st.Uid) == uid {
			continue
		}
		var fs unix.Statfs_t
		if err := unix.Fstatfs(fd, &fs); err != nil || fs.Type != unix.PIPEFS_MAGIC {
			continue // a named pipe: a file of someone's, not made for the app
		}
		err := unix.Fchown(fd, uid, -1)
		if err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("give the app's stdio to its user: %w", err)
		}
	}
	return nil
}

// devConsole gives an app whose stdio is a terminal (its first standard
// descriptor that is one) that terminal as /dev/console, as runc, podman and
// rkt do; an app without one has none. A terminal in the app's own devpts
// (skiff-oci's pty) is bind-mounted there, as runc does; the user's own
// terminal (skiff run --interactive), whose mount the pod cannot reach, is a
// link to /proc/self/fd/N, as /dev/stdin is. It runs in the app's mount
// namespace and root, before the app does; the file is created anew in the
// app's tmpfs /dev (no link followed), and one already there is left alone.
func devConsole() error {
	fd := -1
	for i := 0; i <= 2; i++ {
		if _, err := unix.IoctlGetTermios(i, unix.TCGETS); err == nil {
			fd = i
			break
		}
	}
	if fd < 0 {
		return nil
	}
	self := "/proc/self/fd/" + strconv.Itoa(fd)
	f, err := unix.Open("/dev/console", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return err
	}
	unix.Close(f)
	err = unix.Mount(self, "/dev/console", "", unix.MS_BIND, "")
	if err == nil {
		return nil
	}
	_ = unix.Unlink("/dev/console")
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("bind the app's terminal: %w", err)
	}
	return unix.Symlink(self, "/dev/console")
}

// rlimits maps the runtime spec's names to the kernel's resources.
var rlimits = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// KnownRlimit reports whether name (runtime-spec process.rlimits type) is
// one this kernel interface has, so that oci-create refuses a bundle with
// another at create, as the spec asks.
func KnownRlimit(name string) bool { _, ok := rlimits[name]; return ok }

// setRlimits applies the process's rlimits (runtime-spec process.rlimits):
// with late unset all but RLIMIT_AS (before the switch to the app's user,
// which may not raise a hard limit), with late set RLIMIT_AS, right before
// the exec: this process's address space (a Go runtime's, with threads)
// can exceed an app's small limit, and the seccomp filter's construction
// fails with ENOMEM under it. Lowering a limit needs no privilege.
func setRlimits(rs []specs.POSIXRlimit, late bool) error {
	for _, r := range rs {
		res, ok := rlimits[r.Type]
		if !ok {
			return fmt.Errorf("rlimit %s: unknown; use one of the RLIMIT_* names of getrlimit(2)", r.Type)
		}
		if (res == unix.RLIMIT_AS) != late {
			continue
		}
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return fmt.Errorf("rlimit %s=%d:%d: %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	return nil
}

func withoutEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// resolveUser resolves the app's user inside its rootfs (its root by now),
// reading /etc/passwd and /etc/group with no way out of it.
// A name (from the annotation) wins over the numeric ids.
func resolveUser(u specs.User, named string) (*user.ExecUser, error) {
	spec := named
	if spec == "" {
		spec = fmt.Sprintf("%d:%d", u.UID, u.GID)
	}
	defaults := &user.ExecUser{Uid: int(u.UID), Gid: int(u.GID), Home: "/"}
	var passwd, group io.Reader
	if f, ok := readInRoot("/etc/passwd"); ok {
		defer f.Close()
		passwd = f
	}
	if f, ok := readInRoot("/etc/group"); ok {
		defer f.Close()
		group = f
	}
	eu, err := user.GetExecUser(spec, defaults, passwd, group)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w (name it as a number, or add it to the image's /etc/passwd)", spec, err)
	}
	for _, g := range u.AdditionalGids {
		eu.Sgids = append(eu.Sgids, int(g))
	}
	return eu, nil
}

// lookPath finds the command in the app's PATH, telling "not found" (127) from
// "found but not executable" (126).
func lookPath(cmd string, env []string) (string, error) {
	if strings.Contains(cmd, "/") {
		return checkExec(cmd)
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	var firstErr error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p, err := checkExec(filepath.Join(dir, cmd))
		if err == nil {
			return p, nil
		}
		var ee *ExitError
		if errors.As(err, &ee) && ee.Code == abi.ExitCannotExec && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fail(abi.ExitNotFound, "command %q not found in the image (PATH=%s)", cmd, path)
}

func checkExec(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", fail(abi.ExitNotFound, "command %s not found in the image", p)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fail(abi.ExitCannotExec, "cannot execute %s: permission denied", p)
	}
	return p, nil
}

// RecordExit writes apps/APP/exit.json from the variables systemd gives an
// ExecStopPost command (EXIT_CODE, EXIT_STATUS, SERVICE_RESULT) and returns
// the record.
func RecordExit(app string, getenv func(string) string, now func() abi.AppExit) (abi.AppExit, error) {
	rec := now()
	rec.App = app
	status := getenv("EXIT_STATUS")
	switch getenv("EXIT_CODE") {
	case "exited":
		n, err := strconv.Atoi(status)
		if err != nil {
			return rec, fmt.Errorf("app %s: unparsable EXIT_STATUS %q", app, status)
		}
		rec.Code = n
	case "killed", "dumped":
		rec.Signal = "SIG" + status
		if n := unix.SignalNum(rec.Signal); n != 0 {
			rec.Code = 128 + int(n)
		} else {
			rec.Code = abi.ExitSkiffFailure
		}
	default: // never started
		rec.Code = abi.ExitSkiffFailure
	}
	// systemd tells when the kernel's OOM killer ended the service (where it
	// manages the memory controller: cgroup v2, as in the kvm guest).
	rec.OOMKilled = getenv("SERVICE_RESULT") == "oom-kill"
	return rec, abi.WriteJSON(filepath.Join(AppsDir, app, abi.AppExitFile), rec)
}

// AllExited reports whether every app of the pod has an exit record, the
// pod's exit code so far (see PodCode) and how many apps the pod has.
func AllExited() (done bool, code, apps int, err error) {
	entries, err := os.ReadDir(AppsDir)
	if err != nil {
		return false, 0, 0, err
	}
	var exits []abi.AppExit
	for _, e := range entries {
		var x abi.AppExit
		if err := abi.ReadJSON(filepath.Join(AppsDir, e.Name(), abi.AppExitFile), &x); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return false, 0, len(entries), nil
			}
			return false, 0, len(entries), err
		}
		exits = append(exits, x)
	}
	return true, abi.PodCode(exits), len(entries), nil
}
