package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/skiff-project/skiff/image/auth"
	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// fetchFlags are the flags of every verb that fetches images.
type fetchFlags struct {
	pullPolicy string
	quiet      bool
	signature  string // fetch only: the image file's detached signature
}

func (f *fetchFlags) register(fl *pflag.FlagSet, defaultPolicy string) {
	fl.StringVar(&f.pullPolicy, "pull-policy", defaultPolicy,
		`when to go to an image's source: "new" (only if no image of that name is stored), "update" (ask the source for a newer one) or "never"`)
	fl.BoolVar(&f.quiet, "quiet", false, "print no download progress")
}

// options turns the flags, --insecure-options and the configuration
// directories into fetch options.
func (f *fetchFlags) options(g *globals, in insecure) (fetch.Options, error) {
	policy, err := fetch.ParsePullPolicy(f.pullPolicy)
	if err != nil {
		return fetch.Options{}, err
	}
	opts := fetch.Options{Pull: policy, InsecureHTTP: in.skips("http"), InsecureTLS: in.skips("tls"),
		AuthFiles: auth.DefaultFiles(g.localConfig), Gate: store.TrustInstalled}
	if !f.quiet {
		opts.Progress = os.Stderr
		opts.ProgressBars = term.IsTerminal(int(os.Stderr.Fd()))
	}
	return opts, nil
}

func newFetchCmd(g *globals) *cobra.Command {
	f := &fetchFlags{}
	c := &cobra.Command{
		Use:   "fetch IMAGE...",
		Short: "Fetch images into the store and print their IDs",
		Long: `Fetch verifies each IMAGE's signature (unless --insecure-options=image), brings
it into the image store and prints its ID, one line per image. Layers already
in the store are not downloaded again; two fetches of the same image at once
download it once.

Images: ` + reference.Forms + `

Registry credentials are read, first match winning, from $REGISTRY_AUTH_FILE,
LOCAL_CONFIG/auth.d/*.json and ~/.docker/config.json, all in the docker
config.json format: {"auths":{"HOST[:PORT]":{"auth":"BASE64(USER:PASSWORD)"}}}.
A registry that speaks plain HTTP needs --insecure-options=http; one whose TLS
certificate does not verify needs --insecure-options=tls.

Progress goes to stderr: a bar per layer on a terminal, a line per layer
otherwise, nothing with --quiet.`,
		Example: `  skiff fetch --insecure-options=image,http docker://127.0.0.1:5000/team/app:v1
  skiff fetch --pull-policy=update docker://registry.example/app:latest
  skiff fetch --insecure-options=image docker-archive:saved.tar`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := parseInsecure(g.insecure)
			if err != nil {
				return err
			}
			s, err := openStore(g)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if f.signature != "" && len(args) != 1 {
				return fmt.Errorf("--signature names the signature of one image; fetch the images one by one")
			}
			for _, image := range args {
				img, err := fetchVerified(ctx, g, in, f, s, image, f.signature)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), img.ID)
			}
			return nil
		},
	}
	f.register(c.Flags(), "new")
	c.Flags().StringVar(&f.signature, "signature", "", "the image file's detached signature (default: FILE.asc beside it)")
	return c
}

func openStore(g *globals) (*store.Store, error) {
	s, err := store.Open(filepath.Join(g.dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("open image store in %s: %w", g.dir, err)
	}
	return s, nil
}

// warnInsecureTransport announces the transport checks skipped for ref.
func warnInsecureTransport(in insecure, ref reference.Reference, image string) {
	if ref.Transport != reference.Docker {
		return
	}
	for _, o := range []string{"http", "tls"} {
		if in.skips(o) {
			fmt.Fprintf(os.Stderr, "skiff: WARNING: %s skipped for image %q (--insecure-options=%s)\n", insecureOptions[o], image, o)
		}
	}
}
