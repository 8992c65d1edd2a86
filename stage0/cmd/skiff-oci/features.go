package main

import (
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage1/abi"
)

// featuresDoc is what skiff-oci implements, per runtime-spec features.md.
func featuresDoc() features.Features {
	yes, no := true, false
	var caps []string
	for _, c := range capability.ListKnown() {
		caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
	}
	return features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions: []string{"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
			"iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
			"nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime",
			"remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent", "slave",
			"strictatime", "suid", "sync", "unbindable"},
		Linux: &features.Linux{
			Namespaces:   []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"},
			Capabilities: caps,
			Cgroup:       &features.Cgroup{V1: &yes, V2: &yes, Systemd: &yes, SystemdUser: &no},
			Seccomp: &features.Seccomp{Enabled: &yes,
				Actions: []string{"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
					"SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"},
				Operators: []string{"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
					"SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"},
				Archs: []string{"SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"},
			},
			Apparmor: &features.Apparmor{Enabled: &no},
			Selinux:  &features.Selinux{Enabled: &no},
		},
		Annotations: map[string]string{
			"dev.skiff.oci.version":           Version,
			"dev.skiff.oci.commit":            Commit,
			"dev.skiff.stage1.interface":      strconv.Itoa(abi.InterfaceVersion),
			"dev.skiff.oci.stage1.annotation": abi.AnnotationOCIStage1,
		},
	}
}

func newFeaturesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "features",
		Short: "Print what skiff-oci implements (runtime-spec features JSON)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeJSONIndent(cmd.OutOrStdout(), featuresDoc())
		},
	}
}
