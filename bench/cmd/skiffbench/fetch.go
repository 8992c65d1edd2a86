package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// registry is a docker-registry on loopback holding the big image, for
// fetch-big. Its own config binds 127.0.0.1 only (the packaged one listens on
// every interface and turns auth on).
type registry struct {
	cmd  *exec.Cmd
	addr string
}

func (e *Env) startRegistry() (*registry, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	dir := filepath.Join(e.Tmp, "registry")
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", dir, addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(e.Tmp, "registry.yml"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	r := &registry{cmd: exec.Command("docker-registry", "serve", filepath.Join(e.Tmp, "registry.yml")), addr: addr}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start docker-registry: %w", err)
	}
	for i := 0; i < 100; i++ {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return r, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.stop()
	return nil, fmt.Errorf("docker-registry did not answer on %s", addr)
}

func (r *registry) stop() {
	if r != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// fetchScenario times fetching and unpacking the big image from the registry
// into empty stores: skiff fetch, skopeo copy to an OCI layout (no unpacking),
// podman pull (unpacks into its storage).
func (e *Env) fetchScenario(quick bool) *Scenario {
	var (
		once sync.Once
		reg  *registry
		ref  string
		err  error
	)
	// The registry starts on first use, so a run that skips fetch-big starts none.
	up := func() error {
		once.Do(func() {
			if reg, err = e.startRegistry(); err != nil {
				return
			}
			ref = reg.addr + "/bench/big:v1"
			_, _, err = run(context.Background(), []string{"skopeo", "copy", "--quiet", "--dest-tls-verify=false",
				"oci-archive:" + e.Big, "docker://" + ref})
		})
		return err
	}
	skiffDir, layout := filepath.Join(e.Tmp, "fetch-skiff"), filepath.Join(e.Tmp, "fetch-oci")
	// Each run starts with nothing dirty in the page cache: the previous
	// run's writes (200 MB for skiff, which keeps the blobs and the
	// extracted layers) must not be flushed during the next one's.
	wipe := func(dir string) func() error {
		return func() error {
			if err := up(); err != nil {
				return err
			}
			err := os.RemoveAll(dir)
			syscall.Sync()
			return err
		}
	}
	return &Scenario{
		Name: "fetch-big", App: []string{"true"}, Iter: itFetchBig.n(quick),
		Note:  "~100 MB, 5 layers, from a loopback registry into an empty store",
		After: func() { reg.stop() },
		Runtimes: []*Runtime{
			{Name: "skiff fetch", Before: wipe(skiffDir),
				Argv: func([]string) []string {
					return []string{e.Skiff, "--dir=" + skiffDir, "--insecure-options=image,http", "fetch", "--quiet", "docker://" + ref}
				},
				Check: func(out string) error {
					if !strings.Contains(out, "sha256:") {
						return fmt.Errorf("no image ID in %q", tail(out))
					}
					return nil
				}},
			{Name: "skopeo copy (no unpack)", Before: wipe(layout),
				Argv: func([]string) []string {
					return []string{"skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://" + ref, "oci:" + layout + ":big"}
				}},
			{Name: "podman pull",
				Before: func() error {
					if err := up(); err != nil {
						return err
					}
					_, _, _ = run(context.Background(), append(append([]string{}, e.Podman...), "rmi", "-f", ref))
					syscall.Sync()
					return nil
				},
				Argv: func([]string) []string {
					return append(append([]string{}, e.Podman...), "pull", "--quiet", "--tls-verify=false", ref)
				}},
		},
	}
}
