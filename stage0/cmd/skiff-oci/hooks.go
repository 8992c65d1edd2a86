package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The runtime namespace's hooks run here, on the host, with the container's
// state on stdin as runtime-spec says: prestart and createRuntime once create
// has made the container (its init waits; a failure undoes the create),
// poststart after start, poststop after delete (a failure of those two is a
// warning). createContainer and startContainer run in the container's
// namespaces: stage1's.

// runHooks runs hooks in order; it stops at the first failure.
func runHooks(kind string, hooks []specs.Hook, st *specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	in, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		ctx := context.Background()
		cancel := func() {}
		if h.Timeout != nil && *h.Timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		}
		cmd := exec.CommandContext(ctx, h.Path)
		if len(h.Args) > 0 {
			cmd.Args = h.Args
		}
		cmd.Env = h.Env
		if cmd.Env == nil {
			cmd.Env = []string{}
		}
		cmd.Stdin = bytes.NewReader(in)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		timedOut := ctx.Err() != nil
		cancel()
		if err != nil {
			why := err.Error()
			if timedOut {
				why = fmt.Sprintf("timed out after %d s", *h.Timeout)
			}
			return fmt.Errorf("%s hook %d (%s): %s: %s", kind, i, h.Path, why, bytes.TrimSpace(out.Bytes()))
		}
	}
	return nil
}

// warnHooks runs hooks whose failure must not stop the lifecycle.
func (g *globals) warnHooks(kind string, hooks []specs.Hook, st *specs.State) {
	if err := runHooks(kind, hooks, st); err != nil {
		msg := "warning: " + err.Error()
		if g.log != "" {
			logLine(g.log, g.logFormat, "warning", msg)
		}
		fmt.Fprintf(os.Stderr, "skiff-oci: %s\n", oneLine(fmt.Errorf("%s", msg)))
	}
}

// Hooks run as root on the host, so they are never read back from the pod
// directory (its apps/ is writable from inside the container): create keeps
// the bundle's hooks in ROOT/.hooks/ID.json, which only skiff-oci writes.
const hooksDir = ".hooks"

func (g *globals) hooksFile(id string) string { return filepath.Join(g.root, hooksDir, id+".json") }

// saveHooks keeps the bundle's hooks for the container's later verbs.
func (g *globals) saveHooks(id string, h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(g.root, hooksDir), 0o700); err != nil {
		return err
	}
	return os.WriteFile(g.hooksFile(id), b, 0o600)
}

// hooksOf is the container's hooks as create kept them (none if it had none).
func (g *globals) hooksOf(id string) *specs.Hooks {
	h := &specs.Hooks{}
	if b, err := os.ReadFile(g.hooksFile(id)); err == nil {
		json.Unmarshal(b, h)
	}
	return h
}
