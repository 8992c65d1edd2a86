//go:build functional

package tests

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
)

// skiff runs as root and writes files at paths users name. A link someone
// left at such a path (in a shared /tmp, say) must not make skiff write the
// file it points to: --uuid-file-save, `image export` (and the temporary
// file beside its target) and `generate unit --output-dir` refuse a link and
// write through a new temporary file and a rename.
func TestUserGivenPathsAreNotWrittenThroughLinks(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(victim, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	intact := func(what string) {
		t.Helper()
		if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
			t.Errorf("%s wrote through a link to %s: it now starts %q", what, victim, b[:min(len(b), 40)])
			os.WriteFile(victim, []byte("keep\n"), 0o600)
		}
	}

	uf := link("uuid")
	r := e.skiff(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/true")...)
	intact("run --uuid-file-save")
	if r.code != 125 || !strings.Contains(r.stderr, uf+" is a symbolic link") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
		t.Errorf("run --uuid-file-save=LINK: exit %d, stderr %q; want 125 and the link named", r.code, r.stderr)
	}
	if ps := e.pods(); len(ps) != 0 {
		t.Errorf("a refused --uuid-file-save left pods: %+v", ps)
	}

	img := e.image("busybox")
	e.ok("--insecure-options=image", "fetch", img)
	out := filepath.Join(dir, "out.tar")
	link("out.tar.tmp")
	e.ok("image", "export", img, out)
	intact("image export (FILE.tmp)")
	if fi, err := os.Lstat(out); err != nil || !fi.Mode().IsRegular() || fi.Size() < 1024 {
		t.Errorf("export did not write %s: %v", out, err)
	}
	exp := link("exported.tar")
	e.fails(125, []string{exp, "symbolic link"}, "image", "export", img, exp)
	intact("image export FILE")

	// extract and render: DIR a link to an empty directory is refused; an
	// existing empty directory is filled.
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	xlink := filepath.Join(dir, "xlink")
	if err := os.Symlink(empty, xlink); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"extract", "render"} {
		e.fails(125, []string{xlink, "symbolic link"}, "image", verb, img, xlink)
		if ents, _ := os.ReadDir(empty); len(ents) != 0 {
			t.Errorf("image %s wrote through a link to %s: %d entries", verb, empty, len(ents))
		}
	}
	e.ok("image", "render", img, empty)
	for _, p := range []string{"rootfs/bin/busybox", "manifest.json", "config.json"} {
		if _, err := os.Stat(filepath.Join(empty, p)); err != nil {
			t.Errorf("render into an empty directory: %v", err)
		}
	}
	if ents, _ := os.ReadDir(dir); slices.ContainsFunc(ents, func(d os.DirEntry) bool { return strings.Contains(d.Name(), ".tmp-") }) {
		t.Errorf("temporary files left in %s: %v", dir, ents)
	}

	units := filepath.Join(dir, "units")
	if err := os.Mkdir(units, 0o755); err != nil {
		t.Fatal(err)
	}
	svc := filepath.Join(units, "web.service")
	if err := os.Symlink(victim, svc); err != nil {
		t.Fatal(err)
	}
	e.fails(125, []string{svc, "symbolic link"}, "--insecure-options=image", "generate", "unit", "--unit-name=web",
		"--output-dir="+units, img)
	intact("generate unit --output-dir")
}

