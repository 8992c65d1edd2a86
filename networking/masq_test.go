package networking

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSplitRule(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{`-A POSTROUTING -s 172.16.28.2/32 -m comment --comment "name: \"default\" id: \"u\"" -j CNI-abc`,
			[]string{"-A", "POSTROUTING", "-s", "172.16.28.2/32", "-m", "comment", "--comment", `name: "default" id: "u"`, "-j", "CNI-abc"}},
		{`-A X -m comment --comment "a\\b"  -j  ACCEPT`, []string{"-A", "X", "-m", "comment", "--comment", `a\b`, "-j", "ACCEPT"}},
		{`-A X -m comment --comment ""`, []string{"-A", "X", "-m", "comment", "--comment", ""}},
		{"", nil},
	} {
		got, err := splitRule(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("splitRule(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := splitRule(`-A X --comment "open`); err == nil {
		t.Error("an unterminated quote is not an error")
	}
}

func TestMasqFamilies(t *testing.T) {
	for _, c := range []struct {
		conf   string
		v4, v6 bool
	}{
		{`{"plugins":[{"type":"ptp","ipMasq":true,"ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}]}`, true, false},
		{`{"plugins":[{"type":"bridge","ipMasq":true,"ipam":{"ranges":[[{"subnet":"fd00::/64"}],[{"subnet":"10.2.0.0/24"}]]}}]}`, true, true},
		{`{"plugins":[{"type":"bridge","ipMasq":true,"ipam":{"type":"dhcp"}}]}`, true, false},
		{`{"plugins":[{"type":"ptp","ipMasq":false,"ipam":{"subnet":"10.1.0.0/16"}},{"type":"portmap"}]}`, false, false},
		{`not json`, false, false},
	} {
		if v4, v6 := masqFamilies([]byte(c.conf)); v4 != c.v4 || v6 != c.v6 {
			t.Errorf("masqFamilies(%s) = %v, %v; want %v, %v", c.conf, v4, v6, c.v4, c.v6)
		}
	}
}

// masqNet writes a network of the user's whose plugin masquerades each pod
// (ptp with ipMasq, as the built-in default did before SKIFF-MASQ) and
// returns its name.
func (e *testEnv) masqNet() string {
	e.writeConf("30-masq.conflist", `{"cniVersion":"1.0.0","name":"masq","plugins":[
	  {"type":"ptp","ipMasq":true,
	   "ipam":{"type":"host-local","subnet":"10.199.8.0/24","dataDir":"`+e.base.IPAMDir+`","routes":[{"dst":"0.0.0.0/0"}]}}]}`)
	return "masq"
}

// A pod whose ADD completed but was not recorded (its caller died first) and
// whose netns is gone: the ptp plugin's DEL then knows no address and leaves
// the masquerade rule and chain it added; teardown removes them by name and
// pod (newEnv's leak check sees them otherwise).
func TestTeardownDropsMasqTheDelCannotSee(t *testing.T) {
	e := newEnv(t)
	net := e.masqNet()
	r := e.request(net)
	if _, err := Setup(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	// The names are the plugin's own: its chain, and its rule that jumps
	// there with its comment.
	chain := masqChain(net, r.PodUUID)
	if err := exec.Command("iptables", "-w", "-t", "nat", "-S", chain).Run(); err != nil {
		t.Fatalf("the plugin made no chain %s: %v", chain, err)
	}
	rules, err := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range strings.Split(string(rules), "\n") {
		args, _ := splitRule(l)
		if slices.Contains(args, chain) && slices.Contains(args, masqComment(net, r.PodUUID)) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no POSTROUTING rule jumps to %s with comment %s:\n%s", chain, masqComment(net, r.PodUUID), rules)
	}
	st := forgetAdd(t, r.StateDir)
	if err := removeNetNS(st.NetNS); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(context.Background(), r.StateDir); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("iptables", "-w", "-t", "nat", "-S", chain).Run(); err == nil {
		t.Errorf("chain %s left after teardown", chain)
	}
}

// A DEL that follows one cut short (a gc SIGKILLed after the plugin removed
// the pod's link, before it removed the masquerade rule) finds the link gone
// and, as the plugins do, takes that for done without touching iptables,
// although the result is recorded and the netns is there: teardown still
// removes the rule and chain by name and pod.
func TestTeardownDropsMasqAfterADelCutShort(t *testing.T) {
	e := newEnv(t)
	net := e.masqNet()
	r := e.request(net)
	if _, err := Setup(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	st, err := readState(r.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Networks[0].Result == nil || !netNSExists(st.NetNS) {
		t.Fatalf("setup left no result or no netns: %+v", st)
	}
	if b, err := exec.Command("nsenter", "--net="+st.NetNS, "ip", "link", "del", st.Networks[0].IfName).CombinedOutput(); err != nil {
		t.Fatalf("removing the pod's link: %v: %s", err, b)
	}
	chain := masqChain(net, r.PodUUID)
	if err := Teardown(context.Background(), r.StateDir); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("iptables", "-w", "-t", "nat", "-S", chain).Run(); err == nil {
		t.Errorf("chain %s left after teardown", chain)
	}
}

// forgetAdd makes the state in stateDir look as after a caller that died
// in the middle of ADD: the network named but no result recorded, and
// libcni's cache empty. It returns that state.
func forgetAdd(t *testing.T, stateDir string) *state {
	t.Helper()
	st, err := readState(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	st.Networks[0].Result = nil
	if err := st.write(stateDir); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(stateDir, cacheDir)); err != nil {
		t.Fatal(err)
	}
	return st
}

// slowPlugin is a CNI plugin whose ADD says its pid in PIDFILE and hangs.
const slowPlugin = `#!/bin/sh
case "$CNI_COMMAND" in
ADD) echo $$ > PIDFILE; exec sleep 60;;
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}';;
esac
exit 0
`

// A plugin dies with the process that runs it: an ADD that outlived a
// SIGKILLed `skiff run` went on adding after gc's DEL had removed everything
// (the soak found a masquerade rule and chain left that way).
func TestPluginDiesWithItsCaller(t *testing.T) {
	e := newEnv(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	if err := os.WriteFile(filepath.Join(e.pluginDir, "slow"), []byte(strings.ReplaceAll(slowPlugin, "PIDFILE", pidFile)), 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeConf("10-slow.conflist", `{"cniVersion":"1.0.0","name":"slow","plugins":[{"type":"slow"}]}`)
	r := e.request("slow")
	b, _ := json.Marshal(r)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = bufio.NewReader(out).ReadString('\n') }()
	var pid int
	for i := 0; i < 200 && pid == 0; i++ {
		time.Sleep(25 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if pid == 0 {
		t.Fatal("the plugin never ran")
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if err := Teardown(context.Background(), r.StateDir); err != nil {
			t.Error(err)
		}
	})
	for i := 0; i < 100; i++ {
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("plugin %d still runs 5 s after the process that ran it was killed", pid)
}
