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

// registry is a docker-registry on loopback holding the images of the fetch
// scenarios. Its own config binds 127.0.0.1 only (the packaged one listens on
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

// fetchRegistry is the registry of the fetch scenarios: started on first use
// (a run that skips them starts none) and stopped after each scenario, each
// image pushed once per start.
type fetchRegistry struct {
	e      *Env
	mu     sync.Mutex
	reg    *registry
	err    error
	pushed map[string]string // archive → reference in the registry
}

// ref returns the reference of archive in the registry, starting it and
// pushing the archive there (skopeo copy) the first time.
func (f *fetchRegistry) ref(archive, repo string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reg == nil && f.err == nil {
		f.reg, f.err = f.e.startRegistry()
	}
	if f.err != nil {
		return "", f.err
	}
	if r, ok := f.pushed[archive]; ok {
		return r, nil
	}
	r := f.reg.addr + "/bench/" + repo + ":v1"
	if _, _, err := run(context.Background(), []string{"skopeo", "copy", "--quiet", "--dest-tls-verify=false",
		"oci-archive:" + archive, "docker://" + r}); err != nil {
		return "", fmt.Errorf("push %s to the bench registry: %v", archive, err)
	}
	if f.pushed == nil {
		f.pushed = map[string]string{}
	}
	f.pushed[archive] = r
	return r, nil
}

func (f *fetchRegistry) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reg.stop()
	f.reg, f.err = nil, nil
	f.pushed = nil
}

// fetchScenario times fetching archive's image (pushed as repo) from the
// registry and unpacking it into empty stores: skiff fetch, skopeo copy to an
// OCI layout (no unpacking), podman pull (unpacks into its storage). A missing
// archive (na says how to get it) makes every row n/a.
func (e *Env) fetchScenario(reg *fetchRegistry, name, archive, repo, note, na string, it int) *Scenario {
	ref := ""
	up := func() (err error) {
		ref, err = reg.ref(archive, repo)
		return err
	}
	// Every run fetches into directories of its own, and none is removed
	// before the whole bench ends: on a filesystem without a journal (this
	// machine's) ext4 skips inodes deleted in the last 30 s when it
	// allocates new ones, and creating the nginx image's 7,000 files right
	// after deleting the previous run's took up to twice as long. Each run
	// also starts with nothing dirty in the page cache: the previous run's
	// writes (twice the image for skiff, which keeps the blobs and the
	// extracted layers) must not be flushed during the next one's.
	fresh := func(runtime string, i *int) string {
		*i++
		return filepath.Join(e.Tmp, fmt.Sprintf("%s-%s-%d", name, runtime, *i))
	}
	var nSkiff, nSkopeo, nPodman int
	var skiffDir, layout string
	var podman []string
	sc := &Scenario{
		Name: name, App: []string{"true"}, Iter: it, Note: note,
		After: func() { reg.stop() }, // the next fetch scenario starts it again on the same storage
		Runtimes: []*Runtime{
			{Name: "skiff fetch",
				Before: func() error {
					skiffDir = fresh("skiff", &nSkiff)
					syscall.Sync()
					return up()
				},
				Argv: func([]string) []string {
					return []string{e.Skiff, "--dir=" + skiffDir, "--insecure-options=image,http", "fetch", "--quiet", "docker://" + ref}
				},
				Check: func(out string) error {
					if !strings.Contains(out, "sha256:") {
						return fmt.Errorf("no image ID in %q", tail(out))
					}
					return nil
				}},
			{Name: "skopeo copy (no unpack)",
				Before: func() error {
					layout = fresh("oci", &nSkopeo)
					syscall.Sync()
					return up()
				},
				Argv: func([]string) []string {
					return []string{"skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://" + ref, "oci:" + layout + ":" + repo}
				}},
			{Name: "podman pull",
				// A new storage, made before the timed pull (podman images
				// creates it), as skiff's store is before its fetch's.
				Before: func() error {
					root := fresh("podman", &nPodman)
					// podman refuses a runroot longer than 50 characters.
					runroot := filepath.Join(e.Tmp, fmt.Sprintf("pr%d", e.next()))
					podman = podmanWithStorage(e.Podman, root, runroot)
					if _, err := must(context.Background(), append(append([]string{}, podman...), "images")...); err != nil {
						return err
					}
					syscall.Sync()
					return up()
				},
				Argv: func([]string) []string {
					return append(append([]string{}, podman...), "pull", "--quiet", "--tls-verify=false", ref)
				}},
		},
	}
	if _, err := os.Stat(archive); err != nil {
		for _, rt := range sc.Runtimes {
			rt.NA = na
		}
	}
	return sc
}

// podmanWithStorage is the podman command line argv with its --root and
// --runroot replaced.
func podmanWithStorage(argv []string, root, runroot string) []string {
	out := append([]string{}, argv...)
	for i := 0; i+1 < len(out); i++ {
		switch out[i] {
		case "--root":
			out[i+1] = root
		case "--runroot":
			out[i+1] = runroot
		}
	}
	return out
}
