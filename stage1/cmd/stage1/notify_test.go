package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestFilterNotify(t *testing.T) {
	long := strings.Repeat("é", maxStatus) // 2 bytes each
	for _, c := range []struct {
		msg      string
		watchdog bool
		ready    bool
		pass     []string
	}{
		{"READY=1", false, true, nil},
		{"READY=1\nSTATUS=up\nMAINPID=1", false, true, []string{"STATUS=up"}},
		{"WATCHDOG=1", false, false, nil},
		{"WATCHDOG=1", true, false, []string{"WATCHDOG=1"}},
		{"WATCHDOG=trigger\nWATCHDOG_USEC=1\nEXTEND_TIMEOUT_USEC=999999999999", true, false, nil},
		{"FDSTORE=1\nFDNAME=x\nSTOPPING=1\nRELOADING=1\nERRNO=1\nBUSERROR=x\nREADY=0", true, false, nil},
		{"STATUS=a\x1b[2J\x1b]0;title\x07b\tc\rd\u0085e\xffz", false, false, []string{"STATUS=a[2J]0;titlebcdez"}},
	} {
		ready, pass := filterNotify([]byte(c.msg), c.watchdog)
		if ready != c.ready || !slices.Equal(pass, c.pass) {
			t.Errorf("filterNotify(%q, %v) = %v %q, want %v %q", c.msg, c.watchdog, ready, pass, c.ready, c.pass)
		}
	}
	_, pass := filterNotify([]byte("STATUS="+long), false)
	if len(pass) != 1 || len(pass[0]) > len("STATUS=")+maxStatus || !utf8.ValidString(pass[0]) || len(pass[0]) < len("STATUS=")+maxStatus-1 {
		t.Errorf("long STATUS passed as %d bytes (valid UTF-8 %v)", len(pass[0]), utf8.ValidString(pass[0]))
	}
}

// A flood of STATUS= and WATCHDOG=1 reaches the unit as at most one
// message per notifyInterval, the latest STATUS= and one WATCHDOG=1.
func TestNotifyLimiterCoalescesAFlood(t *testing.T) {
	var l notifyLimiter
	t0 := time.Unix(1000, 0)
	msg, wait := l.add([]string{"STATUS=1"}, t0)
	if !slices.Equal(msg, []string{"STATUS=1"}) || wait != 0 {
		t.Fatalf("first message: %q %v", msg, wait)
	}
	var sent int
	for i := 2; i <= 1000; i++ {
		now := t0.Add(time.Duration(i) * 90 * time.Microsecond) // 1000 in 90 ms
		pass := []string{fmt.Sprintf("STATUS=%d", i)}
		if i%2 == 0 {
			pass = append(pass, "WATCHDOG=1")
		}
		msg, wait := l.add(pass, now)
		if msg != nil {
			sent++
		}
		if msg == nil && (wait <= 0 || wait > notifyInterval) {
			t.Fatalf("held back with wait %v", wait)
		}
	}
	if sent != 0 {
		t.Errorf("%d messages sent within the first interval", sent)
	}
	msg = l.flush(t0.Add(notifyInterval))
	if !slices.Equal(msg, []string{"STATUS=1000", "WATCHDOG=1"}) {
		t.Errorf("flush after the interval: %q", msg)
	}
	if msg := l.flush(t0.Add(2 * notifyInterval)); msg != nil {
		t.Errorf("flush with nothing held back: %q", msg)
	}
	if msg, _ := l.add([]string{"STATUS=late"}, t0.Add(3*notifyInterval)); !slices.Equal(msg, []string{"STATUS=late"}) {
		t.Errorf("a message after a quiet interval is held back: %q", msg)
	}
	if msg, wait := l.add(nil, t0.Add(3*notifyInterval+time.Millisecond)); msg != nil || wait != 0 {
		t.Errorf("nothing to pass: %q %v", msg, wait)
	}
}
