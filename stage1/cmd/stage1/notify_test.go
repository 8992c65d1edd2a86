package main

import (
	"slices"
	"strings"
	"testing"
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
