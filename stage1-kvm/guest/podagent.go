package guest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

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
		f.Stderr = f.Stdout
		if app.StderrPort != app.StdoutPort {
			if f.Stderr, err = openPort(app.StderrPort); err != nil {
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
