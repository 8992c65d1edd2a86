// Package overlay renders a stack of read-only layer directories as overlayfs
// mount options, and mounts them, the way every stage1 flavor mounts a rootfs.
package overlay

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxData is what the kernel takes as mount options: one page, less a margin.
const maxData = 4000

// Lowerdir is the lowerdir option's value for layers given lowest first
// (overlayfs wants the topmost first).
func Lowerdir(layers []string) (string, error) {
	if len(layers) == 0 {
		return "", errors.New("rootfs has no layers")
	}
	top := make([]string, len(layers))
	for i, l := range layers {
		top[len(layers)-1-i] = l
	}
	lower := strings.Join(top, ":")
	if len(lower) > maxData-200 {
		return "", fmt.Errorf("rootfs has too many layers (%d) for one overlay mount", len(layers))
	}
	return lower, nil
}

// Options is the mount data of an overlay of layers (lowest first) with the
// given upper and work directories (absolute paths).
func Options(layers []string, upper, work string) (string, error) {
	lower, err := Lowerdir(layers)
	if err != nil {
		return "", err
	}
	data := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if len(data) > maxData {
		return "", fmt.Errorf("rootfs has too many layers (%d) for one overlay mount", len(layers))
	}
	return data, nil
}

// Mount mounts the overlay of layers (lowest first) at target, with upper and
// work (made absolute) as its writable part.
func Mount(layers []string, upper, work, target string) error {
	var err error
	if upper, err = filepath.Abs(upper); err != nil {
		return err
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}
	data, err := Options(layers, upper, work)
	if err != nil {
		return err
	}
	return unix.Mount("overlay", target, "overlay", 0, data)
}
