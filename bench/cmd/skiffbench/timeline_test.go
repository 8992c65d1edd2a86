package main

import (
	"slices"
	"testing"
)

func TestParseTimeline(t *testing.T) {
	out := "skiff: timeline 3.2 ms command line parsed\n" +
		"skiff: exec [\"/usr/lib/skiff/run\"] in /x\n" +
		"stage1: +12ms stage1 rootfs mounted\n" +
		"stage1: timeline 31.8 ms stage1 started\n" +
		"hello from the app: timeline 1 ms not a phase\n" +
		"stage1: timeline 35.1 ms stage1 rootfs mounted\n"
	got := parseTimeline(out)
	want := []string{"skiff: command line parsed", "stage1: stage1 started", "stage1: stage1 rootfs mounted"}
	if !slices.Equal(got.names, want) || got.ms[want[1]] != 31.8 {
		t.Errorf("parseTimeline = %v %v, want phases %v", got.names, got.ms, want)
	}
}
