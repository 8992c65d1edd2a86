package main

import (
	"slices"
	"testing"
)

func TestPodmanWithStorage(t *testing.T) {
	argv := []string{"podman", "--root", "/a", "--runroot", "/b", "--storage-driver", "overlay"}
	got := podmanWithStorage(argv, "/r", "/rr")
	want := []string{"podman", "--root", "/r", "--runroot", "/rr", "--storage-driver", "overlay"}
	if !slices.Equal(got, want) {
		t.Errorf("podmanWithStorage = %q, want %q", got, want)
	}
	if argv[2] != "/a" {
		t.Errorf("podmanWithStorage changed its argument: %q", argv)
	}
}
