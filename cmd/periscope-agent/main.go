// Command periscope-agent is the agent alone, built with CGO_ENABLED=0 to ship
// into customer clouds. It is the same as "periscope agent".
package main

import (
	"os"

	"github.com/periscope-dev/periscope/internal/cli/agentcmd"
)

func main() {
	cmd := agentcmd.New()
	cmd.Use = "periscope-agent"
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}
