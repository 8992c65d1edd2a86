package main

import (
	"slices"
	"testing"
)

func TestQEMUMachineArgs(t *testing.T) {
	debug := `skiff: exec ["/usr/lib/skiff/run" "--net=none"] in /d/pods/run/u
stage1-kvm: +30ms pod prepared: 256 MiB, 2 CPUs, accel tcg
stage1-kvm: +30ms qemu -L /k/share -name guest=skiff-u -accel tcg -M microvm -m 256 -smp 2 -nodefaults -no-user-config -display none -no-reboot -kernel /k/vmlinux -initrd /k/initrd.cpio -append console=ttyS0 quiet loglevel=3 panic=-1 tsc_early_khz=2000000 tsc=reliable rdinit=/init -serial file:/d/console.log -device virtio-serial-device
hi
`
	got, err := qemuMachineArgs(debug)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-accel", "tcg", "-M", "microvm", "-m", "256", "-smp", "2",
		"-append", "console=ttyS0 quiet loglevel=3 panic=-1 tsc_early_khz=2000000 tsc=reliable rdinit=/init"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	for _, bad := range []string{"hi\n", "stage1-kvm: +30ms qemu -accel tcg -M microvm -m 256 -append quiet\n"} {
		if _, err := qemuMachineArgs(bad); err == nil {
			t.Errorf("qemuMachineArgs(%q): no error", bad)
		}
	}
}
