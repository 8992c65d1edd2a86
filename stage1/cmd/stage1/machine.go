package main

import (
	"encoding/hex"
	"os"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/skiff-project/skiff/stage1/abi"
)

// machineName is the pod's name in systemd-machined (a valid hostname).
func machineName(uuid string) string { return "skiff-" + uuid }

const (
	machinedName = "org.freedesktop.machine1"
	machinedPath = "/org/freedesktop/machine1"
	machinedMgr  = machinedName + ".Manager"
)

// registerMachine registers the running pod with systemd-machined, so that
// machinectl lists it. Where systemd is not the host's init, or machined is
// not reachable on the system bus, it does nothing and says so only with
// --debug: a pod runs the same without it. It returns the deregistration.
//
// The deregistration is UnregisterMachine, as systemd-nspawn --keep-unit
// does, never TerminateMachine: machined terminates a registered machine by
// stopping the unit its leader is in, which under `skiff generate unit` is
// the pod's own service. That stop, asked for while the pod was already
// ending on its own, turned an app's failure into a clean stop of the unit
// (no Restart=on-failure) and cut run short before its exit was recorded.
func registerMachine(o runOpts, m *abi.PodManifest, leader int, root string) func() {
	none := func() {}
	if st, err := os.Lstat("/run/systemd/system"); err != nil || !st.IsDir() { // sd_booted(3)
		o.Debugf("machined: systemd is not the host's init; pod not registered")
		return none
	}
	conn, err := dbus.SystemBusPrivate()
	if err == nil {
		if err = conn.Auth(nil); err == nil {
			err = conn.Hello()
		}
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		o.Debugf("machined: not reachable: %v", err)
		return none
	}
	obj := conn.Object(machinedName, dbus.ObjectPath(machinedPath))
	id, _ := hex.DecodeString(strings.ReplaceAll(m.UUID, "-", ""))
	name := machineName(m.UUID)
	if err := obj.Call(machinedMgr+".RegisterMachine", 0, name, id, "skiff", "container", uint32(leader), root).Err; err != nil {
		o.Debugf("machined: register %s: %v", name, err)
		conn.Close()
		return none
	}
	o.Debugf("machined: registered %s", name)
	return func() {
		if err := obj.Call(machinedMgr+".UnregisterMachine", 0, name).Err; err != nil {
			// machined drops the machine itself once its leader is gone.
			o.Debugf("machined: unregister %s: %v", name, err)
		}
		conn.Close()
	}
}
