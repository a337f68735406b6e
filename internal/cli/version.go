package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/buildinfo"
)

// versionString is this binary's description: module version, commit, Go version.
func versionString() string { return buildinfo.String("periscope") }

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version this binary was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return err
		},
	}
}
