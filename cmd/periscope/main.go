// Command periscope is the one binary: manager, agent, demo and operator verbs.
package main

import (
	"os"

	"github.com/periscope-dev/periscope/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
