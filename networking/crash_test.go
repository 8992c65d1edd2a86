package networking

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const helperEnv = "SKIFF_NETWORKING_SETUP_HELPER"

// TestMain doubles as a process that runs Setup from the Request in
// $SKIFF_NETWORKING_SETUP_HELPER, says "ready" and waits to be killed.
func TestMain(m *testing.M) {
	if req := os.Getenv(helperEnv); req != "" {
		var r Request
		if err := json.Unmarshal([]byte(req), &r); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		if _, err := Setup(context.Background(), r); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// The process that called Setup dies by SIGKILL; a fresh Teardown from the
// state directory alone undoes everything, and a second one is a no-op.
func TestTeardownAfterSIGKILL(t *testing.T) {
	e := newEnv(t)
	r := e.request(NetDefault)
	r.Ports = []PortMapping{{HostPort: freePort(t), PodPort: 80, Protocol: "tcp"}}
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
	line, _ := bufio.NewReader(out).ReadString('\n')
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if line != "ready\n" {
		t.Fatalf("helper: %q", line)
	}
	if !netNSExists(filepath.Join(r.NetNSDir, r.PodUUID)) {
		t.Fatal("the netns did not outlive the process that made it")
	}
	for i := 0; i < 2; i++ {
		if err := Teardown(context.Background(), r.StateDir); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(r.StateDir); !os.IsNotExist(err) {
		t.Errorf("state directory left behind: %v", err)
	}
}

// The netns is already gone (a reboot, someone's umount): Teardown still
// releases the IP and removes the iptables rules.
func TestTeardownWhenNetNSIsGone(t *testing.T) {
	e := newEnv(t)
	r := e.request(NetDefault)
	r.Ports = []PortMapping{{HostPort: freePort(t), PodPort: 80, Protocol: "tcp"}}
	res, err := Setup(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := removeNetNS(res.NetNS); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(context.Background(), r.StateDir); err != nil {
		t.Fatal(err)
	}
}

// A crash in the middle of ADD: the state names the network but has no
// result, and libcni's cache has nothing. Teardown runs DEL without a
// prevResult, which the plugins accept.
func TestTeardownAfterCrashDuringAdd(t *testing.T) {
	e := newEnv(t)
	r := e.request(NetDefault)
	r.Ports = []PortMapping{{HostPort: freePort(t), PodPort: 80, Protocol: "tcp"}}
	if _, err := Setup(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	forgetAdd(t, r.StateDir)
	if err := Teardown(context.Background(), r.StateDir); err != nil {
		t.Fatal(err)
	}
}

func TestTeardownWithoutStateIsNoOp(t *testing.T) {
	if err := Teardown(context.Background(), filepath.Join(t.TempDir(), "none")); err != nil {
		t.Fatal(err)
	}
}
