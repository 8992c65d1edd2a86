package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/image/appc"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage1/abi"
)

// markNotify carries an image's declaration that its app speaks sd_notify
// into the app's spec, where stage1 looks for it: a config label or manifest
// annotation dev.skiff.notify=true, or appc's
// appc.io/executor/supports-systemd-notify=true (kept as a config label by
// the appc conversion).
func markNotify(spec *specs.Spec, img *store.Image) {
	labels := img.Config.Config.Labels
	if labels[abi.AnnotationAppNotify] != "true" && img.Annotations[abi.AnnotationAppNotify] != "true" &&
		labels[appc.LabelAnnotation+abi.AnnotationAppcNotify] != "true" {
		return
	}
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[abi.AnnotationAppNotify] = "true"
}

// waitReady waits until the pod is ready (stage1's ready marker: every app
// started, and apps that speak sd_notify sent READY=1), at most limit (0: no
// limit). A pod that ends first is an error.
func waitReady(g *globals, p *pod.Pod, limit time.Duration) error {
	ctx := context.Background()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	exited := make(chan struct{})
	w, err := pod.Load(g.dir, p.UUID) // its own handle: WaitExit updates it
	if err != nil {
		return err
	}
	defer w.Close()
	go func() {
		if err := waitEnded(ctx, w); err == nil {
			close(exited)
		}
	}()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := p.Status()
		if err == nil && st.Ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s: not ready after %s", p.UUID, limit)
		case <-exited:
			if st, err := p.Status(); err == nil && st.Ready {
				return nil
			}
			if _, err := os.Stat(filepath.Join(w.Dir, abi.ReadyFile)); err == nil {
				return nil
			}
			return fmt.Errorf("pod %s ended before it was ready", p.UUID)
		case <-t.C:
		}
	}
}
