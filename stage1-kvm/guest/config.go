// Package guest is the inside of the kvm stage1's microVM: the configuration
// the host's run entrypoint hands to the guest, and the guest's init (PID 1 of
// the VM), which mounts the pod directory and the apps' rootfs from virtio-9p
// shares, runs the apps, records their exits in the pod directory and powers
// the VM off.
//
// Host and guest talk only through the pod directory (shared read-write as
// 9p tag PodTag) and one virtio-serial port per app stream. The guest writes
// apps/NAME/exit.json (abi.AppExit) and the ready marker itself; the host
// writes the pod's exit.json once the VM is gone.
package guest

// ConfigFile is where run writes the guest's Config, relative to the pod
// directory.
const ConfigFile = "stage1/guest.json"

// PodTag is the 9p mount tag of the pod directory.
const PodTag = "pod"

// Paths in the guest.
const (
	PodMount  = "/pod"  // the pod directory
	AppsMount = "/apps" // /apps/NAME is app NAME's rootfs
)

// Config is what the guest needs to know beyond the pod directory itself.
type Config struct {
	Apps []App `json:"apps"`
	// Debug makes the init narrate its steps on the VM's console.
	Debug bool `json:"debug,omitempty"`
}

// App is one app as the guest sees it.
type App struct {
	Name string `json:"name"`
	// RootfsTag is the 9p mount tag of the app's rootfs (an overlay the
	// host mounted from the app's layers).
	RootfsTag string `json:"rootfsTag"`
	// StdoutPort and StderrPort name the virtio-serial ports that carry the
	// app's output to the host (empty: the console).
	StdoutPort string `json:"stdoutPort,omitempty"`
	StderrPort string `json:"stderrPort,omitempty"`
}

// Ports names the virtio-serial ports of app (host and guest agree on them).
func Ports(app string) (stdout, stderr string) {
	return "skiff." + app + ".stdout", "skiff." + app + ".stderr"
}
