package opamp

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/desired"
)

func TestCommandHookTimeoutKillsItsChildren(t *testing.T) {
	needShell(t)
	m := newFakeManager(t)
	// The child ignores SIGTERM, so only the SIGKILL after the grace period ends it.
	a := startAgent(t, m, "websocket", "", func(c *config.Agent) {
		c.Update.Command = `sh -c 'trap "" TERM; echo $$ > "$HOOKDIR/child.pid"; exec sleep 30' & wait`
		c.Update.Timeout = config.Duration(500 * time.Millisecond)
	})
	hash := m.setOffer(t, desired.Offer{Release: "2.0.0"})
	st := m.waitStatus(t, hash, statusFailed)
	if !strings.HasPrefix(st.ErrorMessage, "update hook timed out after 500ms") {
		t.Errorf("error = %q, want it to name the timeout", st.ErrorMessage)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(a.dir, "child.pid"))))
	if err != nil {
		t.Fatalf("the hook's child never started: %v", err)
	}
	if !exits(t, pid, 5*time.Second) {
		t.Fatalf("the hook's child %d still runs 5s after the timeout", pid)
	}
}

// exits reports whether process pid ends (or has ended) within d. The process is
// not ours to wait for, so it is watched through a pidfd, which becomes readable
// when the process exits, zombie or reaped.
func exits(t *testing.T, pid int, d time.Duration) bool {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return true // gone already
	case errors.Is(err, unix.ENOSYS):
		t.Skip("pidfd_open needs Linux 5.3")
	case err != nil:
		t.Fatal(err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(d.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
}
