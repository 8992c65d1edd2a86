//go:build functional

package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netLeaks lists per-pod network state left on the host for these pods: veth
// links, netns files, per-container iptables chains.
func netLeaks(t *testing.T, uuids ...string) []string {
	t.Helper()
	var leaks []string
	for _, u := range uuids {
		if _, err := os.Stat("/run/skiff/netns/" + u); err == nil {
			leaks = append(leaks, "netns "+u)
		}
	}
	out, _ := exec.Command("iptables-save").Output()
	for _, u := range uuids {
		if strings.Contains(string(out), u) {
			leaks = append(leaks, "iptables rules naming "+u)
		}
	}
	return leaks
}

func uuidOf(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestDefaultNetwork(t *testing.T) {
	e := newEnv(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	// The default network: an address, a default route, the host reachable.
	r := e.ok(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/sh", "-c",
		"ip -4 -o addr show eth0; ip route; gw=$(ip route | grep ^default | cut -d' ' -f3); ping -c1 -W2 $gw >/dev/null && echo HOST-REACHABLE")...)
	if !strings.Contains(r.stdout, "172.16.28.") || !strings.Contains(r.stdout, "default via") || !strings.Contains(r.stdout, "HOST-REACHABLE") {
		t.Fatalf("default network: %s", r.stdout)
	}
	uuid := uuidOf(t, uf)
	out := e.ok("status", uuid).stdout
	if !strings.Contains(out, "network-default=eth0 172.16.28.") {
		t.Errorf("status does not show the network: %s", out)
	}
	if l := netLeaks(t, uuid); len(l) > 0 {
		t.Errorf("left after the pod ended: %v", l)
	}
	// default-restricted: the host, no route out.
	r = e.ok(e.runArgs("--net=default-restricted", e.image("busybox"), "--", "/bin/sh", "-c", "ip -4 -o addr show eth0; ip route | grep -c ^default; true")...)
	if !strings.Contains(r.stdout, "172.16.29.") || !strings.HasSuffix(r.stdout, "0\n") {
		t.Errorf("default-restricted: %s", r.stdout)
	}
}

// A pod on the default network reaches a host beyond this one (a netns
// behind a veth of its own, with no route back to the pods' subnet) as this
// host: the SKIFF-MASQ masquerade of the default subnet.
func TestDefaultNetworkMasqueradesToTheWorld(t *testing.T) {
	e := newEnv(t)
	name := fmt.Sprintf("skiffmq%d", os.Getpid()%100000)
	hostEnd, remoteEnd := name+"h", name+"r"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ip("link", "add", hostEnd, "type", "veth", "peer", "name", remoteEnd, "netns", name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostEnd).Run() })
	ip("addr", "add", "198.51.100.1/30", "dev", hostEnd)
	ip("link", "set", hostEnd, "up")
	ip("-n", name, "addr", "add", "198.51.100.2/30", "dev", remoteEnd)
	ip("-n", name, "link", "set", remoteEnd, "up")
	// The remote host's server, in its netns: it answers with the address
	// the connection came from.
	var l net.Listener
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		defer self.Close()
		remote, err := os.Open("/run/netns/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer remote.Close()
		if err := unix.Setns(int(remote.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", "198.51.100.2:0")
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // this thread must not go back to the pool in the remote netns
		}
		if err != nil {
			t.Fatal(err)
		}
	}()
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "FROM %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	r := e.ok(e.runArgs(e.image("busybox"), "--", "/bin/sh", "-c",
		fmt.Sprintf("nc -w 5 198.51.100.2 %d </dev/null", l.Addr().(*net.TCPAddr).Port))...)
	if !strings.Contains(r.stdout, "FROM 198.51.100.1\n") {
		t.Errorf("the pod's connection to a remote host: %q, want it to come FROM 198.51.100.1 (masqueraded)", r.stdout)
	}
}

