package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiff-project/skiff/image/appc"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/internal/timeline"
	"github.com/skiff-project/skiff/networking"
	"github.com/skiff-project/skiff/stage0/pod"
	"github.com/skiff-project/skiff/stage0/prepare"
	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

// runFlags are run's pod flags (they come before the first image): those that
// shape the pod (also prepare's) and those that start it (also run-prepared's).
type runFlags struct {
	prepareFlags
	startFlags
}

type prepareFlags struct {
	fetchFlags
	uuidFile   string
	stage1Path string
	stage1Name string
	volumes    []string
	mounts     []string
	setEnv     []string // every app's environment, under the app's own --set-env
	setEnvFile []string
	runNet     string // run's --net, for the stage1 flavor's refusals ("" for prepare)
	// privateUsers runs the pod in a user namespace of its own (users.go).
	privateUsers bool
}

type startFlags struct {
	net         string
	hostname    string
	interactive bool
	ports       []string
	dns         []string
	dnsSearch   []string
	dnsOpt      []string
	hostsEntry  []string
	stopTimeout time.Duration
	listenApp   string
}

func (f *prepareFlags) register(fl *pflag.FlagSet) {
	f.fetchFlags.register(fl, "new")
	fl.StringVar(&f.uuidFile, "uuid-file-save", "", "write the pod's UUID to this file ('-' for standard output; a pipe or fifo is streamed to, a link or device refused)")
	fl.StringVar(&f.stage1Path, "stage1-path", "", "run with the stage1 image in this file")
	fl.StringVar(&f.stage1Name, "stage1-name", stage1img.DefaultName, "run with the installed stage1 of this name")
	fl.StringArrayVar(&f.volumes, "volume", nil, "a pod volume: NAME,kind=host,source=PATH[,readOnly=true][,idmap=true] | NAME,kind=empty[,mode=0755,uid=N,gid=N] | SOURCE:TARGET[:ro][,idmap] (idmap: with --private-users, the pod's ids are the host's in this host volume, its root is host root there)")
	fl.StringArrayVar(&f.mounts, "mount", nil, "mount a volume in every app: volume=NAME,target=PATH")
	fl.StringArrayVar(&f.setEnv, "set-env", nil, "set an environment variable NAME=VALUE in every app (repeatable; an app's own --set-env after its image wins)")
	fl.StringArrayVar(&f.setEnvFile, "set-env-file", nil, "set every app's environment variables from a file of NAME=VALUE lines (# comments; repeatable)")
	fl.BoolVar(&f.privateUsers, "private-users", false, "run the pod in a user namespace with a private range of 65536 uids and gids (its root is an unprivileged host user, in host volumes too unless one says idmap)")
}

func (f *startFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.net, "net", networking.NetDefault, `the pod's network: "default" (private, NATed), "default-restricted" (host-reachable only), "host", "none" (loopback only), or named networks from net.d: "a,b:IP=10.1.2.3"`)
	fl.StringVar(&f.hostname, "hostname", "", "the pod's hostname (default: skiff-UUID-PREFIX)")
	fl.BoolVar(&f.interactive, "interactive", false, "give the app stdin (and the terminal, when stdin is one)")
	fl.StringArrayVar(&f.ports, "port", nil, "forward a host port: [HOSTIP:]HOSTPORT:PODPORT[/tcp|udp] (repeatable)")
	fl.StringSliceVar(&f.dns, "dns", nil, `DNS servers for the apps, or "host" (the host's resolv.conf) or "none" (the image's)`)
	fl.StringSliceVar(&f.dnsSearch, "dns-search", nil, "DNS search domains")
	fl.StringSliceVar(&f.dnsOpt, "dns-opt", nil, "resolv.conf options")
	fl.StringArrayVar(&f.hostsEntry, "hosts-entry", nil, "an /etc/hosts entry IP=NAME (repeatable)")
	fl.DurationVar(&f.stopTimeout, "stop-timeout", 10*time.Second, "on stop (skiff stop, SIGTERM, SIGINT), how long each app gets between SIGTERM and SIGKILL")
	fl.StringVar(&f.listenApp, "listen-fds-app", "", "the app that receives socket-activated descriptors (LISTEN_FDS) as fd 3 on (default: the first app)")
}

