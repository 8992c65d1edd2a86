package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/image/auth"
	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// reverifyStored checks again the signatures of stored images where the
// signature material can be found: for each docker:// name, the cosign
// signature in the registry for the stored manifest (and, when the name's
// tag still leads to it through an index, for that index). A registry that
// cannot be reached is reported, not counted as a refusal; image files are
// verified only when fetched (their signature is beside the original file).
// It prints one line per name and returns how many were refused.
func reverifyStored(ctx context.Context, g *globals, out io.Writer, imgs []*store.Image) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	in, err := parseInsecure(g.insecure)
	if err != nil {
		return 0, err
	}
	if in.skips("image") {
		fmt.Fprintln(out, "signatures not re-verified (--insecure-options=image)")
		return 0, nil
	}
	opts := fetch.Options{InsecureHTTP: in.skips("http"), InsecureTLS: in.skips("tls"), AuthFiles: auth.DefaultFiles(g.localConfig)}
	refused := 0
	for _, img := range imgs {
		for _, name := range img.Names {
			ref, err := reference.Parse(name)
			if err != nil || ref.Transport != reference.Docker {
				fmt.Fprintf(out, "%s: signature not re-verified: only registry images can be (files are verified when fetched; fetch again with --pull-policy=update)\n", name)
				continue
			}
			ok, msg := reverifyRegistry(ctx, g, opts, ref, img.ID)
			fmt.Fprintf(out, "%s: %s\n", name, msg)
			if !ok {
				refused++
			}
		}
	}
	return refused, nil
}

// reverifyRegistry verifies the cosign signature of the stored manifest id
// of ref; false only for a refusal.
func reverifyRegistry(ctx context.Context, g *globals, opts fetch.Options, ref reference.Reference, id digest.Digest) (bool, string) {
	rm, err := fetch.NewRemote(ref, opts)
	if err != nil {
		return true, "signature not re-verified: " + oneLine(err)
	}
	chain := []digest.Digest{id}
	res, err := rm.Resolve(ctx)
	if err != nil {
		return true, "signature not re-verified: registry not reachable or image gone: " + oneLine(err)
	}
	if i := slices.Index(res.Digests, id); i >= 0 {
		chain = res.Digests[:i+1]
	}
	v, err := policy(g, insecure{}).VerifyCosign(ctx, rm, ref, ref.String(), chain)
	if err != nil {
		return false, "signature REFUSED: " + oneLine(err)
	}
	return true, "signature verified (cosign key " + strings.ToUpper(v.Key) + ")"
}
