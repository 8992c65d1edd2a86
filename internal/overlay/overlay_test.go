package overlay

import (
	"strings"
	"testing"
)

func TestOptions(t *testing.T) {
	got, err := Options([]string{"/l/base", "/l/top"}, "/u", "/w")
	if err != nil || got != "lowerdir=/l/top:/l/base,upperdir=/u,workdir=/w" {
		t.Fatalf("Options = %q, %v", got, err)
	}
	if _, err := Options(nil, "/u", "/w"); err == nil {
		t.Error("no layers accepted")
	}
	many := make([]string, 100)
	for i := range many {
		many[i] = "/var/lib/skiff/images/layers/sha256/" + strings.Repeat("a", 64)
	}
	if _, err := Lowerdir(many); err == nil {
		t.Error("more layers than one page of mount options accepted")
	}
}
