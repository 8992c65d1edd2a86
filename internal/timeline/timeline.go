// Package timeline prints the --debug timeline of one pod's run: a line per
// phase on stderr, "PROG: timeline MS PHASE", MS being milliseconds since
// stage0 started (CLOCK_MONOTONIC, which every process on the host shares),
// so that stage0's and stage1's lines (stage0 execs stage1) line up on one
// clock. skiffbench -timeline reads these lines (bench/README.md).
package timeline

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// EnvStart carries stage0's start (CLOCK_MONOTONIC, in ns) to stage1.
const EnvStart = "SKIFF_TIMELINE_START"

// Prefix starts the phase part of every timeline line: "PROG: " Prefix.
const Prefix = "timeline "

var start = startTime()

// now is CLOCK_MONOTONIC in ns.
func now() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// startTime is stage0's start when the environment carries it (a value
// that is not a past monotonic time is ignored), else this process's.
func startTime() int64 {
	t := now()
	if v, err := strconv.ParseInt(os.Getenv(EnvStart), 10, 64); err == nil && v > 0 && v <= t {
		return v
	}
	return t
}

// Env is the environment entry that passes the start on to a child.
func Env() string { return EnvStart + "=" + strconv.FormatInt(start, 10) }

// Since is the time since the start, in ms.
func Since() float64 { return float64(now()-start) / 1e6 }

// Mark prints one phase's line when on (--debug).
func Mark(on bool, prog, phase string) {
	if on {
		fmt.Fprintf(os.Stderr, "%s: %s%.1f ms %s\n", prog, Prefix, Since(), phase)
	}
}
