package main

import (
	"os"
	"strings"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
)

// s1StopTimeout keeps run's --stop-timeout for the stop entrypoint.
const s1StopTimeout = abi.Stage1Dir + "/stop-timeout"

// defaultStopTimeout is the units' TimeoutStopSec without --stop-timeout.
const defaultStopTimeout = 10 * time.Second

func saveStopTimeout(d time.Duration) {
	if d <= 0 {
		d = defaultStopTimeout
	}
	_ = os.WriteFile(s1StopTimeout, []byte(d.String()+"\n"), 0o644)
}

// podHaltGrace is how long a halting pod gets before it is killed: at least
// haltGrace, and the apps' stop timeout plus 10s for systemd's way down.
func podHaltGrace() time.Duration {
	d := defaultStopTimeout
	if b, err := os.ReadFile(s1StopTimeout); err == nil {
		if v, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
			d = v
		}
	}
	return max(haltGrace, d+10*time.Second)
}