// check validates the start flags before anything is written.
func (f *startFlags) check(g *globals) error {
	if err := checkHostname(f.hostname); err != nil {
		return err
	}
	if f.stopTimeout <= 0 {
		return fmt.Errorf("--stop-timeout=%s: want a positive duration such as 10s (to kill a pod at once: skiff stop --force)", f.stopTimeout)
	}
	n, err := networking.ParseNetFlag(f.net)
	if err != nil {
		return err
	}
	if err := networking.Check(n, netConfDirs(g), nil); err != nil {
		return err
	}
	var ports []networking.PortMapping
	for _, p := range f.ports {
		pm, err := networking.ParsePort(p)
		if err != nil {
			return err
		}
		ports = append(ports, pm) // a named port (NAME:HOSTPORT) is resolved once the images are known
	}
	if err := n.CheckPorts(ports); err != nil {
		return err
	}
	if err := (networking.DNSOptions{Servers: f.dns, Search: f.dnsSearch, Options: f.dnsOpt}).Validate(); err != nil {
		return err
	}
	for _, h := range f.hostsEntry {
		if _, err := networking.ParseHostsEntry(h); err != nil {
			return err
		}
	}
	return nil
}

// checkPortsFree refuses a host port that something holds before a pod is
// made for it (the pod would fail to start and stay behind, never started).
// Not part of check: a unit that generate writes runs later, when the port
// may be its own service's.
func (f *startFlags) checkPortsFree() error {
	var ports []networking.PortMapping
	for _, p := range f.ports {
		pm, err := networking.ParsePort(p)
		if err != nil {
			return err
		}
		ports = append(ports, pm)
	}
	return networking.CheckPortsFree(ports)
}

// resolvePortNames turns rkt's --port=NAME:HOSTPORT into HOSTPORT:PODPORT/PROTO
// with the port of that name an app's appc image declares.
func resolvePortNames(g *globals, p *pod.Pod, ports []string) ([]string, error) {
	out := make([]string, 0, len(ports))
	for _, ps := range ports {
		pm, err := networking.ParsePort(ps)
		if err != nil {
			return nil, err
		}
		if pm.PodPort == 0 {
			if pm.PodPort, pm.Protocol, err = namedPort(g, p, pm.Name); err != nil {
				return nil, fmt.Errorf("--port=%s: %w", ps, err)
			}
		}
		out = append(out, pm.String())
	}
	return out, nil
}

// namedPort finds the port an app's image declares under name (appc ports are
// kept as image labels on import).
func namedPort(g *globals, p *pod.Pod, name string) (int, string, error) {
	m, err := p.Manifest()
	if err != nil {
		return 0, "", err
	}
	s, err := store.Open(filepath.Join(g.dir, "images"))
	if err != nil {
		return 0, "", err
	}
	for _, a := range m.Apps {
		img, err := s.Lookup(a.Image.ID)
		if err != nil {
			continue
		}
		v, ok := img.Config.Config.Labels[appc.LabelPort+name]
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, "+")         // "+socket-activated"
		port, proto, _ := strings.Cut(v, "/") // "80/tcp" or "8000-8010/tcp"
		first, _, _ := strings.Cut(port, "-")
		n, err := strconv.Atoi(first)
		if err != nil {
			return 0, "", fmt.Errorf("image of app %s declares port %s as %q", a.Name, name, v)
		}
		return n, proto, nil
	}
	return 0, "", fmt.Errorf("no app's image declares a port named %q (appc images name their ports)", name)
}

