package main

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// The pod's cgroup. By default it is /skiff/UUID (in every v1 hierarchy and in
// the cgroup2 tree). When skiff runs as a systemd service (INVOCATION_ID is
// set and its own cgroup is a .service or .scope), the pod goes below the
// unit's cgroup instead, UNIT-CGROUP/skiff-UUID, so the unit's limits,
// accounting and `systemctl stop` cover the pod. The unit must delegate its
// subtree (Delegate=yes, as `skiff generate unit` writes). On a pure cgroup2
// host a cgroup cannot both hold processes and delegate controllers to its
// children, so run first moves itself into UNIT-CGROUP/supervisor.

// podCgroup decides the pod's cgroup path from run's environment and
// /proc/self/cgroup.
func podCgroup(uuid, invocationID string, selfCgroup []byte) string {
	def := "/skiff/" + uuid
	if invocationID == "" {
		return def
	}
	own := unitCgroup(selfCgroup)
	if !strings.HasSuffix(own, ".service") && !strings.HasSuffix(own, ".scope") {
		return def
	}
	return path.Join(own, "skiff-"+uuid)
}

// unitCgroup is this process's cgroup as systemd sees it: the cgroup2 line
// ("0::PATH"), else the name=systemd hierarchy's (legacy hosts).
func unitCgroup(selfCgroup []byte) string {
	var named string
	sc := bufio.NewScanner(bytes.NewReader(selfCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "" && parts[2] != "/":
			return parts[2]
		case parts[1] == "name=systemd":
			named = parts[2]
		}
	}
	return named
}

// choosePodCgroup picks the pod's cgroup for this process and, below a unit
// on a pure cgroup2 host, moves run into the unit's supervisor cgroup. When
// that fails the pod gets its default cgroup.
func choosePodCgroup(o runOpts, uuid string) string {
	self, _ := os.ReadFile("/proc/self/cgroup")
	cg := podCgroup(uuid, os.Getenv("INVOCATION_ID"), self)
	if cg == "/skiff/"+uuid {
		return cg
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // pure cgroup2
		sup := filepath.Join("/sys/fs/cgroup", path.Dir(cg), "supervisor")
		err := os.MkdirAll(sup, 0o755)
		if err == nil {
			err = os.WriteFile(filepath.Join(sup, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644)
		}
		if err != nil {
			o.Debugf("cannot use the unit's cgroup (Delegate=yes missing?): %v; pod cgroup /skiff/%s", err, uuid)
			return "/skiff/" + uuid
		}
	}
	o.Debugf("pod cgroup %s, below the unit's", cg)
	return cg
}
