package record

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

// Every invocation the manager sends is in the customer's record: who asked,
// why, what ran and how it ended, refusals with their reason; the output's
// size and hash, never the output.
func TestCommandsAreRecordedAndSummarised(t *testing.T) {
	c := clock.NewFake(t0)
	dir := filepath.Join(t.TempDir(), DirName)
	r := open(t, Options{Dir: dir, Clock: c})
	zero := 0
	r.Command(CommandEvent{Event: CommandReceived, ID: "i1", Command: "db.rows", By: "alice", Why: "ticket 42", Params: map[string]string{"table": "orders"}, State: "delivered"})
	r.Command(CommandEvent{Event: CommandStarted, ID: "i1", Command: "db.rows", By: "alice", State: "running"})
	c.Advance(2 * time.Second)
	r.Command(CommandEvent{Event: CommandFinished, ID: "i1", Command: "db.rows", By: "alice", Why: "ticket 42", State: "succeeded",
		ExitCode: &zero, OutputBytes: 2048, OutputSHA256: strings.Repeat("ab", 32), Redacted: map[string]int{"password": 1}, DurationMS: 1500})
	r.Command(CommandEvent{Event: CommandReceived, ID: "i2", Command: "cache.flush", By: "bob", Why: "\x1b[31mred", State: "delivered"})
	r.Command(CommandEvent{Event: CommandRefused, ID: "i2", Command: "cache.flush", By: "bob", Why: "\x1b[31mred", State: "refused",
		Detail: "the customer has disabled commands on this deployment"})
	flush(t, r)

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), commandPrefix) {
			if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s is %v, want 0600", e.Name(), fi.Mode().Perm())
			}
		}
	}

	s := summarise(t, dir, t0.Add(-time.Hour), t0.Add(time.Hour))
	cm := s.Commands
	if cm.Events[CommandReceived] != 2 || cm.Events[CommandRefused] != 1 || cm.Events[CommandFinished] != 1 ||
		cm.States["succeeded"] != 1 || cm.States["refused"] != 1 || len(cm.Recent) != 5 {
		t.Fatalf("commands summary %+v", cm)
	}
	if got := cm.Recent[0]; got.Params["table"] != "orders" || got.Why != "ticket 42" {
		t.Errorf("first event %+v lost who asked and why", got)
	}
	var b strings.Builder
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"It received 2 remote commands from the manager: 1 refused and 1 succeeded.",
		`db.rows i1 by alice ("ticket 42"): succeeded, exit 0, 2.0 kB of output, sha256 abababababab…, 1.5s`,
		`cache.flush i2 by bob ("\x1b[31mred"): refused — "the customer has disabled commands on this deployment"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\x1b") {
		t.Errorf("a hostile reason reached the terminal unquoted:\n%q", text)
	}
}
