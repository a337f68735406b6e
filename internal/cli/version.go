package cli

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildVersion describes the binary from what the Go toolchain recorded in it:
// the module version (set by go install module@version), the VCS revision and
// whether the tree was modified (set by a build inside a checkout), and the Go
// version. There is no -ldflags step to forget, so every build can say what it is.
func buildVersion(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "periscope (unknown version: built without module information)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, at string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "periscope %s", version)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, ", commit %s", rev)
		if dirty {
			b.WriteString(" with uncommitted changes")
		}
		if at != "" {
			fmt.Fprintf(&b, " of %s", at)
		}
	}
	fmt.Fprintf(&b, ", built with %s", info.GoVersion)
	return b.String()
}

// versionString is this binary's buildVersion.
func versionString() string { return buildVersion(debug.ReadBuildInfo()) }

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
