package main

import (
	"encoding/hex"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/machine1"

	"github.com/skiff-project/skiff/stage1/abi"
)

// machineName is the pod's name in systemd-machined (a valid hostname).
func machineName(uuid string) string { return "skiff-" + uuid }

// registerMachine registers the running pod with systemd-machined, so that
// machinectl lists it. Where systemd is not the host's init, or machined is
// not reachable on the system bus, it does nothing and says so only with
// --debug: a pod runs the same without it. It returns the deregistration.
func registerMachine(o runOpts, m *abi.PodManifest, leader int, root string) func() {
	none := func() {}
	if st, err := os.Lstat("/run/systemd/system"); err != nil || !st.IsDir() { // sd_booted(3)
		o.Debugf("machined: systemd is not the host's init; pod not registered")
		return none
	}
	conn, err := machine1.New()
	if err != nil {
		o.Debugf("machined: not reachable: %v", err)
		return none
	}
	id, _ := hex.DecodeString(strings.ReplaceAll(m.UUID, "-", ""))
	name := machineName(m.UUID)
	if err := conn.RegisterMachine(name, id, "skiff", "container", leader, root); err != nil {
		o.Debugf("machined: register %s: %v", name, err)
		conn.Close()
		return none
	}
	o.Debugf("machined: registered %s", name)
	return func() {
		_ = conn.TerminateMachine(name)
		conn.Close()
	}
}