// netConfDirs are where named networks are configured, administrator's first.
func netConfDirs(g *globals) []string {
	var dirs []string
	for _, d := range []string{g.localConfig, g.systemConfig} {
		if abs, err := filepath.Abs(filepath.Join(d, "net.d")); err == nil {
			dirs = append(dirs, abs)
		}
	}
	return dirs
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
	f.prepareFlags.register(c.Flags())
	f.startFlags.register(c.Flags())
	return c
}

func runRun(ctx context.Context, g *globals, f *runFlags, args []string) error {
	f.prepareFlags.runNet = f.net
	timeline.Mark(g.debug, "skiff", "command line parsed")
	if err := f.startFlags.check(g); err != nil {
		return err
	}
	if err := f.startFlags.checkPortsFree(); err != nil {
		return err
	}
	p, m, err := preparePod(ctx, g, &f.prepareFlags, args)
	if err != nil {
		return err
	}
	timeline.Mark(g.debug, "skiff", "pod directory written")
	if err := p.Transition(pod.Running); err != nil {
		return err
	}
	return execStage1(g, &f.startFlags, p, m)
}

// preparePod checks the command line, fetches and verifies the images,
// loads the stage1 and writes the prepared pod. What the stage1's flavor
// cannot do is refused before any image is fetched (by the stage1 file's
// name), and again once it is loaded (by what it declares).
func preparePod(ctx context.Context, g *globals, f *prepareFlags, args []string) (*pod.Pod, *abi.PodManifest, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	plan, err := f.check(g, args)
	if err != nil {
		return nil, nil, err
	}
	apps, in, pd, vols, net := plan.apps, plan.in, plan.pd, plan.vols, f.runNet
	s1path, err := stage1File(g, f)
	if err != nil {
		return nil, nil, err
	}
	if err := checkStage1Flags(flavorOfFile(s1path), f.privateUsers, net); err != nil {
		return nil, nil, err
	}
	s, err := openStore(g)
	if err != nil {
		return nil, nil, err
	}
	// Image gc and rm wait until the pod's manifest names its images (and
	// layers): they never remove what this pod is about to use.
	release, err := s.Hold()
	if err != nil {
		return nil, nil, err
	}
	defer release()
	imgs := make([]*store.Image, len(apps))
	for i, a := range apps {
		if imgs[i], err = fetchVerified(ctx, g, in, &f.fetchFlags, s, a.Image, a.Signature, false); err != nil {
			return nil, nil, err
		}
	}
	s1, err := loadStage1(ctx, g, f, s)
	if err != nil {
		return nil, nil, err
	}
	if err := checkStage1Flags(s1.Flavor, f.privateUsers, net); err != nil {
		return nil, nil, err
	}
	timeline.Mark(g.debug, "skiff", "stage1 and images found in the store")
	if f.privateUsers {
		if err := checkIDMappable(imgs, s1, vols); err != nil {
			return nil, nil, err
		}
	}
	return writePod(g, f, apps, imgs, s1, pd, vols, plan.env)
}

// stage1File is the stage1 image file the pod flags choose.
func stage1File(g *globals, f *prepareFlags) (string, error) {
	if f.stage1Path != "" {
		return f.stage1Path, nil
	}
	return stage1img.Find(f.stage1Name, g.systemConfig)
}

// flavorOfFile is a stage1's flavor as its file is named (stage1-FLAVOR.oci.tar).
func flavorOfFile(path string) string {
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "stage1-"), ".oci.tar")
}

// flavorLimits are what a stage1 flavor cannot do, by flavor: refused, with
// the reason and the fix, before any image is fetched (stage1 refuses them too).
var flavorLimits = map[string]struct{ privateUsers, hostNet string }{
	"kvm": {
		privateUsers: "--private-users: the kvm stage1 isolates the pod in a VM and does not map its users; run without --private-users",
		hostNet:      "--net=host: a VM cannot share the host's network namespace; use --net=default or a named CNI network",
	},
}

