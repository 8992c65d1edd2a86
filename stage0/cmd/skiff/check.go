package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/internal/lazyre"
	"github.com/skiff-project/skiff/stage0/prepare"
	"github.com/skiff-project/skiff/stage1/abi"
)

// podPlan is a pod's command line, checked: every flag and image reference
// is known good before anything is fetched or created.
type podPlan struct {
	apps []prepare.AppArgs
	in   insecure
	pd   prepare.Pod
	vols []abi.Volume
	env  []string // --set-env-file's, then --set-env's: every app's, under its own
}

// check validates the pod flags and the app arguments (images, app flags)
// without touching the store or the network.
func (f *prepareFlags) check(g *globals, args []string) (*podPlan, error) {
	apps, err := prepare.ParseApps(args)
	if err != nil {
		return nil, err
	}
	for _, a := range apps {
		if err := checkImageRef(a.Image, false); err != nil {
			return nil, err
		}
	}
	in, err := parseInsecure(g.insecure)
	if err != nil {
		return nil, err
	}
	if _, err := f.fetchFlags.options(g, in); err != nil {
		return nil, err
	}
	pd, vols, err := podOptions(f, in)
	if err != nil {
		return nil, err
	}
	var env []string
	for _, file := range f.setEnvFile {
		e, err := readEnvFile(file)
		if err != nil {
			return nil, err
		}
		env = append(env, e...)
	}
	for _, kv := range f.setEnv {
		if err := prepare.CheckEnv(kv); err != nil {
			return nil, err
		}
		env = append(env, kv)
	}
	if f.uuidFile != "" {
		if err := checkNewFile("--uuid-file-save", f.uuidFile); err != nil {
			return nil, err
		}
	}
	if f.stage1Path != "" {
		if fi, err := os.Stat(f.stage1Path); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("--stage1-path=%s: not a stage1 image file; give the path of a stage1 .oci.tar", f.stage1Path)
		}
	}
	return &podPlan{apps: apps, in: in, pd: pd, vols: vols, env: env}, nil
}

// checkNewFile refuses a file skiff is to write when its directory is
// missing or not writable, or it names something other than a file or a
// stream [atomicfile.CreateTextOutput] writes to ("-", a pipe, a fifo).
func checkNewFile(flag, path string) error {
	if stream, err := atomicfile.CheckTextOutput(path); err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	} else if stream {
		return nil
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("%s=%s: directory %s does not exist; create it or name a file in an existing directory", flag, path, dir)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("%s=%s: directory %s is not writable (%v); name a file in a writable directory", flag, path, dir, err)
	}
	return nil
}

// checkImageRef parses an image reference and, for an image file or
// directory that exists, checks that the transport fits what is there
// (oci: is a directory, oci-archive: and docker-archive: are files). With
// mustExist (generate unit, whose unit runs later) the file must exist.
func checkImageRef(image string, mustExist bool) error {
	ref, err := reference.Parse(image)
	if err != nil {
		return err
	}
	if ref.Path == "" {
		return nil
	}
	fi, err := os.Stat(ref.Path)
	if err != nil {
		if mustExist {
			return fmt.Errorf("image %s: %v; give the path of an existing image file", image, errors.Unwrap(err))
		}
		return nil
	}
	switch {
	case ref.Transport == reference.OCI && !fi.IsDir():
		return fmt.Errorf("image %s: %s is a file, and oci: names an OCI layout directory; for an archive write oci-archive:%s", image, ref.Path, ref.Path)
	case ref.Transport != reference.OCI && fi.IsDir():
		return fmt.Errorf("image %s: %s is a directory, and %s: names a file; for an OCI layout directory write oci:%s", image, ref.Path, ref.Transport, ref.Path)
	}
	return nil
}

// hostnameLabelRE is one label of an RFC 1123 host name.
var hostnameLabelRE = lazyre.New(`^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$`)

// checkHostname refuses what sethostname(2) or resolvers would: more than 64
// bytes (HOST_NAME_MAX), or a label that is not letters, digits and inner dashes.
func checkHostname(h string) error {
	if h == "" {
		return nil
	}
	if len(h) > 64 {
		return fmt.Errorf("--hostname: %d characters; a hostname has at most 64", len(h))
	}
	for _, l := range strings.Split(h, ".") {
		if len(l) > 63 || !hostnameLabelRE.MatchString(l) {
			return fmt.Errorf("--hostname=%q: want letters, digits and dashes in dot-separated labels (RFC 1123), such as web-1.example", h)
		}
	}
	return nil
}

// maxEnvFile bounds --set-env-file.
const maxEnvFile = 1 << 20

// readEnvFile reads rkt's --set-env-file: one NAME=VALUE a line; empty lines
// and lines starting with # are skipped.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--set-env-file=%s: %v; name a readable file of NAME=VALUE lines", path, errors.Unwrap(err))
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(io.LimitReader(f, maxEnvFile+1))
	sc.Buffer(make([]byte, 64<<10), maxEnvFile+1)
	n, size := 0, 0
	for sc.Scan() {
		n++
		size += len(sc.Bytes()) + 1
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := prepare.CheckEnv(line); err != nil {
			return nil, fmt.Errorf("--set-env-file=%s: line %d: want NAME=VALUE", path, n)
		}
		env = append(env, line)
	}
	if err := sc.Err(); err != nil || size > maxEnvFile {
		return nil, fmt.Errorf("--set-env-file=%s: unreadable or over %d bytes; want a small file of NAME=VALUE lines", path, maxEnvFile)
	}
	return env, nil
}
