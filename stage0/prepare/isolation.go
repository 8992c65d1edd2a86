package prepare

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultCaps is rkt's default capability set for an app.
var DefaultCaps = []string{"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
	"CAP_KILL", "CAP_MKNOD", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID",
	"CAP_SETPCAP", "CAP_SETFCAP", "CAP_SYS_CHROOT"}

// knownCaps maps "CAP_X" to its number.
func knownCaps() map[string]capability.Cap {
	m := map[string]capability.Cap{}
	for _, c := range capability.ListKnown() {
		m["CAP_"+strings.ToUpper(c.String())] = c
	}
	return m
}

// hostBoundingSet reads this process's capability bounding set: a capability
// the host withholds cannot be given to an app.
func hostBoundingSet() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapBnd in /proc/self/status")
}

// Capabilities is the app's capability set: rkt's default, exactly the
// --caps-retain list, or the default without the --caps-remove list. stage1
// empties the effective, permitted and inheritable sets of non-root apps.
func Capabilities(retain, remove []string) (*specs.LinuxCapabilities, error) {
	if len(retain) > 0 && len(remove) > 0 {
		return nil, fmt.Errorf("--caps-retain and --caps-remove exclude each other; use one")
	}
	known := knownCaps()
	normalize := func(flag string, names []string) ([]string, error) {
		var out []string
		for _, n := range names {
			c := strings.ToUpper(strings.TrimSpace(n))
			if !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			if _, ok := known[c]; !ok {
				return nil, fmt.Errorf("%s: unknown capability %q (names like CAP_NET_ADMIN; see capabilities(7))", flag, n)
			}
			out = append(out, c)
		}
		return out, nil
	}
	set := append([]string{}, DefaultCaps...)
	if len(retain) > 0 {
		var err error
		if set, err = normalize("--caps-retain", retain); err != nil {
			return nil, err
		}
	}
	drop, err := normalize("--caps-remove", remove)
	if err != nil {
		return nil, err
	}
	bounding, err := hostBoundingSet()
	if err != nil {
		return nil, err
	}
	var final []string
	seen := map[string]bool{}
	for _, c := range set {
		if seen[c] || contains(drop, c) {
			continue
		}
		seen[c] = true
		if bounding&(1<<uint(known[c])) == 0 {
			return nil, fmt.Errorf("capability %s is not in this host's bounding set (the machine withholds it); leave it out of --caps-retain", c)
		}
		final = append(final, c)
	}
	sort.Strings(final)
	return &specs.LinuxCapabilities{Bounding: final, Effective: final, Permitted: final}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// defaultBlocked are the syscalls the default seccomp profile refuses with
// EPERM, as docker's default profile does for a container without
// CAP_SYS_ADMIN: kernel modules and kexec, mounts and namespaces, reboot,
// clocks, swap, keyrings, tracing other processes, BPF and perf.
var defaultBlocked = []string{"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
	"delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms",
	"get_mempolicy", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
	"lookup_dcookie", "mbind", "mount", "mount_setattr", "move_mount", "move_pages", "name_to_handle_at",
	"nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root", "process_vm_readv",
	"process_vm_writev", "ptrace", "query_module", "quotactl", "reboot", "request_key", "set_mempolicy",
	"setns", "settimeofday", "stime", "swapoff", "swapon", "sysfs", "_sysctl", "umount", "umount2",
	"unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old"}

// seccompSets are the named syscall sets --seccomp accepts.
var seccompSets = map[string][]string{
	"@default":                  defaultBlocked,
	"@rkt/default-blacklist":    defaultBlocked,
	"@docker/default-blacklist": defaultBlocked,
}

var seccompArches = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}

