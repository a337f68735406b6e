//go:build !unix

package supervisor

import (
	"os"
	"os/exec"
	"time"
)

// ownProcessGroup does nothing where there are no process groups.
func ownProcessGroup(*exec.Cmd) {}

// terminate kills the process itself where there are no signals to ask with.
func terminate(cmd *exec.Cmd) { kill(cmd) }

// kill ends the process itself; without process groups its children stay.
func kill(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

// awaitGroup has no group to wait for.
func awaitGroup(*exec.Cmd, time.Duration) {}

// signalOf names no signal where processes have none.
func signalOf(*os.ProcessState) string { return "" }
