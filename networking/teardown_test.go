package networking

import (
	"context"
	"os/exec"
	"testing"
)

// The process that set a pod's network up tears it down without searching
// iptables for leftovers when its DEL could see everything the ADD made (on a
// network whose plugin masquerades each pod: masqNet); when
// the pod's root changed its link (its addresses, by which the plugins' DEL
// finds the masquerade rule, or the link itself), it searches, and nothing of
// the pod stays either way (newEnv's leak check).
func TestResultTeardownSweepsOnlyWhenItMust(t *testing.T) {
	for _, c := range []struct {
		name  string
		pod   [][]string // what the pod's root does to its link first (ip ARGS in its netns)
		sweep bool
	}{
		{"untouched", nil, false},
		{"addresses flushed", [][]string{{"addr", "flush", "dev", "eth0"}}, true},
		{"link deleted", [][]string{{"link", "del", "eth0"}}, true},
		{"link renamed", [][]string{{"link", "set", "eth0", "down"}, {"link", "set", "eth0", "name", "eth9"}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.request(e.masqNet())
			res, err := Setup(context.Background(), r)
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			for _, ip := range c.pod {
				args := append([]string{"--net=" + res.NetNS, "ip"}, ip...)
				if out, err := exec.Command("nsenter", args...).CombinedOutput(); err != nil {
					t.Fatalf("ip %v in the pod: %v: %s", ip, err, out)
				}
			}
			sweeps := 0
			sweepMasq = func(name, uuid string, conf []byte) error {
				sweeps++
				return dropMasqLeftovers(name, uuid, conf)
			}
			defer func() { sweepMasq = dropMasqLeftovers }()
			if err := res.Teardown(context.Background(), r.StateDir); err != nil {
				t.Fatalf("Teardown: %v", err)
			}
			if got := sweeps > 0; got != c.sweep {
				t.Errorf("searched for leftovers %d times, want a search: %v", sweeps, c.sweep)
			}
			// A second teardown finds nothing to do.
			if err := res.Teardown(context.Background(), r.StateDir); err != nil {
				t.Errorf("second Teardown: %v", err)
			}
		})
	}
}
