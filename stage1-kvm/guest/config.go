// Package guest is the inside of the kvm stage1's microVM: the configuration
// the host's run entrypoint hands to the guest, the guest's first init (PID 1
// of the initramfs), and the pod agent that runs beside the pod's systemd.
//
// The guest's root filesystem is the initramfs, which holds the stage1
// rootfs (systemd, this binary). The init loads the virtio modules, mounts
// its configuration, its output directory and each app's rootfs from
// virtio-9p shares, installs the
// pod's units (package units, the same units as the default flavor's, which
// run wrote), gives the apps their filesystems (package podfs, as the
// default flavor does), configures the network the host's CNI plugins gave
// the pod, starts the agent and execs systemd. The apps' exits
// are recorded by app-exited in the output share; systemd powers the VM off
// when the pod ends.
//
// The guest is hostile to the host: it never sees the pod directory. The
// host shares with it, over virtio-9p, only what it needs: its
// configuration and the pod's units read-only (ConfigTag), each app's
// rootfs, the volumes the apps mount, and one directory for what the guest
// reports (OutTag: the apps' exit records, the ready marker), which the host
// reads as untrusted input. In the guest, the init puts the shares together
// at PodMount in the pod directory's layout, so the apps' mount sources
// resolve as on the host. Besides, one virtio-serial port per app output
// stream and the agent's port (package stage1-kvm/agent: enter, stop,
// signals, stdin).
package guest

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/stage1-kvm/agent"
	"github.com/skiff-project/skiff/stage1-kvm/vmnet"
)

// The host's directories for the guest, relative to the pod directory.
// GuestDir is shared read-only (ConfigTag): the guest's Config (ConfigName),
// the units (units.Dir) and the apps' network files (NetDir). OutDir is the
// only directory of the pod's own that the guest writes (OutTag): it holds
// apps/NAME/ with a copy of the app's config.json, where app-exited writes
// exit.json, and the ready marker; the host reads those as untrusted.
const (
	GuestDir   = "stage1/guest"
	ConfigName = "guest.json"
	ConfigFile = GuestDir + "/" + ConfigName // the host's copy
	NetDir     = "net"                       // GuestDir/net: resolv.conf, hosts
	OutDir     = "stage1/out"
)

// 9p mount tags of the guest's configuration and of its output.
const (
	ConfigTag = "config"
	OutTag    = "out"
)

// Paths in the guest's root, besides package appexec's /skiff/apps and
// /skiff/run.
const (
	ConfigMount = "/skiff/config" // GuestDir, read-only
	OutMount    = "/skiff/out"    // OutDir
	PodMount    = "/skiff/pod"    // the pod directory's layout, put together from the shares
	SharesMount = "/skiff/shares" // SharesMount/TAG is the share TAG
)

// AgentPort names the virtio-serial port of the pod agent.
const AgentPort = "skiff.agent"

// Config is what the guest needs to know beyond the pod directory itself.
type Config struct {
	Apps []App `json:"apps"`
	// PodDir is the pod directory as the host sees it: sources of the apps'
	// mounts under it are found under PodMount.
	PodDir string `json:"podDir"`
	// PodShares are the shares that make up PodMount besides the
	// guest's configuration and output: the pod's empty volumes.
	PodShares []PodShare `json:"podShares,omitempty"`
	// Shares are the other host directories the apps' mounts use.
	Shares   []Share `json:"shares,omitempty"`
	Hostname string  `json:"hostname,omitempty"`
	// Mounts every app gets after its own (/etc/resolv.conf, /etc/hosts),
	// sources as the host sees them.
	Mounts []specs.Mount `json:"mounts,omitempty"`
	// Net are the pod's network interfaces (CNI's, reached through taps).
	Net []vmnet.Iface `json:"net,omitempty"`
	// Sysctl are the sysctls the guest's kernel gets before the apps start
	// (OCI mode: the bundle's linux.sysctl, see CheckSysctl).
	Sysctl map[string]string `json:"sysctl,omitempty"`
	// StopTimeout is how long an app gets between SIGTERM and SIGKILL
	// (its unit has it too); the host's stop waits that long, and a little
	// more, before it kills the VM.
	StopTimeout time.Duration `json:"stopTimeout,omitempty"`
	// Debug makes the init and systemd narrate on the VM's console.
	Debug bool `json:"debug,omitempty"`
}

// App is one app as the guest sees it.
type App struct {
	Name string `json:"name"`
	// RootfsTag is the 9p mount tag of the app's rootfs (an overlay the
	// host mounted from the app's layers).
	RootfsTag string `json:"rootfsTag"`
	// StdoutPort and StderrPort name the virtio-serial ports that carry the
	// app's output to the host; the same name (Ports) when one port
	// carries both streams, so their interleaving is kept.
	StdoutPort string `json:"stdoutPort"`
	StderrPort string `json:"stderrPort"`
	// Stdin: the host feeds the app's stdin through the agent
	// (--interactive); else it reads /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// TTY: skiff's stdin is a terminal (--interactive): the app's stdio is a
	// pseudo-terminal of the guest's, this size, whose output goes to
	// StdoutPort.
	TTY    bool          `json:"tty,omitempty"`
	Window agent.Winsize `json:"window,omitzero"`
}

// PodShare is a directory of the pod directory shared with the guest (an
// empty volume), mounted at PodMount/Path.
type PodShare struct {
	Tag      string `json:"tag"`
	Path     string `json:"path"` // relative to the pod directory
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Share is a host directory or file an app mounts, shared with the guest
// over 9p and mounted at SharesMount/Tag: a directory as itself, a file as
// the only entry (its base name) of the shared directory.
type Share struct {
	Tag      string `json:"tag"`
	Source   string `json:"source"` // the host path the apps' mounts name
	File     bool   `json:"file,omitempty"`
	ReadOnly bool   `json:"readOnly,omitempty"` // every mount of it is read-only: so is the share
}

// Ports names the virtio-serial ports of app's output (host and guest agree
// on them); "out" carries both streams when skiff's stdout and stderr are
// one terminal, with --interactive on a terminal, or when an OCI caller's
// stdout and stderr are one file.
func Ports(app string, combined bool) (stdout, stderr string) {
	if combined {
		return "skiff." + app + ".out", "skiff." + app + ".out"
	}
	return "skiff." + app + ".stdout", "skiff." + app + ".stderr"
}
