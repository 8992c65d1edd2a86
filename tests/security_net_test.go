//go:build functional

package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A pod that forwards a port (portmap with snat sets route_localnet=1 on the
// host side of its veth) must not reach what the host binds to 127.0.0.1
// (CVE-2020-8558), while the forward still answers on the host's 127.0.0.1.
// The pod's side of the attack (a route for 127.0.0.0/8 via the gateway, and
// route_localnet on eth0 so the pod's kernel sends and accepts such packets) is
// set up in the pod's network namespace from the host, which is what an app
// with CAP_NET_ADMIN can do to itself.
func TestPortForwardKeepsHostLoopbackClosed(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("the pod's network namespace is the guest's on kvm")
	}
	// The host's loopback-only service.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var reached []string
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			reached = append(reached, c.RemoteAddr().String())
			mu.Unlock()
			c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhost-loopback-secret\n"))
			c.Close()
		}
	}()
	secretPort := l.Addr().(*net.TCPAddr).Port

	port := freePort(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	c, _, errb := e.startBackground(e.runArgs("--uuid-file-save="+uf, fmt.Sprintf("--port=%d:8080", port), e.image("busybox"), "--", "/bin/sh", "-c",
		"mkdir -p /www && echo served-from-pod > /www/index.html && httpd -f -p 8080 -h /www")...)
	var uuid string
	defer func() {
		if uuid != "" {
			e.skiff("stop", uuid)
		}
		c.Wait()
	}()
	waitFor(t, 30*time.Second, "the pod to be ready", func() bool {
		_, err := os.Stat(uf)
		return err == nil && e.status(uuidOf(t, uf)).Ready
	})
	uuid = uuidOf(t, uf)
	st := e.status(uuid)
	if len(st.Networks) != 1 || len(st.Networks[0].IPs) != 1 {
		t.Fatalf("status networks: %+v", st.Networks)
	}
	podIP, _, _ := strings.Cut(st.Networks[0].IPs[0], "/")
	ns := "/run/skiff/netns/" + uuid
	inPod := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"--net=" + ns, "--"}, args...)...).CombinedOutput()
		return string(out), err
	}
	gwOut, err := inPod("ip", "-4", "route", "show", "default")
	if err != nil {
		t.Fatalf("pod's routes: %v: %s", err, gwOut)
	}
	f := strings.Fields(gwOut)
	if len(f) < 3 || f[0] != "default" || f[1] != "via" {
		t.Fatalf("pod has no default route: %q", gwOut)
	}
	gw := f[2]
	for _, cmd := range [][]string{
		{"sysctl", "-q", "-w", "net.ipv4.conf.eth0.route_localnet=1", "net.ipv4.conf.eth0.rp_filter=0", "net.ipv4.conf.all.rp_filter=0"},
		{"ip", "route", "add", "127.0.0.0/8", "via", gw, "dev", "eth0", "src", podIP, "table", "100"},
		// Locally sent packets to 127/8 go via the gateway, before the local table.
		{"ip", "rule", "add", "pref", "100", "lookup", "local"},
		{"ip", "rule", "del", "pref", "0", "lookup", "local"},
		{"ip", "rule", "add", "pref", "10", "to", "127.0.0.0/8", "iif", "lo", "lookup", "100"},
	} {
		if out, err := inPod(cmd...); err != nil {
			t.Fatalf("in the pod's namespace, %v: %v: %s", cmd, err, out)
		}
	}
	// The route really sends loopback traffic to the host.
	if out, _ := inPod("ip", "route", "get", "127.0.0.1"); !strings.Contains(out, "via "+gw) {
		t.Fatalf("the pod's route to 127.0.0.1 does not go via the gateway: %s", out)
	}
	out, _ := inPod("curl", "-s", "--max-time", "3", fmt.Sprintf("http://127.0.0.1:%d/", secretPort))
	mu.Lock()
	got := append([]string(nil), reached...)
	mu.Unlock()
	if len(got) > 0 || strings.Contains(out, "host-loopback-secret") {
		t.Errorf("the pod reached the host's 127.0.0.1:%d (connections from %v, read %q)", secretPort, got, out)
	}
	// The forward itself still works through the host's loopback.
	var body []byte
	waitFor(t, 20*time.Second, "the forwarded port on 127.0.0.1", func() bool {
		out, err := exec.Command("curl", "-s", "--max-time", "2", fmt.Sprintf("http://127.0.0.1:%d/", port)).Output()
		body = out
		return err == nil && len(out) > 0
	})
	if string(body) != "served-from-pod\n" {
		t.Errorf("via 127.0.0.1: %q", body)
	}
	e.ok("stop", uuid)
	c.Wait()
	uuid = ""
	if code := c.ProcessState.ExitCode(); code != 0 {
		t.Errorf("pod exit %d: %s", code, errb.String())
	}
}
