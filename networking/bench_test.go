package networking

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkSetupTeardownDefault measures a pod's whole network cost on
// default: netns, CNI ADD (ptp, host-local, portmap, firewall), DEL, netns gone.
func BenchmarkSetupTeardownDefault(b *testing.B) {
	requireRoot(b)
	dir := b.TempDir()
	base := Request{PluginDirs: []string{cniDir}, NetNSDir: dir + "/netns", IPAMDir: dir + "/ipam",
		Networks: []Attachment{{Name: NetDefault}}}
	for i := 0; b.Loop(); i++ {
		r := base
		r.PodUUID = "bench-" + strconv.Itoa(i)
		r.StateDir = dir + "/state-" + strconv.Itoa(i)
		if _, err := Setup(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		if err := Teardown(context.Background(), r.StateDir); err != nil {
			b.Fatal(err)
		}
	}
}
