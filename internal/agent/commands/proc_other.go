//go:build !unix

package commands

import (
	"os"
	"os/exec"
)

// ownProcessGroup leaves the executable as it is: without process groups only
// the process itself is killed.
func ownProcessGroup(*exec.Cmd) {}

// killGroup does nothing where there are no process groups.
func killGroup(*exec.Cmd) {}

// signalOf names no signal where processes have none.
func signalOf(*os.ProcessState) string { return "" }
