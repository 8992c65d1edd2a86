package lazyre

import (
	"strings"
	"sync"
	"testing"
)

func TestCompiledOnceOnFirstUse(t *testing.T) {
	re := New(`^a([0-9]+)$`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !re.MatchString("a12") || re.MatchString("b12") {
				t.Error("MatchString")
			}
		}()
	}
	wg.Wait()
	if m := re.FindStringSubmatch("a34"); len(m) != 2 || m[1] != "34" {
		t.Errorf("FindStringSubmatch: %q", m)
	}
	if re.Regexp() != re.Regexp() {
		t.Error("compiled more than once")
	}
	if got := New(`[^a-z]+`).ReplaceAllString("a-b c", "_"); got != "a_b_c" {
		t.Errorf("ReplaceAllString: %q", got)
	}
}

func TestBadExpressionPanicsOnFirstUse(t *testing.T) {
	re := New(`(`) // no panic yet
	defer func() {
		if recover() == nil {
			t.Error("a bad expression did not panic on its first use")
		}
	}()
	re.MatchString("x")
}

// Check compiles every declared expression and names a bad one.
func TestCheck(t *testing.T) {
	mu.Lock()
	saved := declared
	declared = nil
	mu.Unlock()
	defer func() { mu.Lock(); declared = saved; mu.Unlock() }()
	New(`^a+$`)
	New(`b|c`)
	if n, err := Check(); n != 2 || err != nil {
		t.Fatalf("Check with two good expressions: %d, %v", n, err)
	}
	New(`[unclosed`)
	if _, err := Check(); err == nil || !strings.Contains(err.Error(), "[unclosed") {
		t.Errorf("Check with a bad expression: %v", err)
	}
}
