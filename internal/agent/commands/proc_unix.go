//go:build unix

package commands

import (
	"os"
	"os/exec"
	"syscall"
)

// ownProcessGroup puts the executable in a process group of its own, so that
// ending it at its timeout or deadline ends everything it started, not only
// the process the agent knows.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return signalGroup(cmd, syscall.SIGKILL) }
}

// killGroup sends SIGKILL to what is left of the executable's process group.
func killGroup(cmd *exec.Cmd) { _ = signalGroup(cmd, syscall.SIGKILL) }

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		return os.ErrProcessDone
	}
	return nil
}

// signalOf names the signal that ended a process, "" when it exited.
func signalOf(st *os.ProcessState) string {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal().String()
	}
	return ""
}
