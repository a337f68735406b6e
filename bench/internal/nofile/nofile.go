// Package nofile lets a benchmark process hold as many sockets as the machine
// allows it.
package nofile

import (
	"fmt"
	"syscall"
)

// Raise lifts the soft open-file limit to the hard one and returns it. Only
// a process with CAP_SYS_RESOURCE could go beyond the hard limit.
func Raise() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read open-file limit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raise open-file limit to %d: %w", lim.Max, err)
	}
	return lim.Max, nil
}
