package main

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"testing"
)

// The chart leaves room right of the largest ratio for its label: nothing
// is drawn in the image's last columns (issue #19: the label was clipped at
// the right edge).
func TestChartLabelsFitTheImage(t *testing.T) {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		t.Skip("gnuplot is not installed")
	}
	results := []*Result{
		{Scenario: "start", Runtime: "skiff", Baseline: "runc", Ratio: 0.8},
		{Scenario: "pull", Runtime: "skiff", Baseline: "umoci", Ratio: 1.7},
		{Scenario: "kvm-boot", Runtime: "skiff-kvm", Baseline: "qemu", Ratio: 30.5},
	}
	b, err := chart(t.TempDir(), Machine{Date: "2026-12-04", CPUs: 2, Kernel: "6.18"}, results)
	if err != nil {
		t.Fatal(err)
	}
	if out := os.Getenv("CHART_OUT"); out != "" {
		os.WriteFile(out, b, 0o644)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r := img.Bounds()
	for x := r.Max.X - 8; x < r.Max.X; x++ {
		for y := r.Min.Y; y < r.Max.Y; y++ {
			if cr, cg, cb, _ := img.At(x, y).RGBA(); cr < 0x8000 || cg < 0x8000 || cb < 0x8000 {
				t.Fatalf("dark pixel at (%d,%d), within 8 columns of the right edge: a label runs off the image", x, y)
			}
		}
	}
}
