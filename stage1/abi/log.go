package abi

import (
	"bytes"
	"errors"
	"time"
)

// Log streams: the one the app wrote the line to, also when skiff's stdout
// and stderr are one file (one pipe, one journal stream; earlier stage1
// builds gave the app one pipe for both there and logged it all as
// StreamStdout). Since v1.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// LogEntry is one line of LogFile: "TIME APP STREAM TAG TEXT\n", TIME in
// RFC 3339 with nanoseconds (UTC), TAG "F" for a full line (the app wrote a
// newline after TEXT) or "P" for a part of one (a line longer than stage1's
// buffer, or output that ended without a newline), TEXT the app's bytes
// without the newline. Since v1.
type LogEntry struct {
	Time    time.Time
	App     string
	Stream  string
	Partial bool
	Text    []byte
}

// Append appends the entry's line to b.
func (e LogEntry) Append(b []byte) []byte {
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, e.App...)
	b = append(b, ' ')
	b = append(b, e.Stream...)
	if e.Partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, e.Text...)
	return append(b, '\n')
}

// ErrBadLogLine is returned for a line that is not a LogEntry.
var ErrBadLogLine = errors.New("malformed log line")

// ParseLogEntry parses one line of LogFile (without its newline). Text
// aliases line.
func ParseLogEntry(line []byte) (LogEntry, error) {
	var e LogEntry
	fields := bytes.SplitN(line, []byte(" "), 5)
	if len(fields) != 5 {
		return e, ErrBadLogLine
	}
	t, err := time.Parse(time.RFC3339Nano, string(fields[0]))
	if err != nil {
		return e, ErrBadLogLine
	}
	switch string(fields[3]) {
	case "F":
	case "P":
		e.Partial = true
	default:
		return e, ErrBadLogLine
	}
	e.Time, e.App, e.Stream, e.Text = t, string(fields[1]), string(fields[2]), fields[4]
	return e, nil
}
