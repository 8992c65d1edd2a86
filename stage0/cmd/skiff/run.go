package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage0/prepare"
	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

// runFlags are run's pod flags (they come before the first image).
type runFlags struct {
	net         string
	hostname    string
	interactive bool
	uuidFile    string
	stage1Path  string
	stage1Name  string
}

func newRunCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	c := &cobra.Command{
		Use:   "run [pod flags] IMAGE [app flags] [-- ARGS] [--- IMAGE [app flags] [-- ARGS]]...",
		Short: "Run images as a pod in the foreground; exits with the pod's exit code",
		Long: `Run fetches and verifies each IMAGE, prepares a pod and runs it through stage1.
skiff's exit code is the app's (the first failing app's in a pod of several);
125 when skiff itself fails, 126 when the command cannot be executed, 127 when
it is not in the image.

Images: ` + reference.Forms + `

` + prepare.AppFlagUsage,
		Example: `  skiff run --insecure-options=image oci-archive:bb.tar -- /bin/sh -c 'echo hi; exit 7'
  skiff run --net=host oci-archive:web.tar --set-env=PORT=8080`,
		RunE: func(cmd *cobra.Command, args []string) error { return runRun(cmd.Context(), g, f, args) },
	}
	c.Flags().SetInterspersed(false) // app flags follow the image
	fl := c.Flags()
	fl.StringVar(&f.net, "net", "none", `the pod's network: "none" (loopback only) or "host"`)
	fl.StringVar(&f.hostname, "hostname", "", "the pod's hostname (default: skiff-UUID-PREFIX)")
	fl.BoolVar(&f.interactive, "interactive", false, "give the app stdin (and the terminal, when stdin is one)")
	fl.StringVar(&f.uuidFile, "uuid-file-save", "", "write the pod's UUID to this file")
	fl.StringVar(&f.stage1Path, "stage1-path", "", "run with the stage1 image in this file")
	fl.StringVar(&f.stage1Name, "stage1-name", stage1img.DefaultName, "run with the installed stage1 of this name")
	return c
}

func runRun(ctx context.Context, g *globals, f *runFlags, args []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.net != "none" && f.net != "host" {
		return fmt.Errorf("--net=%s: unknown network; use --net=none or --net=host", f.net)
	}
	apps, err := prepare.ParseApps(args)
	if err != nil {
		return err
	}
	in, err := parseInsecure(g.insecure)
	if err != nil {
		return err
	}
	s, err := store.Open(filepath.Join(g.dir, "images"))
	if err != nil {
		return fmt.Errorf("open image store in %s: %w", g.dir, err)
	}
	imgs := make([]*store.Image, len(apps))
	for i, a := range apps {
		if imgs[i], err = fetchVerified(ctx, g, in, s, a.Image); err != nil {
			return err
		}
	}
	s1, err := loadStage1(ctx, g, f, s)
	if err != nil {
		return err
	}
	p, err := preparePod(g, f, apps, imgs, s1)
	if err != nil {
		return err
	}
	return execStage1(g, f, p, s1)
}

// fetchVerified imports image into the store after checking its signature
// (unless --insecure-options=image).
func fetchVerified(ctx context.Context, g *globals, in insecure, s *store.Store, image string) (*store.Image, error) {
	ref, err := reference.Parse(image)
	if err != nil {
		return nil, err
	}
	if in.skips("image") {
		fmt.Fprintf(os.Stderr, "skiff: WARNING: signature verification of image %q skipped (--insecure-options=image)\n", image)
	} else if err := verify(g, ref, image); err != nil {
		return nil, err
	}
	img, err := fetch.Import(ctx, s, ref)
	if err != nil {
		return nil, err
	}
	_ = s.Touch(img.ID)
	return img, nil
}

func loadStage1(ctx context.Context, g *globals, f *runFlags, s *store.Store) (abi.Stage1, error) {
	path := f.stage1Path
	if path == "" {
		var err error
		if path, err = stage1img.Find(f.stage1Name, g.systemConfig); err != nil {
			return abi.Stage1{}, err
		}
	}
	return stage1img.Load(ctx, s, path)
}

// execStage1 hands the process over to stage1's run entrypoint, with the pod
// lock on an inherited descriptor. It returns only on failure.
func execStage1(g *globals, f *runFlags, p *pod.Pod, s1 abi.Stage1) error {
	entry, err := stage1img.Entrypoint(s1, abi.EntrypointRun)
	if err != nil {
		return err
	}
	hostname := f.hostname
	if hostname == "" {
		hostname = "skiff-" + p.UUID[:8]
	}
	flags := abi.RunFlags{Net: f.net, Hostname: hostname, Interactive: f.interactive, Debug: g.debug}
	args, dropped := flags.Args(s1.InterfaceVersion)
	for _, d := range dropped {
		fmt.Fprintf(os.Stderr, "skiff: WARNING: stage1 %s does not support --%s; ignored\n", s1.Name, d)
	}
	lockFD, err := p.InheritLockFD()
	if err != nil {
		return err
	}
	if err := os.Chdir(p.Dir); err != nil {
		return err
	}
	env := append(os.Environ(), fmt.Sprintf("%s=%d", abi.EnvLockFD, lockFD))
	if g.debug {
		env = append(env, abi.EnvDebug+"=1")
	}
	// argv[0] is the declared entrypoint: a multi-call stage1 dispatches on it.
	argv := append(append([]string{s1.Entrypoints[abi.EntrypointRun]}, args...), p.UUID)
	if g.debug {
		fmt.Fprintf(os.Stderr, "skiff: exec %q in %s\n", argv, p.Dir)
	}
	err = syscall.Exec(entry, argv, env)
	return fmt.Errorf("exec stage1 %s: %w", entry, err)
}
