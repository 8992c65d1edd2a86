// Package podrun is what a stage1 flavor's run entrypoint starts from: the
// run flags (package abi) with the pod's UUID, the pod directory (run's
// working directory), the network options they give (package podnet), the
// time run began, and a debug print that tells the phases of the start with
// the time since then.
package podrun

import (
	"fmt"
	"os"
	"time"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/podnet"
)

// Opts are a run entrypoint's options.
type Opts struct {
	abi.RunFlags
	UUID    string
	PodDir  string
	Start   time.Time
	Network podnet.Options // from the network flags
	prog    string         // names the debug lines
}

// Parse reads run's arguments; prog names the flavor's binary in debug lines.
func Parse(prog string, args []string) (Opts, error) {
	rf, uuid, err := abi.ParseRunFlags(args)
	if err != nil {
		return Opts{}, err
	}
	o := Opts{RunFlags: rf, UUID: uuid, Start: time.Now(), prog: prog}
	if o.Network, err = podnet.FromFlags(rf); err != nil {
		return o, err
	}
	o.PodDir, err = os.Getwd()
	return o, err
}

// Debugf prints a phase of the pod's start with the time since run began,
// when --debug is on.
func (o Opts) Debugf(format string, args ...any) {
	if o.Debug {
		fmt.Fprintf(os.Stderr, "%s: +%dms %s\n", o.prog, time.Since(o.Start).Milliseconds(), fmt.Sprintf(format, args...))
	}
}
