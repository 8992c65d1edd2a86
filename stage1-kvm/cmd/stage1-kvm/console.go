package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The VM's serial console is written by the guest: what run prints of it
// (the tail, when the VM ended without the apps' exit records, or with
// --debug) is hostile text bound for the user's terminal. Only its last
// consoleTailBytes are read, and each line is cut to consoleLineMax
// characters with every control character (escape sequences, carriage
// returns, C1 codes) and invalid UTF-8 replaced by "?".
const (
	consoleTailBytes = 64 << 10
	consoleLineMax   = 512
)

// consoleTail returns the last n lines of the console at path, made safe
// to print.
func consoleTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > consoleTailBytes {
		_, _ = f.Seek(-consoleTailBytes, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, consoleTailBytes))
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var out strings.Builder
	for _, l := range lines {
		out.WriteString(printable(l))
		out.WriteByte('\n')
	}
	return out.String()
}

// printable renders one line of hostile text: control characters and
// invalid UTF-8 become "?" (a carriage return ending the line, as the
// serial console writes them, is dropped), a tab stays, and the line is cut
// to consoleLineMax characters.
func printable(line []byte) string {
	var b strings.Builder
	for i, n := 0, 0; i < len(line) && n < consoleLineMax; n++ {
		r, size := utf8.DecodeRune(line[i:])
		i += size
		switch {
		case r == '\r' && i == len(line): // the serial console's line ends
		case r == '\t':
			b.WriteRune(r)
		case r == utf8.RuneError && size <= 1, unicode.IsControl(r), !unicode.IsPrint(r) && !unicode.IsSpace(r):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
