package main

import (
	"fmt"
	"runtime"
	"sort"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

func newVersionCmd(g *globals) *cobra.Command {
	var o output
	c := &cobra.Command{
		Use:   "version",
		Short: "Print skiff's version, its Go version, the stage1 interface version and the installed stage1 images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			s1, _ := stage1img.Find(stage1img.DefaultName, g.systemConfig)
			installed := stage1img.Installed(g.systemConfig)
			v := map[string]any{"skiff": Version, "go": runtime.Version(),
				"stage1InterfaceVersion": abi.InterfaceVersion, "defaultStage1": s1, "stage1s": installed}
			if o.isJSON() {
				return o.writeJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "skiff version %s\nGo version %s\nstage1 interface version %d\n",
				Version, runtime.Version(), abi.InterfaceVersion)
			if s1 != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "default stage1 %s\n", s1)
			}
			names := make([]string, 0, len(installed))
			for n := range installed {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "stage1 %s %s (--stage1-name=%s)\n", n, installed[n], n)
			}
			if !o.noLegend {
				fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", usageWays)
			}
			return nil
		},
	}
	o.register(c, "lines")
	return c
}