func TestPortForwardingAndPodToPod(t *testing.T) {
	e := newEnv(t)
	port := freePort(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	args := e.runArgs("--uuid-file-save="+uf, fmt.Sprintf("--port=%d:8080", port), e.image("busybox"), "--", "/bin/sh", "-c",
		"mkdir -p /www && echo served-from-pod > /www/index.html && httpd -f -p 8080 -h /www")
	c, _, errb := e.startBackground(args...)
	waitFor(t, 20*time.Second, "the pod to be ready", func() bool {
		_, err := os.Stat(uf)
		return err == nil && e.status(uuidOf(t, uf)).Ready
	})
	uuid := uuidOf(t, uf)
	get := func(host string) string {
		var body []byte
		waitFor(t, 10*time.Second, "the forwarded port on "+host, func() bool {
			out, err := exec.Command("curl", "-s", "--max-time", "2", fmt.Sprintf("http://%s:%d/", host, port)).Output()
			body = out
			return err == nil && len(out) > 0
		})
		return string(body)
	}
	if got := get("127.0.0.1"); got != "served-from-pod\n" {
		t.Errorf("via 127.0.0.1: %q", got)
	}
	if hostIP := hostAddress(t); hostIP != "" {
		if got := get(hostIP); got != "served-from-pod\n" {
			t.Errorf("via the host's address %s: %q", hostIP, got)
		}
	}
	// Another pod on default reaches this one by its address.
	st := e.status(uuid)
	if len(st.Networks) != 1 || len(st.Networks[0].IPs) != 1 {
		t.Fatalf("status networks: %+v", st.Networks)
	}
	ip, _, _ := strings.Cut(st.Networks[0].IPs[0], "/")
	// The host reaches the pod's address directly.
	if out, err := exec.Command("curl", "-s", "--max-time", "5", "http://"+ip+":8080/").Output(); err != nil || string(out) != "served-from-pod\n" {
		t.Errorf("host to pod %s: %q, %v", ip, out, err)
	}
	r := e.ok(e.runArgs(e.image("busybox"), "--", "/bin/sh", "-c", "wget -q -O - http://"+ip+":8080/")...)
	if r.stdout != "served-from-pod\n" {
		t.Errorf("pod to pod: %q", r.stdout)
	}
	// The port is busy while the pod holds it.
	e.fails(125, []string{fmt.Sprint(port)}, e.runArgs(fmt.Sprintf("--port=%d:80", port), e.image("busybox"), "--", "/bin/true")...)
	e.ok("stop", uuid)
	c.Wait()
	if c.ProcessState.ExitCode() != 0 {
		t.Errorf("pod exit %d: %s", c.ProcessState.ExitCode(), errb.String())
	}
	if l := netLeaks(t, uuid); len(l) > 0 {
		t.Errorf("left after stop: %v", l)
	}
}

func TestDNSAndHosts(t *testing.T) {
	e := newEnv(t)
	r := e.ok(e.runArgs("--dns=10.0.0.53", "--dns-search=corp.example", "--dns-opt=ndots:2", "--hostname=web1", "--hosts-entry=10.0.0.9=db",
		e.image("busybox"), "--", "/bin/sh", "-c", "cat /etc/resolv.conf /etc/hosts; hostname")...)
	for _, want := range []string{"nameserver 10.0.0.53", "search corp.example", "options ndots:2", "10.0.0.9\tdb", "web1\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("lacks %q:\n%s", want, r.stdout)
		}
	}
	host, _ := os.ReadFile("/etc/resolv.conf")
	r = e.ok(e.runArgs("--dns=host", e.image("busybox"), "--", "/bin/cat", "/etc/resolv.conf")...)
	if r.stdout != string(host) {
		t.Errorf("--dns=host: %q, host has %q", r.stdout, host)
	}
}

