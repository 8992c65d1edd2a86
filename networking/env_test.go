package networking

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/uuid"
)

const cniDir = "/usr/lib/cni"

// testEnv is a Request template whose every host-side location is a fresh
// temporary directory, with a leak check that runs after the test's own
// cleanups: no new host links, netns mounts, per-pod iptables chains or rules,
// or IPAM leases may remain.
type testEnv struct {
	t         *testing.T
	base      Request
	confDir   string
	pluginDir string // checked before /usr/lib/cni; fake plugins go here
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veths and iptables rules")
	}
	if _, err := os.Stat(filepath.Join(cniDir, "ptp")); err != nil {
		t.Skip("needs the CNI plugins in /usr/lib/cni (Debian containernetworking-plugins)")
	}
	for _, tool := range []string{"iptables-save", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s for the leak checks", tool)
		}
	}
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	e := &testEnv{t: t, confDir: filepath.Join(dir, "net.d"), pluginDir: filepath.Join(dir, "plugins")}
	for _, d := range []string{e.confDir, e.pluginDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.base = Request{
		ConfDirs:   []string{e.confDir},
		PluginDirs: []string{e.pluginDir, cniDir},
		NetNSDir:   filepath.Join(dir, "netns"),
		IPAMDir:    filepath.Join(dir, "ipam"),
	}
	before := e.snapshot()
	t.Cleanup(func() { e.checkNoLeaks(before) })
	return e
}

// request is a Request for a new pod with its own state directory.
func (e *testEnv) request(nets ...string) Request {
	r := e.base
	r.PodUUID = uuid.NewString()
	r.StateDir = filepath.Join(e.t.TempDir(), "stage1", "net")
	for _, n := range nets {
		r.Networks = append(r.Networks, Attachment{Name: n})
	}
	return r
}

// setup runs Setup and registers its Teardown.
func (e *testEnv) setup(r Request) *Result {
	e.t.Helper()
	res, err := Setup(context.Background(), r)
	if err != nil {
		e.t.Fatalf("Setup: %v", err)
	}
	e.t.Cleanup(func() {
		if err := Teardown(context.Background(), r.StateDir); err != nil {
			e.t.Errorf("Teardown: %v", err)
		}
	})
	return res
}

func (e *testEnv) writeConf(name, content string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.confDir, name), []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

type snapshot struct {
	links, netns, chains, rules, leases, mounts []string
}

var perPodChain = regexp.MustCompile(`^:((?:CNI|SKIFF)-\S+)`)

func (e *testEnv) snapshot() snapshot {
	var s snapshot
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			s.links = append(s.links, strings.Split(strings.TrimSuffix(f[1], ":"), "@")[0])
		}
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(tool).Output()
		for _, l := range strings.Split(string(out), "\n") {
			if m := perPodChain.FindStringSubmatch(l); m != nil {
				s.chains = append(s.chains, tool+" "+m[1])
			}
			if strings.HasPrefix(l, "-A ") {
				s.rules = append(s.rules, tool+" "+l)
			}
		}
	}
	s.netns = listDir(e.base.NetNSDir)
	_ = filepath.WalkDir(e.base.IPAMDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != "lock" && !strings.HasPrefix(d.Name(), "last_reserved_ip") {
			s.leases = append(s.leases, p)
		}
		return nil
	})
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, "nsfs") || strings.Contains(l, " net:[") {
			s.mounts = append(s.mounts, strings.Fields(l)[4])
		}
	}
	return s
}

func listDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// The host-wide guard of localnet.go, as iptables-save prints it: the one
// thing of skiff's own that a pod with forwarded ports leaves behind, on
// purpose.
var localnetGuard = []string{
	"iptables-save -A INPUT -j " + LocalnetChain,
	"iptables-save -A " + LocalnetChain + ` ! -s 127.0.0.0/8 -d 127.0.0.0/8 ! -i lo -m comment --comment "skiff: pods must not reach host loopback, CVE-2020-8558" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
}

// The default network's masquerade of subnetmasq.go, as iptables-save
// prints it: it stays, on purpose, once a pod used the built-in default.
var subnetMasq = []string{
	`iptables-save -A POSTROUTING -s 172.16.28.0/24 -m comment --comment "skiff: default network masquerade" -j SKIFF-MASQ`,
	`iptables-save -A SKIFF-MASQ ! -d 224.0.0.0/4 -m comment --comment "skiff: default network masquerade" -j MASQUERADE`,
	`iptables-save -A SKIFF-MASQ -d 172.16.28.0/24 -m comment --comment "skiff: default network masquerade" -j ACCEPT`,
}

// checkNoLeaks compares the host with before; shared CNI chains created on
// first use (CNI-HOSTPORT-*, CNI-FORWARD, CNI-ADMIN) may stay, as they do
// for every CNI runtime, and so may skiff's SKIFF-LOCALNET guard and
// SKIFF-MASQ masquerade, but only as exactly localnetGuard and subnetMasq:
// one jump and their rules, no copies.
func (e *testEnv) checkNoLeaks(before snapshot) {
	t := e.t
	t.Helper()
	after := e.snapshot()
	// A netns, and the veths in it, go asynchronously after its last user.
	for i := 0; i < 40 && len(after.links) > len(before.links); i++ {
		time.Sleep(50 * time.Millisecond)
		after = e.snapshot()
	}
	shared := func(c string) bool {
		return strings.Contains(c, "CNI-HOSTPORT-") || strings.HasSuffix(c, "CNI-FORWARD") || strings.HasSuffix(c, "CNI-ADMIN") ||
			c == "iptables-save "+LocalnetChain || c == "iptables-save "+MasqChain
	}
	diff := func(what string, b, a []string, ignore func(string) bool) {
		for _, x := range a {
			if !slices.Contains(b, x) && (ignore == nil || !ignore(x)) {
				t.Errorf("leaked %s: %s", what, x)
			}
		}
	}
	diff("link", before.links, after.links, nil)
	diff("netns file", before.netns, after.netns, nil)
	diff("iptables chain", before.chains, after.chains, shared)
	diff("iptables rule", before.rules, after.rules, func(r string) bool {
		if slices.Contains(localnetGuard, r) || slices.Contains(subnetMasq, r) {
			return true
		}
		for _, s := range []string{"-A CNI-HOSTPORT-MASQ ", "-A CNI-HOSTPORT-SETMARK ", "-j CNI-HOSTPORT-DNAT",
			`"CNI portfwd requiring masquerade"`, `"CNI firewall plugin`} {
			if strings.Contains(r, s) {
				return true
			}
		}
		return false
	})
	for _, c := range []struct {
		chain string
		want  []string
	}{{LocalnetChain, localnetGuard}, {MasqChain, subnetMasq}} {
		var got []string
		for _, r := range after.rules {
			if strings.Contains(r, c.chain) {
				got = append(got, r)
			}
		}
		slices.Sort(got)
		if len(got) > 0 && !slices.Equal(got, c.want) {
			t.Errorf("the rules of %s are not exactly\n\t%s\nbut\n\t%s", c.chain,
				strings.Join(c.want, "\n\t"), strings.Join(got, "\n\t"))
		}
	}
	diff("IPAM lease", before.leases, after.leases, nil)
	diff("nsfs mount", before.mounts, after.mounts, nil)
}

// inNetNS runs f in the network namespace at path on a locked thread.
func inNetNS(t *testing.T, path string, f func() error) {
	t.Helper()
	if err := ns.WithNetNSPath(path, func(ns.NetNS) error { return f() }); err != nil {
		t.Fatal(err)
	}
}

// listenIn starts a TCP server in a netns (the socket stays there) that
// writes greeting to each client.
func listenIn(t *testing.T, netnsPath, addr, greeting string) net.Listener {
	t.Helper()
	return serveIn(t, netnsPath, addr, func(net.Conn) string { return greeting })
}

// serveIn starts a TCP server in a netns ("": the test's own) that writes
// reply(client) to each client and closes the connection.
func serveIn(t *testing.T, netnsPath, addr string, reply func(net.Conn) string) net.Listener {
	t.Helper()
	var l net.Listener
	listen := func() (err error) { l, err = net.Listen("tcp", addr); return err }
	if netnsPath == "" {
		if err := listen(); err != nil {
			t.Fatal(err)
		}
	} else {
		inNetNS(t, netnsPath, listen)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, reply(c))
			c.Close()
		}
	}()
	return l
}

// dial connects to addr (from inside netnsPath, unless empty) and returns
// what the server says.
func dial(netnsPath, addr string) (string, error) {
	var got string
	do := func() error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		b := make([]byte, 64)
		n, err := c.Read(b)
		got = string(b[:n])
		if n > 0 {
			return nil
		}
		return err
	}
	if netnsPath == "" {
		return got, do()
	}
	return got, ns.WithNetNSPath(netnsPath, func(ns.NetNS) error { return do() })
}

func mustReach(t *testing.T, netnsPath, addr, want string) {
	t.Helper()
	got, err := dial(netnsPath, addr)
	if err != nil || got != want {
		from := "host"
		if netnsPath != "" {
			from = filepath.Base(netnsPath)
		}
		t.Fatalf("from %s, dial %s: got %q, %v; want %q", from, addr, got, err, want)
	}
}

// defaultRoute tells whether a netns has an IPv4 default route, from
// /proc/thread-self/net/route (the calling thread's namespace).
func defaultRoute(t *testing.T, netnsPath string) bool {
	t.Helper()
	var has bool
	inNetNS(t, netnsPath, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/route")
		for _, l := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" {
				has = true
			}
		}
		return err
	})
	return has
}