// checkStage1Flags refuses what the stage1's flavor cannot do.
func checkStage1Flags(flavor string, privateUsers bool, net string) error {
	lim, ok := flavorLimits[flavor]
	if !ok {
		return nil
	}
	if privateUsers && lim.privateUsers != "" {
		return errors.New(lim.privateUsers)
	}
	if n, err := networking.ParseNetFlag(net); err == nil && net != "" && n.Mode == networking.ModeHost && lim.hostNet != "" {
		return errors.New(lim.hostNet)
	}
	return nil
}

// podOptions turns the pod flags into what every app's spec needs.
func podOptions(f *prepareFlags, in insecure) (prepare.Pod, []abi.Volume, error) {
	pd := prepare.Pod{Volumes: map[string]abi.Volume{}, NoSeccomp: in.skips("seccomp"), NoPaths: in.skips("paths")}
	var vols []abi.Volume
	for _, v := range f.volumes {
		vol, m, err := prepare.ParseVolume(v)
		if err != nil {
			return pd, nil, err
		}
		if vol.IDMap && !f.privateUsers {
			return pd, nil, fmt.Errorf("--volume=%s: idmap needs --private-users (without it the pod's ids are the host's in every volume); add --private-users or drop idmap", v)
		}
		if _, dup := pd.Volumes[vol.Name]; dup {
			return pd, nil, fmt.Errorf("--volume: two volumes are named %q", vol.Name)
		}
		pd.Volumes[vol.Name] = vol
		vols = append(vols, vol)
		if m != nil {
			pd.Mounts = append(pd.Mounts, *m)
		}
	}
	for _, m := range f.mounts {
		ma, err := prepare.ParseMount(m)
		if err != nil {
			return pd, nil, err
		}
		pd.Mounts = append(pd.Mounts, ma)
	}
	return pd, vols, nil
}

func loadStage1(ctx context.Context, g *globals, f *prepareFlags, s *store.Store) (abi.Stage1, error) {
	path, err := stage1File(g, f)
	if err != nil {
		return abi.Stage1{}, err
	}
	return stage1img.Load(ctx, s, path)
}

// execStage1 hands the process over to stage1's run entrypoint, with the pod
// lock on an inherited descriptor. It returns only on failure.
func execStage1(g *globals, f *startFlags, p *pod.Pod, m *abi.PodManifest) error {
	s1 := m.Stage1
	entry, err := stage1img.Entrypoint(s1, abi.EntrypointRun)
	if err != nil {
		return err
	}
	hostname := f.hostname
	if hostname == "" {
		hostname = "skiff-" + p.UUID[:8]
	}
	ports, err := resolvePortNames(g, p, f.ports)
	if err != nil {
		return err
	}
	flags := abi.RunFlags{Net: f.net, Hostname: hostname, Interactive: f.interactive, Debug: g.debug,
		Ports: ports, DNS: f.dns, DNSSearch: f.dnsSearch, DNSOpt: f.dnsOpt, HostsEntry: f.hostsEntry,
		NetConfDirs: netConfDirs(g), StopTimeout: f.stopTimeout, ListenFDsApp: f.listenApp}
	if m.PrivateUsers != nil {
		flags.PrivateUsers = *m.PrivateUsers
	}
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
		env = append(env, abi.EnvDebug+"=1", timeline.Env())
	}
	// argv[0] is the declared entrypoint: a multi-call stage1 dispatches on it.
	argv := append(append([]string{s1.Entrypoints[abi.EntrypointRun]}, args...), p.UUID)
	if g.debug {
		fmt.Fprintf(os.Stderr, "skiff: exec %q in %s\n", argv, p.Dir)
	}
	timeline.Mark(g.debug, "skiff", "exec stage1")
	err = syscall.Exec(entry, argv, env)
	return fmt.Errorf("exec stage1 %s: %w", entry, err)
}
