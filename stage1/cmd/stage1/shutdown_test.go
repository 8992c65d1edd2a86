package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The command line systemd 252 gives systemd-shutdown, and bad ones.
func TestParseShutdown(t *testing.T) {
	verb, timeout, code, err := parseShutdown(strings.Fields("exit --timeout=90000000us --log-level=6 --log-target=null --exit-code=7"))
	if err != nil || verb != "exit" || timeout != 90*time.Second || code != 7 {
		t.Errorf("systemd's exit line: %q %v %d %v", verb, timeout, code, err)
	}
	verb, timeout, code, err = parseShutdown([]string{"halt", "--log-level=6"})
	if err != nil || verb != "halt" || timeout != 90*time.Second || code != 0 {
		t.Errorf("halt with defaults: %q %v %d %v", verb, timeout, code, err)
	}
	for _, bad := range []string{"", "suspend", "exit halt", "exit --timeout=soon", "exit --timeout=-5us",
		"exit --timeout=99999999999999us", "exit --exit-code=256", "exit --exit-code=-1", "exit --exit-code=x"} {
		if _, _, _, err := parseShutdown(strings.Fields(bad)); err == nil || !strings.HasPrefix(err.Error(), "systemd-shutdown: ") {
			t.Errorf("parseShutdown(%q) = %v, want an error naming systemd-shutdown", bad, err)
		}
	}
}

// Run by anything but the pod's PID 1, it refuses and kills nothing.
func TestShutdownOnlyAsPID1(t *testing.T) {
	if os.Getpid() == 1 {
		t.Skip("this test process is PID 1 (in a container): the shutdown would end every process")
	}
	err := podShutdownMain([]string{"exit"})
	if err == nil || !strings.Contains(err.Error(), "PID 1") {
		t.Fatalf("podShutdownMain outside PID 1: %v", err)
	}
}
