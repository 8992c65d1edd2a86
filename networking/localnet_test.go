package networking

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Concurrent Setups with ports (here goroutines: the flock is per open
// file, so they contend as processes do) add the guard's rule and jump
// once. A chain of the test's own stands in for SKIFF-LOCALNET, which other
// pods on the host may rely on while the test runs.
func TestLocalnetGuardOnceUnderConcurrency(t *testing.T) {
	requireRoot(t)
	chain := fmt.Sprintf("SKIFF-LNTEST-%d", os.Getpid())
	t.Cleanup(func() {
		for iptables("-D", "INPUT", "-j", chain) == nil {
		}
		_ = iptables("-F", chain)
		_ = iptables("-X", chain)
	})
	for round := 0; round < 2; round++ {
		concurrently(t, 8, func() error { return ensureGuard(chain) })
	}
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatal(err)
	}
	var jumps, rules int
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case l == "-A INPUT -j "+chain:
			jumps++
		case strings.HasPrefix(l, "-A "+chain+" "):
			rules++
			if want := strings.Replace(localnetGuard[1], "iptables-save -A "+LocalnetChain, "-A "+chain, 1); l != want {
				t.Errorf("rule %q, want %q", l, want)
			}
		}
	}
	if jumps != 1 || rules != 1 {
		t.Errorf("%d jumps to %s and %d rules in it, want one each", jumps, chain, rules)
	}
}

// concurrently runs fn n times at once and fails t on any error.
func concurrently(t *testing.T, n int, fn func() error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fn()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
