// Command inspect is the app that skiff's functional tests run inside pods: it reports what
// the process sees (environment, ids, capabilities, mounts, cgroups, ...) as stable
// `key=value` lines and performs small actions (exit, sleep, read, write, notify) on request.
//
// Usage:
//
//	inspect SUBCOMMAND [ARGS...] [[,] SUBCOMMAND [ARGS...]]...
//
// Subcommands run in order; a lone "," between them is optional, and "env,cwd,ids" (nullary
// subcommands joined by commas in one argument) is the same as "env cwd ids". Each
// subcommand takes a fixed number of arguments (see the table in commands).
//
// Output rules: one `key=value` per line. Keys are lowercase, except fields copied from
// /proc/self/status (CapEff, NoNewPrivs, ...) and environment variables, which keep their
// own names. A value holding a control character or a backslash is written Go-quoted
// ("a\nb"). `read`, `stdout`, `stderr` and `stdin` copy data raw.
//
// Exit status: 0 on success, N for `exit N`, 1 when an action fails (error=... on stderr),
// 2 on a usage error. The program uses the standard library only and is built static
// (CGO_ENABLED=0) so it runs in any rootfs.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// command is one subcommand: its argument names (fixed arity) and what it does.
type command struct {
	args []string
	help string
	run  func(args []string) error
}

// exitError ends the program with a given code after the output so far is written.
type exitError struct{ code int }

func (e exitError) Error() string { return "exit " + strconv.Itoa(e.code) }

// errUsage marks a usage error (exit status 2).
var errUsage = errors.New("usage")

var commands map[string]command

func init() {
	// A map literal referring to functions that use commands would be an initialization
	// cycle (usage prints the table), hence the assignment here.
	commands = map[string]command{
		"env":         {nil, "environment variables, sorted, one NAME=value per line", cmdEnv},
		"cwd":         {nil, "cwd=working directory", cmdCwd},
		"ids":         {nil, "uid, gid, euid, egid, groups (comma-separated, sorted)", cmdIDs},
		"pid":         {nil, "pid, ppid", cmdPid},
		"caps":        {nil, "CapInh CapPrm CapEff CapBnd CapAmb from /proc/self/status", cmdCaps},
		"hostname":    {nil, "hostname=", cmdHostname},
		"mounts":      {nil, "mount=MOUNTPOINT FSTYPE SOURCE MOUNT-OPTIONS SUPER-OPTIONS per mount", cmdMounts},
		"cgroups":     {nil, "cgroup=LINE per line of /proc/self/cgroup", cmdCgroups},
		"pid1":        {nil, "pid1=comm of PID 1", cmdPid1},
		"nnp-seccomp": {nil, "NoNewPrivs, Seccomp (and Seccomp_filters) from /proc/self/status", cmdNNPSeccomp},
		"tty":         {nil, "stdin_tty, stdout_tty, stderr_tty (true|false)", cmdTTY},
		"listen-fds":  {nil, "LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, listen_pid_match, fdN=target", cmdListenFDs},
		"stdin":       {nil, "copy stdin to stdout until EOF", cmdStdin},
		"exit":        {[]string{"N"}, "exit with status N (after earlier output)", cmdExit},
		"sleep":       {[]string{"DURATION"}, "sleep DURATION (Go duration, or seconds)", cmdSleep},
		"read":        {[]string{"FILE"}, "copy FILE to stdout", cmdRead},
		"write":       {[]string{"FILE", "TEXT"}, "write TEXT to FILE (created 0644, truncated); wrote=FILE", cmdWrite},
		"stdout":      {[]string{"TEXT"}, "print TEXT and a newline to stdout", cmdStdout},
		"stderr":      {[]string{"TEXT"}, "print TEXT and a newline to stderr", cmdStderr},
		"notify":      {[]string{"TEXT"}, `send TEXT ("\n" escapes become newlines) to $NOTIFY_SOCKET; notify=sent`, cmdNotify},
		"alloc":       {[]string{"MIB"}, "allocate and touch MIB MiB of memory; allocated=MIB", cmdAlloc},
		"stage1":      {[]string{"ROOT"}, "reached=PATH for each stage1 path found under ROOT, writable=PATH for each that opens for writing (nothing is written)", cmdStage1},
		"chroot-out":  {nil, "the classic chroot(2) breakout (chroot into a subdirectory, .. up, chroot .); chroot_out=done", cmdChrootOut},
		"serve-fd3":   {[]string{"N"}, "accept N connections on the inherited listening socket fd 3, answer each with served=I; served=I per connection", cmdServeFD3},
	}
}

// step is one parsed subcommand with its arguments.
type step struct {
	name string
	args []string
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	steps, err := parse(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "inspect: %v\n", err)
		usage(os.Stderr)
		return 2
	}
	for _, s := range steps {
		if err := commands[s.name].run(s.args); err != nil {
			var ee exitError
			if errors.As(err, &ee) {
				return ee.code
			}
			if errors.Is(err, errUsage) {
				fmt.Fprintf(os.Stderr, "inspect: %s: %v\n", s.name, err)
				return 2
			}
			fmt.Fprintf(os.Stderr, "error=%s\n", quote(s.name+": "+err.Error()))
			return 1
		}
	}
	return 0
}

