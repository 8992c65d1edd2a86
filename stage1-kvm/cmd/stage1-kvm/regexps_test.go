package main

import (
	"testing"

	"github.com/skiff-project/skiff/internal/lazyre"
)

// Every regular expression linked into this binary compiles (they are
// compiled on first use, not at start: see internal/lazyre).
func TestRegexpsCompile(t *testing.T) {
	n, err := lazyre.Check()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d expressions", n)
}
