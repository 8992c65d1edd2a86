package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The guest writes the console; what run prints of it reaches the user's
// terminal. A guest that prints escape sequences (retitle the terminal,
// clear the screen, fake a prompt), carriage returns, C1 codes, bidi
// overrides or a flood gets none of it through, and only a bounded tail is
// read.
func TestConsoleTailIsSafeToPrint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	flood := strings.Repeat("A", 3*consoleTailBytes) + "\n"
	hostile := "\x1b]0;owned\x07\x1b[2J\rroot@host:~# \u009b31m\u202eevil\x00\x7f\xff\tend\n" + strings.Repeat("B", 2*consoleLineMax) + "\n"
	if err := os.WriteFile(path, []byte(flood+hostile), 0o644); err != nil {
		t.Fatal(err)
	}
	got := consoleTail(path, 5)
	for _, c := range got {
		if c != '\n' && c != '\t' && (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == '\u202e') {
			t.Fatalf("control character %U printed: %q", c, got)
		}
	}
	if !strings.Contains(got, "root@host:~# ") || !strings.Contains(got, "\tend\n") {
		t.Errorf("the text around the controls is lost: %q", got)
	}
	for _, l := range strings.Split(got, "\n") {
		if len([]rune(l)) > consoleLineMax {
			t.Errorf("a line of %d characters printed", len([]rune(l)))
		}
	}
	if len(got) > 4*consoleLineMax {
		t.Errorf("%d bytes printed for 5 lines", len(got))
	}
}

// The serial console ends its lines with "\r\n": the carriage return at a
// line's end is dropped, not shown.
func TestPrintableDropsTheConsolesLineEnd(t *testing.T) {
	if got := printable([]byte("booted\r")); got != "booted" {
		t.Errorf("printable(booted\\r) = %q", got)
	}
	if got := printable([]byte("a\rb")); got != "a?b" {
		t.Errorf("printable(a\\rb) = %q", got)
	}
}