// parse splits argv into steps using each subcommand's fixed arity.
func parse(argv []string) ([]step, error) {
	if len(argv) == 0 {
		return nil, errors.New("no subcommand given")
	}
	var steps []step
	for i := 0; i < len(argv); {
		name := argv[i]
		i++
		if name == "," {
			continue
		}
		if name == "help" || name == "-h" || name == "--help" {
			usage(os.Stdout)
			os.Exit(0)
		}
		if strings.Contains(name, ",") {
			parts := strings.Split(strings.Trim(name, ","), ",")
			for _, p := range parts {
				c, ok := commands[p]
				if !ok || len(c.args) != 0 {
					return nil, fmt.Errorf("%q: only subcommands without arguments can be joined with commas", name)
				}
				steps = append(steps, step{name: p})
			}
			continue
		}
		c, ok := commands[name]
		if !ok {
			return nil, fmt.Errorf("unknown subcommand %q", name)
		}
		if len(argv)-i < len(c.args) {
			return nil, fmt.Errorf("%s needs %d argument(s): %s %s", name, len(c.args), name, strings.Join(c.args, " "))
		}
		steps = append(steps, step{name: name, args: argv[i : i+len(c.args)]})
		i += len(c.args)
	}
	return steps, nil
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: inspect SUBCOMMAND [ARGS...] [[,] SUBCOMMAND [ARGS...]]...")
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-24s %s\n", strings.TrimSpace(n+" "+strings.Join(c.args, " ")), c.help)
	}
}

// quote returns v as is when it is safe on one line, Go-quoted otherwise.
func quote(v string) string {
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return strconv.Quote(v)
		}
	}
	return v
}

func kv(k, v string) { fmt.Printf("%s=%s\n", k, quote(v)) }

func cmdEnv([]string) error {
	env := os.Environ()
	sort.Strings(env)
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		kv(k, v)
	}
	return nil
}

func cmdCwd([]string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	kv("cwd", wd)
	return nil
}

func cmdIDs([]string) error {
	groups, err := os.Getgroups()
	if err != nil {
		return err
	}
	sort.Ints(groups)
	gs := make([]string, len(groups))
	for i, g := range groups {
		gs[i] = strconv.Itoa(g)
	}
	kv("uid", strconv.Itoa(os.Getuid()))
	kv("gid", strconv.Itoa(os.Getgid()))
	kv("euid", strconv.Itoa(os.Geteuid()))
	kv("egid", strconv.Itoa(os.Getegid()))
	kv("groups", strings.Join(gs, ","))
	return nil
}

func cmdPid([]string) error {
	kv("pid", strconv.Itoa(os.Getpid()))
	kv("ppid", strconv.Itoa(os.Getppid()))
	return nil
}

// statusFields prints the named fields of /proc/self/status, in the order given; a field
// the kernel does not report is skipped unless required.
func statusFields(required bool, names ...string) error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	for _, n := range names {
		v, ok := fields[n]
		if !ok {
			if required {
				return fmt.Errorf("/proc/self/status has no %s field", n)
			}
			continue
		}
		kv(n, v)
	}
	return nil
}

func cmdCaps([]string) error {
	return statusFields(true, "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
}

func cmdNNPSeccomp([]string) error {
	if err := statusFields(true, "NoNewPrivs", "Seccomp"); err != nil {
		return err
	}
	return statusFields(false, "Seccomp_filters")
}

func cmdHostname([]string) error {
	h, err := os.Hostname()
	if err != nil {
		return err
	}
	kv("hostname", h)
	return nil
}

// cmdMounts prints mountinfo(5) lines reduced to what tests check:
// mount point, filesystem type, source, per-mount options, superblock options.
func cmdMounts([]string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 3 {
			return fmt.Errorf("unexpected mountinfo line %q", line)
		}
		kv("mount", strings.Join([]string{f[4], g[0], g[1], f[5], g[2]}, " "))
	}
	return nil
}

func cmdCgroups([]string) error {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		kv("cgroup", line)
	}
	return nil
}

func cmdPid1([]string) error {
	b, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		return err
	}
	kv("pid1", strings.TrimSpace(string(b)))
	return nil
}

func isTerminal(fd uintptr) bool {
	var t syscall.Termios
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return e == 0
}

func cmdTTY([]string) error {
	kv("stdin_tty", strconv.FormatBool(isTerminal(0)))
	kv("stdout_tty", strconv.FormatBool(isTerminal(1)))
	kv("stderr_tty", strconv.FormatBool(isTerminal(2)))
	return nil
}

