//go:build unix

package manager

import "syscall"

// restrictUmask makes every file the process creates from now on private to
// its user, whatever mode the creator asks for. It is the process's: the
// manager is what the process runs (the demo's agents ask for private modes
// anyway).
func restrictUmask() { syscall.Umask(int(private)) }
