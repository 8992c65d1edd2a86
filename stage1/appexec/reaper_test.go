package appexec

import (
	"os"
	"testing"
)

// guardEnded tells a guard pipe whose writer (enter) is gone from one still
// held, without waiting.
func TestGuardEnded(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if guardEnded(int(r.Fd())) {
		t.Error("guardEnded with the writer open: true; want false")
	}
	w.Close()
	if !guardEnded(int(r.Fd())) {
		t.Error("guardEnded with the writer closed: false; want true")
	}
}
