package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
	"github.com/skiff-project/skiff/image/verify"
)

// policy is the verification policy the command line asks for (image/verify
// holds what it means).
func policy(g *globals, in insecure) verify.Policy {
	return verify.Policy{
		Keys:     trust.Keystore{LocalDir: g.localConfig, SystemDir: g.systemConfig},
		Insecure: in.skips("image"),
		Warn:     func(msg string) { fmt.Fprintln(os.Stderr, "skiff: WARNING: "+msg) },
	}
}

// fetchVerified brings image into the store as the pull policy says,
// verified as the policy says (unless --insecure-options=image). sigFile,
// when set, is the image file's detached signature (--signature). refetch
// fetches again an image stored under the name without a verification the
// policy accepts (skiff fetch); otherwise it is refused.
func fetchVerified(ctx context.Context, g *globals, in insecure, f *fetchFlags, s *store.Store, image, sigFile string, refetch bool) (*store.Image, error) {
	opts, err := f.options(g, in)
	if err != nil {
		return nil, err
	}
	img, err := policy(g, in).Fetch(ctx, s, verify.Request{Image: image, Signature: sigFile, Fetch: opts, Refetch: refetch})
	if err != nil && strings.Contains(err.Error(), "discovery") {
		// An appc name that discovery cannot find is often a registry
		// image typed without its transport.
		if ref, perr := reference.Parse(image); perr == nil && ref.Transport == reference.AppcName {
			return nil, fmt.Errorf("%w; if it is a registry image, write docker://%s", err, image)
		}
	}
	return img, err
}
