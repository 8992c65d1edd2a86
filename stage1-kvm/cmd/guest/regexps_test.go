package main

import (
	"testing"

	"github.com/skiff-project/skiff/internal/lazyre"
)

// Every regular expression linked into this binary compiles (they are
// compiled on first use, not at start).
func TestRegexpsCompile(t *testing.T) { lazyre.CheckIn(t) }