// An app's sd_notify messages reach the host unit's NOTIFY_SOCKET only as
// far as an app may speak for the unit: STATUS= (cleaned, bounded) and
// WATCHDOG=1 when the unit's watchdog was handed to it; never MAINPID=,
// EXTEND_TIMEOUT_USEC=, WATCHDOG=trigger, WATCHDOG_USEC=, FDSTORE= or its own
// READY=1.
func TestNotifyRelayPassesOnlyWhatAnAppMaySay(t *testing.T) {
	e := newEnv(t)
	img := e.notifyImage()
	sock, msgs := notifySocket(t)
	hostile := `WATCHDOG=trigger\nEXTEND_TIMEOUT_USEC=999999999999\nMAINPID=1\nWATCHDOG_USEC=1\nFDSTORE=1\nSTOPPING=1\n` +
		"STATUS=ok\x1b]0;owned\x07\x1b[2J" + strings.Repeat("a", 1000)
	c := e.cmd(e.runArgs("--net=none", img, "--",
		"notify", hostile, ",", "notify", "WATCHDOG=1", ",", "sleep", "1s", ",", "notify", "READY=1", ",", "sleep", "600")...)
	c.Env = append(c.Env, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=600000000")
	var out, errb syncBuffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Process.Signal(syscall.SIGTERM); _ = c.Wait() }()
	ready := "READY=1\nMAINPID=" + strconv.Itoa(c.Process.Pid)
	var got []string
	for {
		m := next(t, msgs, 60*time.Second, "READY=1 from skiff")
		if m == ready {
			break
		}
		got = append(got, m)
	}
	sawWatchdog, sawStatus := false, false
	for _, m := range got {
		for _, line := range strings.Split(m, "\n") {
			switch {
			case line == "WATCHDOG=1":
				sawWatchdog = true
			case strings.HasPrefix(line, "STATUS="):
				sawStatus = true
				if len(line) > len("STATUS=")+256 || strings.IndexFunc(line, unicode.IsControl) >= 0 || !strings.HasPrefix(line, "STATUS=ok") {
					t.Errorf("STATUS passed as %q... (%d bytes); want it without control characters, at most 256 bytes", line[:min(len(line), 60)], len(line))
				}
			default:
				t.Errorf("the app's %q reached the unit's NOTIFY_SOCKET", line)
			}
		}
	}
	if !sawWatchdog || !sawStatus {
		t.Errorf("the app's WATCHDOG=1 and STATUS= should pass (watchdog handed to it); got %q", got)
	}
}

// The kvm guest writes the VM's serial console, and run prints its tail
// (here with --debug) to the user's terminal: root in the guest (an app with
// the capabilities to reach the guest's /dev through /proc/1/root) writes
// escape sequences, a carriage return and a flood to the console; what
// reaches skiff's stderr keeps the text but no control character, and its
// lines are bounded.
func TestKVMConsoleTailIsSafeToPrint(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "kvm" {
		t.Skip("the console tail is the kvm flavor's")
	}
	hostile := `printf '\033]0;owned\007\033[2J\033[H\rHOSTILE-CONSOLE-LINE\302\233m\n' > /proc/1/root/dev/ttyS0 &&
head -c 20000 /dev/zero | tr '\0' A > /proc/1/root/dev/ttyS0 && echo > /proc/1/root/dev/ttyS0 && echo written`
	args := append([]string{"--debug", "--insecure-options=image,seccomp,paths", "run"}, e.stage1...)
	args = append(args, "--net=none", e.image("busybox"),
		"--caps-retain=CAP_SYS_PTRACE,CAP_DAC_OVERRIDE,CAP_DAC_READ_SEARCH,CAP_SYS_ADMIN,CAP_SYS_TTY_CONFIG",
		"--", "/bin/sh", "-c", hostile)
	r := e.ok(args...)
	if !strings.Contains(r.stdout, "written") {
		t.Fatalf("the app could not write the guest's console: %q\n%s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "HOSTILE-CONSOLE-LINE") {
		t.Fatalf("the console's tail is not printed with --debug:\n%s", r.stderr)
	}
	for _, c := range r.stderr {
		if c != '\n' && c != '\t' && unicode.IsControl(c) {
			i := max(0, strings.Index(r.stderr, "HOSTILE")-40)
			t.Errorf("control character %U printed from the guest's console: %q", c, r.stderr[i:min(len(r.stderr), i+80)])
			break
		}
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		if len(l) > 4096 {
			t.Errorf("a line of %d bytes printed from the guest's console", len(l))
		}
	}
}
