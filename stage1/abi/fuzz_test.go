package abi

import (
	"bytes"
	"testing"
)

// The exit records are what a pod writes and the host reads back: whatever
// they hold, decoding must not panic, and what passes validation is within
// what skiff itself writes. Seeds: testdata/fuzz/FuzzDecodeAppExit.
func FuzzDecodeAppExit(f *testing.F) {
	f.Add([]byte(`{"app":"web","code":137,"signal":"SIGKILL","exitedAt":"2026-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeAppExit(b)
		if err != nil {
			return
		}
		if x.Code < 0 || x.Code > 255 || (x.Signal != "" && !signalRE.MatchString(x.Signal)) {
			t.Fatalf("accepted %+v", x)
		}
	})
}

func FuzzDecodePodExit(f *testing.F) {
	f.Add([]byte(`{"code":0,"exitedAt":"2026-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if x, err := DecodePodExit(b); err == nil && (x.Code < 0 || x.Code > 255) {
			t.Fatalf("accepted %+v", x)
		}
	})
}

// A log line the pod's log holds (in the kvm flavor the host writes every
// line itself, but the file sits in the pod directory): parsing never
// panics, and what parses renders back to the same line.
func FuzzParseLogEntry(f *testing.F) {
	f.Add([]byte("2026-01-02T03:04:05.123456789Z web stdout F hello"))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseLogEntry(line)
		if err != nil {
			return
		}
		if e.Text == nil {
			e.Text = []byte{}
		}
		again, err := ParseLogEntry(bytes.TrimSuffix(e.Append(nil), []byte("\n")))
		if err != nil || again.App != e.App || again.Stream != e.Stream || again.Partial != e.Partial ||
			!bytes.Equal(again.Text, e.Text) || !again.Time.Equal(e.Time) {
			t.Fatalf("%q parsed as %+v, rendered and parsed again as %+v (%v)", line, e, again, err)
		}
	})
}
