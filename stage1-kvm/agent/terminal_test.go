package agent

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMakeRaw(t *testing.T) {
	master, slave, err := openPty(Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	defer master.Close()
	defer slave.Close()
	lflag := func() uint32 {
		tios, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tios.Lflag
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if _, err := MakeRaw(null); err == nil {
		t.Error("MakeRaw accepted a non-terminal")
	}
	term, err := MakeRaw(slave)
	if err != nil {
		t.Fatal(err)
	}
	if lflag()&(unix.ICANON|unix.ECHO) != 0 {
		t.Error("not raw: ICANON or ECHO still set")
	}
	if term.Size() != (Winsize{Rows: 24, Cols: 80}) {
		t.Errorf("size %+v", term.Size())
	}
	if err := setWinsize(master, Winsize{Rows: 50, Cols: 132}); err != nil {
		t.Fatal(err)
	}
	unix.Kill(os.Getpid(), unix.SIGWINCH)
	select {
	case ws := <-term.Resize():
		if ws != (Winsize{Rows: 50, Cols: 132}) {
			t.Errorf("resize to %+v", ws)
		}
	case <-time.After(5 * time.Second):
		t.Error("no resize after SIGWINCH")
	}
	if err := term.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := term.Restore(); err != nil {
		t.Errorf("second Restore: %v", err)
	}
	if lflag()&unix.ICANON == 0 {
		t.Error("not restored: ICANON off")
	}
}
