package guest

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1-kvm/agent"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
	"github.com/skiff-project/skiff/stage1/stdio"
)

// podAgent runs beside the pod's systemd for the pod's life: it hands each
// app's app-exec its stdio (the app's virtio-serial output ports, its stdin),
// writes the ready marker once every app has started, and serves the host's
// requests on the agent port.
type podAgent struct {
	cfg     Config
	files   map[string]stdio.Files
	stdin   map[string]*os.File // write ends of interactive apps' stdin
	mu      sync.Mutex
	started map[string]bool
	// writers are the write ends of the output relays (see relay), closed
	// when the pod shuts down; relays counts the copies still running.
	writers []*os.File
	relays  sync.WaitGroup
}

// RunAgent is the pod agent's main (the stage1 binary called as "agent" by
// the init, in the stage1 rootfs). It tells the init it serves by closing
// fd 3, and returns only on failure.
func RunAgent() error {
	a := &podAgent{files: map[string]stdio.Files{}, stdin: map[string]*os.File{}, started: map[string]bool{}}
	if err := abi.ReadJSON(filepath.Join(ConfigMount, ConfigName), &a.cfg); err != nil {
		return err
	}
	debug = a.cfg.Debug
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM)
	go func() { <-sigs; a.drain(); os.Exit(0) }()
	if err := a.openStdio(); err != nil {
		return err
	}
	srv, err := stdio.Listen(appexec.StdioSocket, a.handle, a.appStarted)
	if err != nil {
		return err
	}
	defer srv.Close()
	ready := os.NewFile(3, "ready")
	_, _ = ready.Write([]byte{1})
	ready.Close()
	return a.serve()
}

// openStdio opens each app's output ports and makes its stdin.
func (a *podAgent) openStdio() error {
	for _, app := range a.cfg.Apps {
		f := stdio.Files{}
		var err error
		if f.Stdout, err = openPort(app.StdoutPort); err != nil {
			return fmt.Errorf("app %s: %w", app.Name, err)
		}
		if app.TTY {
			master, slave, err := agent.OpenPty(app.Window)
			if err != nil {
				return fmt.Errorf("app %s: %w", app.Name, err)
			}
			go func(out *os.File) { _, _ = io.Copy(out, master) }(f.Stdout)
			f.Stdin, f.Stdout, f.Stderr = slave, slave, slave
			a.stdin[app.Name] = master
			a.files[app.Name] = f
			continue
		}
		port := f.Stdout
		if f.Stdout, err = a.relay(port); err != nil {
			return fmt.Errorf("app %s: %w", app.Name, err)
		}
		f.Stderr = f.Stdout
		if app.StderrPort != app.StdoutPort {
			if port, err = openPort(app.StderrPort); err != nil {
				return fmt.Errorf("app %s: %w", app.Name, err)
			}
			if f.Stderr, err = a.relay(port); err != nil {
				return fmt.Errorf("app %s: %w", app.Name, err)
			}
		}
		if app.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return err
			}
			f.Stdin, a.stdin[app.Name] = r, w
		} else if f.Stdin, err = os.Open(os.DevNull); err != nil {
			return err
		}
		a.files[app.Name] = f
	}
	return nil
}

// relay is what an app writes to for port: a pipe the agent copies to the
// port. A virtio-serial port opens only once (a second open fails with
// EBUSY), so an app given the port itself could not reopen its output as
// /dev/stdout or /dev/stderr (/proc/self/fd/N) as it can in the default
// flavor, where it has a pipe too; images link their logs there.
func (a *podAgent) relay(port *os.File) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.writers = append(a.writers, w)
	a.mu.Unlock()
	a.relays.Add(1)
	go func() {
		defer a.relays.Done()
		_, _ = io.Copy(port, r)
		r.Close()
	}()
	return w, nil
}

// drain lets the relays copy what the apps wrote before the VM powers off
// (Shutdown sends SIGTERM, then SIGKILL a second later): once the agent's own
// write ends are closed, a relay ends when no app process holds its pipe.
func (a *podAgent) drain() {
	a.mu.Lock()
	for _, w := range a.writers {
		w.Close()
	}
	a.writers = nil
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.relays.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(800 * time.Millisecond):
	}
}

func (a *podAgent) handle(app string, _ int) (stdio.Files, error) {
	f, ok := a.files[app]
	if !ok {
		return stdio.Files{}, fmt.Errorf("pod has no app %q", app)
	}
	return f, nil
}

// appStarted writes the ready marker once every app has its stdio (it is
// about to exec).
func (a *podAgent) appStarted(app string, pid int) {
	debugf("app %s started, pid %d", app, pid)
	a.mu.Lock()
	a.started[app] = true
	all := len(a.started) == len(a.cfg.Apps)
	a.mu.Unlock()
	if all {
		if err := os.WriteFile(filepath.Join(OutMount, abi.ReadyFile), nil, 0o644); err != nil {
			logf("write the ready marker: %v", err)
		}
	}
}

// openPort opens the virtio-serial port called name for writing, waiting a
// little for it to appear.
func openPort(name string) (*os.File, error) {
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if dev := findPort(name); dev != "" {
			return os.OpenFile(dev, os.O_RDWR, 0)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port %s", name)
		}
	}
}

func findPort(name string) string {
	dirs, _ := filepath.Glob("/sys/class/virtio-ports/*")
	for _, d := range dirs {
		if n, err := os.ReadFile(filepath.Join(d, "name")); err == nil && strings.TrimSpace(string(n)) == name {
			return "/dev/" + filepath.Base(d)
		}
	}
	return ""
}
