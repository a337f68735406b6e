//go:build unix

package commands

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/testenv/crashtest"
)

// TestRunnerCrashChild runs a command that never ends and reports every
// update it sends, until its parent kills it with SIGKILL.
func TestRunnerCrashChild(t *testing.T) {
	dir, ok := crashtest.Child()
	if !ok {
		t.Skip("runs only as the child of a crash test")
	}
	ready := filepath.Join(dir, "ready")
	if err := syscall.Mkfifo(ready, 0o600); err != nil {
		crashtest.Fail(err)
	}
	e := startWith(t, dir, command.Rule{}, []string{readyEnv + "=" + ready}, helperSpec(t, "hang", "sleep"))
	go func() {
		for u := range e.sink.ch {
			crashtest.Report("update", u.ID, u.State)
		}
	}()
	e.r.Invoke([]command.Invocation{inv("i1", "hang", nil)})
	// Opening the FIFO waits for the executable to open its end: it runs.
	b, err := os.ReadFile(ready)
	if err != nil {
		crashtest.Fail(err)
	}
	crashtest.Report("executable", strings.TrimSpace(string(b)))
	crashtest.Hold()
}

func TestKilledWhileRunningIsNotRunAgainAndEndsFailed(t *testing.T) {
	dir := t.TempDir()
	p := crashtest.Start(t, "TestRunnerCrashChild", dir)
	// The executable runs, so its start is in the journal (written first).
	p.Await(t, "executable ready")
	p.Kill(t)

	e := start(t, dir, command.Rule{})
	u := e.sink.await(t, "i1", command.StateFailed)
	if u.Reason != ReasonInterrupted {
		t.Errorf("reason %q, want %q", u.Reason, ReasonInterrupted)
	}
	if evs := e.rec.all(); len(evs) != 1 || evs[0].Kind != "finished" || evs[0].Invocation.Command != "hang" || evs[0].Invocation.By != "alice" {
		t.Errorf("the customer's record holds %+v, want the interrupted invocation, named", evs)
	}
	if runs := e.runCount(t); runs != 1 {
		t.Fatalf("the executable ran %d times before the kill, want once", runs)
	}
	// The manager, not knowing, delivers it again: it is not run again.
	e.r.Invoke([]command.Invocation{inv("i1", "hang", nil)})
	again := e.sink.await(t, "i1", command.StateFailed)
	if !strings.Contains(again.Reason, "not run again") {
		t.Errorf("re-delivered: reason %q", again.Reason)
	}
	e.r.wg.Wait()
	if n := e.runCount(t); n != 1 {
		t.Errorf("the executable ran %d times after the restart", n-1)
	}
}
