//go:build unix

package supervisor

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ownProcessGroup puts a replica in a process group of its own, so stopping it
// stops everything it started, not only the process the agent knows.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// terminate asks a replica's process group to stop (SIGTERM).
func terminate(cmd *exec.Cmd) { signalGroup(cmd, syscall.SIGTERM) }

// kill ends what is left of a replica's process group (SIGKILL). The group's
// id is the leader's pid, which cannot be reused while any member lives, so
// this is safe after the leader has exited too.
func kill(cmd *exec.Cmd) { signalGroup(cmd, syscall.SIGKILL) }

// awaitGroup waits up to limit for a killed process group to be gone: SIGKILL
// is delivered at once but a member takes a moment to die, and Shutdown must
// not return while any still runs. The kernel gives no notice for processes
// that are not the agent's children, so it polls.
func awaitGroup(cmd *exec.Cmd, limit time.Duration) {
	if cmd.Process == nil {
		return
	}
	deadline := time.Now().Add(limit)
	for groupRuns(cmd.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// groupRuns reports whether a member of process group pgid still runs. A
// member that died but was never reaped (a zombie, as orphans stay under a PID
// 1 that does not reap, common in containers) does not run; /proc tells them
// apart where there is one.
func groupRuns(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it ended meanwhile
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		if f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}

// signalOf names the signal that ended a process ("SIGKILL"), "" when it exited.
func signalOf(st *os.ProcessState) string {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if name := unix.SignalName(ws.Signal()); name != "" {
			return name
		}
		return ws.Signal().String()
	}
	return ""
}
