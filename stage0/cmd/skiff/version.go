package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/stage0/stage1img"
	"github.com/skiff-project/skiff/stage1/abi"
)

func newVersionCmd(g *globals) *cobra.Command {
	var o output
	c := &cobra.Command{
		Use:   "version",
		Short: "Print skiff's version, its Go version and the stage1 interface version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			s1, _ := stage1img.Find(stage1img.DefaultName, g.systemConfig)
			v := map[string]any{"skiff": Version, "go": runtime.Version(),
				"stage1InterfaceVersion": abi.InterfaceVersion, "defaultStage1": s1}
			if o.format == "json" {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "skiff version %s\nGo version %s\nstage1 interface version %d\n",
				Version, runtime.Version(), abi.InterfaceVersion)
			if s1 != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "default stage1 %s\n", s1)
			}
			return nil
		},
	}
	o.register(c, false)
	return c
}
