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
	"github.com/skiff-project/skiff/internal/privdir"
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
		AuthFiles: auth.DefaultFiles(g.localConfig)}
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
				img, err := fetchVerified(ctx, g, in, f, s, image, f.signature, true)
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

// openStore opens the image store in the data directory, which it first
// makes reachable by root alone (0700, and so images/ and pods/), saying so
// when it narrows the mode of a directory that was open to other users.
func openStore(g *globals) (*store.Store, error) {
	images := filepath.Join(g.dir, "images")
	for _, d := range []string{g.dir, images, filepath.Join(g.dir, "pods")} {
		was, err := privdir.Ensure(d, 0o700)
		if err != nil {
			return nil, fmt.Errorf("data directory %s: %w", g.dir, err)
		}
		if was != 0 {
			fmt.Fprintf(os.Stderr, "skiff: WARNING: %s was mode %04o, which lets other users reach image layers (their setuid files and devices); it is now %04o\n", d, was, was&0o700)
		}
	}
	s, err := store.Open(images)
	if err != nil {
		return nil, fmt.Errorf("open image store in %s: %w", g.dir, err)
	}
	return s, nil
}