// cmdListenFDs reports the socket-activation environment (sd_listen_fds(3)) and what the
// passed descriptors are (fd3=socket:[1234], ...), without consuming them.
func cmdListenFDs([]string) error {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	kv("LISTEN_PID", pid)
	kv("LISTEN_FDS", fds)
	kv("LISTEN_FDNAMES", names)
	kv("listen_pid_match", strconv.FormatBool(pid == strconv.Itoa(os.Getpid())))
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil
	}
	for fd := 3; fd < 3+n; fd++ {
		target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			target = "closed"
		}
		kv("fd"+strconv.Itoa(fd), target)
	}
	return nil
}

func cmdStdin([]string) error {
	_, err := io.Copy(os.Stdout, os.Stdin)
	return err
}

func cmdExit(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 || n > 255 {
		return fmt.Errorf("%w: exit status %q is not a number in 0..255", errUsage, args[0])
	}
	return exitError{n}
}

func cmdSleep(args []string) error {
	d, err := time.ParseDuration(args[0])
	if err != nil {
		secs, err2 := strconv.ParseFloat(args[0], 64)
		if err2 != nil {
			return fmt.Errorf("%w: %q is neither a duration (1.5s, 200ms) nor seconds", errUsage, args[0])
		}
		d = time.Duration(secs * float64(time.Second))
	}
	time.Sleep(d)
	return nil
}

func cmdRead(args []string) error {
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(os.Stdout, f)
	return err
}

func cmdWrite(args []string) error {
	if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
		return err
	}
	kv("wrote", args[0])
	return nil
}

func cmdStdout(args []string) error {
	_, err := fmt.Fprintln(os.Stdout, args[0])
	return err
}

func cmdStderr(args []string) error {
	_, err := fmt.Fprintln(os.Stderr, args[0])
	return err
}

// cmdNotify sends one sd_notify(3) datagram; "@name" addresses an abstract socket.
func cmdNotify(args []string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return errors.New("NOTIFY_SOCKET is not set")
	}
	// The syscall package maps a leading "@" to the abstract namespace.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.ReplaceAll(args[0], `\n`, "\n"))); err != nil {
		return err
	}
	kv("notify", "sent")
	return nil
}

func cmdServeFD3(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return fmt.Errorf("%w: count %q is not a number", errUsage, args[0])
	}
	ln, err := net.FileListener(os.NewFile(3, "listen-fd-3"))
	if err != nil {
		return err
	}
	defer ln.Close()
	for i := 1; i <= n; i++ {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c, "served=%d\n", i)
		c.Close()
		if err != nil {
			return err
		}
		kv("served", strconv.Itoa(i))
	}
	return nil
}

// allocSink keeps alloc's memory reachable.
var allocSink [][]byte

func cmdAlloc(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return errUsage
	}
	kv("locked", strconv.Itoa(lockOwnFile()))
	for i := 0; i < n; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		allocSink = append(allocSink, b)
	}
	kv("allocated", strconv.Itoa(n))
	return nil
}

// lockOwnFile keeps the pages of this program's file in memory (mlock, within
// RLIMIT_MEMLOCK; best effort) and returns how many bytes it locked. At a
// cgroup's memory limit without swap, the kernel's reclaim would otherwise
// evict them and the process fault them back in, over and over, before the OOM
// killer ends it: in a kvm guest, whose app roots are 9p under TCG, that took
// up to 12 minutes. With them locked, alloc meets the limit at once.
func lockOwnFile() int {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0
	}
	locked := 0
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MLOCK, uintptr(start), uintptr(end-start), 0); e == 0 {
			locked += int(end - start)
		}
	}
	return locked
}

// stage1Paths are what a stage1 rootfs holds that an app must never reach:
// the stage1's binaries and the apps' directories with their config.json.
var stage1Paths = []string{"usr/lib/skiff/stage1", "usr/lib/skiff/app-exec", "usr/lib/skiff/app-exited", "skiff/apps"}

func cmdStage1(args []string) error {
	for _, p := range stage1Paths {
		full := strings.TrimSuffix(args[0], "/") + "/" + p
		if _, err := os.Lstat(full); err != nil {
			continue
		}
		kv("reached", full)
		targets := []string{full}
		if p == "skiff/apps" {
			targets = nil
			entries, _ := os.ReadDir(full)
			for _, e := range entries {
				targets = append(targets, full+"/"+e.Name()+"/config.json")
			}
		}
		for _, t := range targets {
			if f, err := os.OpenFile(t, os.O_WRONLY, 0); err == nil {
				f.Close()
				kv("writable", t)
			}
		}
	}
	return nil
}

func cmdChrootOut(args []string) error {
	dir, err := os.MkdirTemp("", "chroot-out")
	if err != nil {
		return err
	}
	if err := syscall.Chroot(dir); err != nil {
		return err
	}
	// The working directory is now outside the root: ".." walks up from it.
	for i := 0; i < 64; i++ {
		if err := syscall.Chdir(".."); err != nil {
			return err
		}
	}
	if err := syscall.Chroot("."); err != nil {
		return err
	}
	kv("chroot_out", "done")
	return nil
}
