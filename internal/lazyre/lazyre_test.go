package lazyre

import (
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
