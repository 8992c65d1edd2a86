package stdio

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHandOver(t *testing.T) {
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	started := make(chan string, 1)
	srv, err := Listen(filepath.Join(dir, "s"), func(app string, pid int) (Files, error) {
		if app != "web" {
			return Files{}, fmt.Errorf("no app %q", app)
		}
		if pid != os.Getpid() {
			return Files{}, fmt.Errorf("peer pid %d, want %d", pid, os.Getpid())
		}
		return Files{Stdin: null, Stdout: w, Stderr: w, Extra: []*os.File{null},
			Env: []string{"LISTEN_FDS=1", "A=b\nc"}}, nil
	}, func(app string, _ int) { started <- app })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	if _, err := Receive(filepath.Join(dir, "s"), "nope"); err == nil || !strings.Contains(err.Error(), `no app "nope"`) {
		t.Fatalf("unknown app: %v", err)
	}
	got, err := Receive(filepath.Join(dir, "s"), "web")
	if err != nil {
		t.Fatal(err)
	}
	fds := got.FDs
	if len(fds) != 4 || strings.Join(got.Env, ",") != "LISTEN_FDS=1,A=b c" {
		t.Fatalf("received %d fds, env %q", len(fds), got.Env)
	}
	// started comes after the server's last use of w (the socket is no
	// synchronisation the race detector sees; the channel is).
	select {
	case app := <-started:
		if app != "web" {
			t.Fatalf("started reported %q", app)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("started callback not called")
	}
	os.NewFile(uintptr(fds[3]), "").Close()
	out := os.NewFile(uintptr(fds[1]), "stdout")
	if _, err := out.Write([]byte("through\n")); err != nil {
		t.Fatal(err)
	}
	out.Close()
	os.NewFile(uintptr(fds[0]), "").Close()
	os.NewFile(uintptr(fds[2]), "").Close()
	w.Close()
	buf := make([]byte, 16)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "through\n" {
		t.Fatalf("read %q through the passed pipe", buf[:n])
	}
}
