package main

import (
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"10m":                       now.Add(-10 * time.Minute),
		"2026-12-04T11:00:00Z":      time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC),
		"2026-12-04T11:00:00+01:00": time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC),
		"2026-12-04 11:30:00":       time.Date(2026, 12, 4, 11, 30, 0, 0, time.Local),
		"2026-12-03":                time.Date(2026, 12, 3, 0, 0, 0, 0, time.Local),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"soon", "-5m", "12/04/2026"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q): no error", bad)
		}
	}
}
