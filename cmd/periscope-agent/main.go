// Command periscope-agent is the agent alone, built with CGO_ENABLED=0 to ship
// into customer clouds. It is the same as "periscope agent".
package main

import (
	"os"

	"github.com/periscope-dev/periscope/internal/buildinfo"
	"github.com/periscope-dev/periscope/internal/cli/agentcmd"
)

func main() {
	cmd := agentcmd.New()
	cmd.Use = "periscope-agent"
	// A customer's support ticket can say which build runs: --version.
	cmd.Version = buildinfo.String("periscope-agent")
	cmd.SetVersionTemplate("{{.Version}}\n")
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}