// Seccomp is the app's filter: the default profile, or what
// --seccomp=mode=remove|retain[,errno=ENAME],SYSCALL|@SET,... asks for (rkt's
// syntax). remove: everything but the listed syscalls is allowed; retain:
// only the listed ones are. Refused syscalls fail with errno (EPERM by default).
// Syscall names are checked by stage1, which has the kernel's table.
func Seccomp(flag string) (*specs.LinuxSeccomp, error) {
	mode, errno, names := "remove", "EPERM", []string(nil)
	if flag != "" {
		for _, item := range strings.Split(flag, ",") {
			item = strings.TrimSpace(item)
			switch {
			case strings.HasPrefix(item, "mode="):
				mode = strings.TrimPrefix(item, "mode=")
			case strings.HasPrefix(item, "errno="):
				errno = strings.ToUpper(strings.TrimPrefix(item, "errno="))
			case strings.HasPrefix(item, "@"):
				set, ok := seccompSets[item]
				if !ok {
					return nil, fmt.Errorf("--seccomp: unknown syscall set %q (known: @default)", item)
				}
				names = append(names, set...)
			case item != "":
				names = append(names, item)
			}
		}
	} else {
		names = defaultBlocked
	}
	ret, err := errnoValue(errno)
	if err != nil {
		return nil, fmt.Errorf("--seccomp: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("--seccomp=%s: name at least one syscall or set (e.g. @default)", flag)
	}
	s := &specs.LinuxSeccomp{Architectures: seccompArches}
	switch mode {
	case "remove":
		s.DefaultAction = specs.ActAllow
		s.Syscalls = []specs.LinuxSyscall{{Names: names, Action: specs.ActErrno, ErrnoRet: &ret}}
	case "retain":
		// execve stays allowed: the filter is loaded before the app is exec'd.
		s.DefaultAction, s.DefaultErrnoRet = specs.ActErrno, &ret
		s.Syscalls = []specs.LinuxSyscall{{Names: append(names, "execve"), Action: specs.ActAllow}}
	default:
		return nil, fmt.Errorf("--seccomp: mode=%s: want mode=remove or mode=retain", mode)
	}
	return s, nil
}

func errnoValue(name string) (uint, error) {
	for i := 1; i < 256; i++ {
		if unix.ErrnoName(unix.Errno(i)) == name {
			return uint(i), nil
		}
	}
	return 0, fmt.Errorf("errno=%s: unknown error name (e.g. EPERM, ENOSYS)", name)
}

// Resources are an app's limits as the user gives them.
type Resources struct {
	Memory      string // bytes with an optional K, M, G suffix
	CPU         string // millicores ("500m") or cores ("1.5")
	CPUShares   uint64
	PidsLimit   int64
	OOMScoreAdj *int
}

// LinuxResources turns the limits into the runtime spec's form.
func (r Resources) LinuxResources() (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if r.Memory != "" {
		n, err := parseSize(r.Memory)
		if err != nil || n < 4096 {
			return nil, fmt.Errorf("--memory=%s: want a size such as 64M or 1G (at least 4K)", r.Memory)
		}
		out.Memory = &specs.LinuxMemory{Limit: &n}
	}
	if r.CPU != "" {
		milli, err := parseMillicores(r.CPU)
		if err != nil || milli <= 0 {
			return nil, fmt.Errorf("--cpu=%s: want millicores such as 500m or cores such as 1.5", r.CPU)
		}
		period := uint64(100000)
		quota := milli * int64(period) / 1000
		out.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if r.CPUShares > 0 {
		if out.CPU == nil {
			out.CPU = &specs.LinuxCPU{}
		}
		s := r.CPUShares
		out.CPU.Shares = &s
	}
	if r.PidsLimit != 0 {
		if r.PidsLimit < 0 {
			return nil, fmt.Errorf("--pids-limit=%d: want a positive number", r.PidsLimit)
		}
		limit := r.PidsLimit
		out.Pids = &specs.LinuxPids{Limit: &limit}
	}
	if r.OOMScoreAdj != nil && (*r.OOMScoreAdj < -1000 || *r.OOMScoreAdj > 1000) {
		return nil, fmt.Errorf("--oom-score-adj=%d: want -1000 to 1000", *r.OOMScoreAdj)
	}
	return out, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	u := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i"))
	for suf, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40} {
		if strings.HasSuffix(u, suf) {
			u, mult = strings.TrimSuffix(u, suf), m
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func parseMillicores(s string) (int64, error) {
	if m, ok := strings.CutSuffix(s, "m"); ok {
		return strconv.ParseInt(m, 10, 64)
	}
	f, err := strconv.ParseFloat(s, 64)
	return int64(f * 1000), err
}
