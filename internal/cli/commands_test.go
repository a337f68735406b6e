package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	remote "github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

const commandsFile = `commands:
  - name: row-count
    description: rows in a table
    params:
      - {name: table, type: enum, values: [orders, users], required: true}
    output_limit: 16
    exec: {path: /usr/local/bin/row-count}
`

// agentAnswers plays deployment id's agent: it takes the invocation the
// manager has for it (waiting for the CLI to queue it) and reports it running
// and then final with res.
func agentAnswers(t *testing.T, lm *liveManager, id string, state remote.State, res *remote.Result) {
	t.Helper()
	ctx := context.Background()
	svc := lm.m.Commands()
	// The CLI queues the invocation on another goroutine; nothing tells this
	// one when, so it asks the manager as an agent would, until there is one.
	for range 1_000_000 {
		msg, sent := svc.Outgoing(ctx, id)
		if msg == nil {
			runtime.Gosched()
			continue
		}
		sent()
		invs, err := remote.DecodeInvocations(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, inv := range invs.Invocations {
			up := remote.Message(remote.MessageUpdate, remote.Updates{Updates: []remote.Update{
				{ID: inv.ID, State: remote.StateRunning, At: lm.clk.Now()}, {ID: inv.ID, State: state, At: lm.clk.Now(), Result: res}}})
			if ack := svc.Incoming(ctx, id, up); ack == nil {
				t.Fatalf("%s: the final update was not acked", id)
			}
		}
		return
	}
	t.Fatalf("%s: no invocation arrived", id)
}

// exec runs periscope exec on another goroutine and returns its outcome later.
func (lm *liveManager) execAsync(t *testing.T, args ...string) func() (string, error) {
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := lm.run(t, append([]string{"exec"}, args...)...)
		done <- result{out, err}
	}()
	return func() (string, error) { r := <-done; return r.out, r.err }
}

// A release declares commands from a file; exec runs one on a deployment and
// prints the result with its truncation noted; a refusal prints why and exits
// non-zero; a selection prints a table of outcomes; commands list, show and
// cancel read and change the invocations.
func TestExecAndCommands(t *testing.T) {
	lm := startManager(t)
	file := filepath.Join(t.TempDir(), "commands.yaml")
	if err := os.WriteFile(file, []byte(commandsFile), 0o600); err != nil {
		t.Fatal(err)
	}
	out := lm.mustRun(t, "releases", "create", "3.0", "--stack", "app", "--commands", file)
	contains(t, out, "Declares 1 command: row-count.")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("commands:\n  - name: x\n    shell: rm -rf /\n"), 0o600)
	if _, err := lm.run(t, "releases", "create", "3.1", "--stack", "app", "--commands", bad); err == nil || !strings.Contains(err.Error(), "shell") {
		t.Fatalf("a commands file with an unknown field: %v", err)
	}

	wait := lm.execAsync(t, "acme-prod", "row-count", "--param", "table=orders", "--reason", "ticket 5")
	zero := 0
	agentAnswers(t, lm, "acme-prod", remote.StateSucceeded, &remote.Result{ExitCode: &zero, Output: "orders: 1234567890", OutputBytes: 18})
	out, err := wait()
	if err != nil {
		t.Fatalf("exec: %v\n%s", err, out)
	}
	contains(t, out, "succeeded", "exit 0", "param table", "orders", "release-bot (operator): ticket 5", "output truncated: 16 of 18 bytes shown", "orders: 12345678\n")

	out, err = lm.run(t, "exec", "acme-prod", "drop-tables", "--reason", "oops")
	if !errors.Is(err, errNotSucceeded) {
		t.Fatalf("an undeclared command: %v, want a non-zero exit", err)
	}
	contains(t, out, "refused", "does not declare command drop-tables")
	if _, err := lm.run(t, "exec", "acme-prod", "row-count", "--param", "table=orders"); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Fatalf("no reason: %v", err)
	}

	// acme-prod and acme-dr run app (3.0 declares row-count); acme-db runs db.
	wait = lm.execAsync(t, "row-count", "--customer", "acme", "--param", "table=users", "--reason", "audit")
	one := 1
	agentAnswers(t, lm, "acme-prod", remote.StateSucceeded, &remote.Result{ExitCode: &zero, Output: "users: 3"})
	agentAnswers(t, lm, "acme-dr", remote.StateFailed, &remote.Result{ExitCode: &one, Output: "no such table"})
	out, err = wait()
	if !errors.Is(err, errNotSucceeded) || !strings.Contains(err.Error(), "2 of 3") {
		t.Fatalf("a selection where one failed and one was refused: %v\n%s", err, out)
	}
	contains(t, out, "DEPLOYMENT", "acme-prod   succeeded", "users: 3", "acme-dr     failed", "exit 1", "no such table", "acme-db     refused")

	out = lm.mustRun(t, "commands", "list", "--deployment", "acme-prod", "--state", "succeeded")
	contains(t, out, "row-count", "ticket 5", "audit")
	inv, err := lm.api.RunCommand(context.Background(), "globex", apitypes.NewInvocation{Command: "row-count", Params: map[string]any{"table": "orders"}, Reason: "later"})
	if err != nil || inv.State != remote.StateQueued {
		t.Fatalf("queue for globex: %+v, %v", inv, err)
	}
	contains(t, lm.mustRun(t, "commands", "show", inv.ID), "queued", "globex")
	contains(t, lm.mustRun(t, "commands", "cancel", inv.ID, "--reason", "not needed"), "cancelled")
	if _, err := lm.run(t, "commands", "cancel", inv.ID, "--reason", "again"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("cancelling twice: %v, want the manager's 409", err)
	}
}
