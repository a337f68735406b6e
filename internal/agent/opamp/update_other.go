//go:build !unix

package opamp

import (
	"os/exec"
	"time"
)

// ownProcessGroup leaves the default cancellation (killing the shell) where
// there are no process groups; WaitDelay still bounds the wait for its output.
func ownProcessGroup(cmd *exec.Cmd, grace time.Duration) { cmd.WaitDelay = grace }

// killGroup has nothing more to kill without process groups.
func killGroup(*exec.Cmd) {}