func TestNamedNetworksAndBadInput(t *testing.T) {
	e := newEnv(t)
	netd := filepath.Join(e.local, "net.d")
	os.MkdirAll(netd, 0o755)
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"backend","plugins":[{"type":"bridge","bridge":"skiffbr-test","isGateway":true,
"ipam":{"type":"host-local","subnet":"10.199.7.0/24","dataDir":%q}}]}`, filepath.Join(e.dir, "ipam-backend"))
	os.WriteFile(filepath.Join(netd, "10-backend.conflist"), []byte(conf), 0o644)
	t.Cleanup(func() { exec.Command("ip", "link", "del", "skiffbr-test").Run() })
	r := e.ok(e.runArgs("--net=default,backend:IP=10.199.7.42", e.image("busybox"), "--", "/bin/sh", "-c", "ip -4 -o addr show")...)
	if !strings.Contains(r.stdout, "eth0") || !strings.Contains(r.stdout, "eth1") || !strings.Contains(r.stdout, "10.199.7.42") {
		t.Errorf("two networks: %s", r.stdout)
	}
	e.fails(125, []string{"nosuchnet"}, e.runArgs("--net=nosuchnet", e.image("busybox"), "--", "/bin/true")...)
	e.fails(125, []string{"--port"}, e.runArgs("--net=host", "--port=18080:80", e.image("busybox"))...)
	e.fails(125, []string{"--port"}, e.runArgs("--net=none", "--port=18080:80", e.image("busybox"))...)
	e.fails(125, []string{"99999"}, e.runArgs("--port=99999:80", e.image("busybox"))...)
	e.fails(125, []string{"--dns"}, e.runArgs("--dns=not-an-ip", e.image("busybox"))...)
	os.WriteFile(filepath.Join(netd, "20-broken.conflist"), []byte("{not json"), 0o644)
	e.fails(125, []string{"20-broken.conflist"}, e.runArgs("--net=backend", e.image("busybox"), "--", "/bin/true")...)
	if ps := e.pods(); len(ps) == 0 {
		t.Fatal("no pods listed")
	}
	for _, p := range e.pods() {
		if l := netLeaks(t, p.UUID); len(l) > 0 {
			t.Errorf("pod %s (%s) left %v", p.UUID, p.State, l)
		}
	}
}

func TestNetworkTeardownAfterSIGKILL(t *testing.T) {
	e := newEnv(t)
	uuid, wait := e.runningPod()
	if _, err := os.Stat("/run/skiff/netns/" + uuid); err != nil {
		t.Fatalf("running pod has no netns: %v", err)
	}
	if err := syscallKill(e.runPID(uuid)); err != nil {
		t.Fatal(err)
	}
	wait()
	e.ok("gc", "--grace-period=0s")
	if l := netLeaks(t, uuid); len(l) > 0 {
		t.Errorf("left after gc: %v", l)
	}
}

// hostAddress is the host's own (non-loopback) source address, if it has one.
func hostAddress(t *testing.T) string {
	out, err := exec.Command("ip", "-4", "route", "get", "192.0.2.1").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "src" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// rkt's --port=NAME:HOSTPORT forwards to the port an appc image names.
func TestNamedPortOfAnAppcImage(t *testing.T) {
	e := newEnv(t)
	b := newACIBuilder(t, e)
	m := manifest("skiff.invalid/web", nil)
	m["app"].(map[string]any)["exec"] = []string{"/bin/sh", "-c", "mkdir -p /tmp/www && echo named-port > /tmp/www/index.html && httpd -f -p 8080 -h /tmp/www"}
	m["app"].(map[string]any)["user"], m["app"].(map[string]any)["group"] = "0", "0"
	aci := b.build("web.aci", m, false)
	port := freePort(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	c, _, errb := e.startBackground(e.runArgs("--uuid-file-save="+uf, fmt.Sprintf("--port=http:%d", port), aci)...)
	var body []byte
	waitFor(t, 20*time.Second, "the named port", func() bool {
		out, err := exec.Command("curl", "-s", "--max-time", "2", fmt.Sprintf("http://127.0.0.1:%d/", port)).Output()
		body = out
		return err == nil && len(out) > 0
	})
	if string(body) != "named-port\n" {
		t.Errorf("named port: %q (%s)", body, errb.String())
	}
	e.ok("stop", uuidOf(t, uf))
	c.Wait()
	e.fails(125, []string{"nosuchport"}, e.runArgs("--port=nosuchport:18081", aci)...)
}
