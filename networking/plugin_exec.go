package networking

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// pluginExec runs CNI plugins as libcni's RawExec does, but each plugin dies
// with the process that runs it (Pdeathsig). A `skiff run` SIGKILLed in the
// middle of an ADD otherwise leaves the plugin running on its own: the pod's
// lock is free at once, `skiff gc` tears the network down while the orphaned
// ADD still adds (a masquerade rule and chain, found by the soak), and what
// that ADD adds after the DEL stays on the host for ever. Killed with its
// caller, the plugin stops where it was, and the DEL that gc runs later
// undoes what it did.
//
// Pdeathsig fires when the thread that forked the child exits, not the
// process; the goroutine stays locked to that thread until the plugin has
// exited, so no Go thread exit can kill a plugin that is still wanted.
//
// Two things of RawExec are left out on purpose: its retry on "text file
// busy" (it re-runs the same exec.Cmd, which fails with "exec: already
// started", so it never retried anything), and its OpenTelemetry trace
// context in the plugin's environment (skiff traces nothing).
type pluginExec struct {
	version.PluginDecoder
	stderr io.Writer
}

var _ invoke.Exec = (*pluginExec)(nil)

func (e *pluginExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (e *pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	c := exec.CommandContext(ctx, pluginPath)
	c.Env = environ
	c.Stdin = bytes.NewReader(stdinData)
	c.Stdout, c.Stderr = &stdout, &stderr
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	err := c.Run()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
	if e.stderr != nil && stderr.Len() > 0 {
		_, _ = stderr.WriteTo(e.stderr)
	}
	return stdout.Bytes(), nil
}

// pluginError is the error of a failed plugin, as libcni makes it: the
// plugin's own JSON error from stdout, else what it printed on stderr.
func pluginError(err error, stdout, stderr []byte) error {
	e := &types.Error{}
	switch {
	case len(stdout) > 0:
		if jerr := json.Unmarshal(stdout, e); jerr != nil {
			e.Msg = fmt.Sprintf("netplugin failed but error parsing its diagnostic message %q: %v", stdout, jerr)
		}
	case len(stderr) > 0:
		e.Msg = fmt.Sprintf("netplugin failed: %q: %v", stderr, err)
	default:
		e.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	}
	return e
}
