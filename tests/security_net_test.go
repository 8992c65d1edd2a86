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
// The app is the attacker: with CAP_NET_ADMIN and a writable /proc/sys it
// routes 127.0.0.0/8 via its gateway (route_localnet on eth0, so its kernel
// sends such packets, and the local table moved below its own rule) and
// connects to the host's loopback-only service. On kvm the app does this in
// the guest, whose NIC is the pod's eth0: the same host veth, the same hole.
func TestPortForwardKeepsHostLoopbackClosed(t *testing.T) {
	e := newEnv(t)
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
			c.Write([]byte("host-loopback-secret\n"))
			c.Close()
		}
	}()
	secretPort := l.Addr().(*net.TCPAddr).Port

	attack := fmt.Sprintf(`set -e
gw=$(ip -4 route show default | cut -d" " -f3)
ip=$(ip -4 -o addr show eth0 | sed "s/.* inet \([0-9.]*\).*/\1/")
sysctl -q -w net.ipv4.conf.eth0.route_localnet=1 net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.all.rp_filter=0
ip route add 127.0.0.0/8 via $gw dev eth0 src $ip table 100
ip rule add pref 100 lookup local
ip rule del pref 0 lookup local
ip rule add pref 10 to 127.0.0.0/8 iif lo lookup 100
echo "route: $(ip route get 127.0.0.1)"
set +e
echo "read: $(echo | nc -w 3 127.0.0.1 %d)"
mkdir -p /www && echo served-from-pod > /www/index.html
exec httpd -f -p 8080 -h /www`, secretPort)
	port := freePort(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	c, out, errb := e.startBackground(append(append([]string{"--insecure-options=image,paths", "run"}, e.stage1...),
		"--uuid-file-save="+uf, fmt.Sprintf("--port=%d:8080", port), e.image("busybox"),
		"--caps-retain=CAP_NET_ADMIN,CAP_NET_RAW,CAP_NET_BIND_SERVICE", "--", "/bin/sh", "-c", attack)...)
	ended := make(chan struct{})
	go func() { c.Wait(); close(ended) }()
	defer func() {
		if _, err := os.Stat(uf); err == nil {
			e.skiff("stop", uuidOf(t, uf))
		}
		select {
		case <-ended:
		case <-time.After(60 * time.Second):
			c.Process.Kill()
			<-ended
		}
	}()
	// httpd answers through the forward once the attack is over.
	var body []byte
	waitFor(t, 90*time.Second, "the forwarded port on 127.0.0.1", func() bool {
		select {
		case <-ended:
			t.Fatalf("the pod ended: %s %s", out.String(), errb.String())
		default:
		}
		b, err := exec.Command("curl", "-s", "--max-time", "2", fmt.Sprintf("http://127.0.0.1:%d/", port)).Output()
		body = b
		return err == nil && len(b) > 0
	})
	if string(body) != "served-from-pod\n" {
		t.Errorf("via 127.0.0.1: %q", body)
	}
	o := out.String()
	// The attack really sent loopback traffic to the host.
	if !strings.Contains(o, "route: 127.0.0.1 via ") {
		t.Fatalf("the app's route to 127.0.0.1 does not go via the gateway: %s\n%s", o, errb.String())
	}
	mu.Lock()
	got := append([]string(nil), reached...)
	mu.Unlock()
	if len(got) > 0 || strings.Contains(o, "host-loopback-secret") {
		t.Errorf("the pod reached the host's 127.0.0.1:%d (connections from %v); it says:\n%s", secretPort, got, o)
	}
}
