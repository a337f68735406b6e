package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/store"
)

// testCommands checks the store.Commands contract: invocations come back whole
// across a reopen, move forward only and only for their own deployment, and the
// queries the command service starts from (pending, overdue, filtered pages)
// select and order as documented.
func testCommands(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	defer func() { s.Close() }()

	t0 := time.Date(2026, 12, 1, 9, 0, 0, 123456000, time.UTC)
	inv := func(id, dep, cmd string, at time.Time) store.Invocation {
		return store.Invocation{ID: id, DeploymentID: dep, Customer: "cust-" + dep, Command: cmd, Params: command.Params{"table": "orders", "limit": int64(5)},
			Reason: "ticket 42", Actor: "alice", ActorRole: "operator", State: command.StateQueued, QueuedAt: at, Deadline: at.Add(time.Minute)}
	}
	i1, i2, i3 := inv("i1", "a", "row-count", t0), inv("i2", "a", "flush", t0.Add(time.Second)), inv("i3", "b", "row-count", t0.Add(2*time.Second))
	refused := inv("i4", "b", "flush", t0.Add(3*time.Second))
	refused.State, refused.StateReason, refused.FinishedAt = command.StateRefused, "the customer has disabled commands", refused.QueuedAt
	if err := s.CreateInvocations(ctx, []store.Invocation{i1, i2, i3, refused}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateInvocations(ctx, []store.Invocation{inv("i5", "a", "x", t0), inv("i1", "a", "x", t0)}, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate id: err = %v, want ErrConflict", err)
	}
	if _, err := s.GetInvocation(ctx, "i5"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a batch with a conflict stored i5: err = %v", err)
	}

	// Forward moves only, and only through the invocation's own deployment.
	mv := i1
	mv.State, mv.DeliveredAt = command.StateDelivered, t0.Add(time.Second)
	if _, err := s.AdvanceInvocation(ctx, mv, nil); err != nil {
		t.Fatal(err)
	}
	other := mv
	other.DeploymentID, other.State = "b", command.StateSucceeded
	if _, err := s.AdvanceInvocation(ctx, other, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deployment b advanced a's invocation: err = %v, want ErrNotFound", err)
	}
	exit := 3
	done := i1
	done.State, done.StateReason, done.StartedAt, done.FinishedAt = command.StateFailed, "exit status 3", t0.Add(2*time.Second), t0.Add(4*time.Second)
	done.ExitCode, done.Output, done.Truncated, done.OutputBytes, done.OutputSHA256, done.Duration = &exit, "boom", true, 9000, "ab12", 2*time.Second
	done.Redacted = map[string]int{"email": 1}
	got, err := s.AdvanceInvocation(ctx, done, nil)
	if err != nil || got.State != command.StateFailed || !got.DeliveredAt.Equal(mv.DeliveredAt) || got.ExitCode == nil || *got.ExitCode != 3 {
		t.Fatalf("advance to failed = %+v, %v", got, err)
	}
	back := i1
	back.State = command.StateRunning
	if got, err := s.AdvanceInvocation(ctx, back, nil); !errors.Is(err, store.ErrConflict) || got.State != command.StateFailed {
		t.Fatalf("moving a failed invocation back to running: %+v, %v; want ErrConflict with the stored state", got, err)
	}
	if _, err := s.AdvanceInvocation(ctx, store.Invocation{ID: "nope", DeploymentID: "a", State: command.StateRunning}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown id: err = %v, want ErrNotFound", err)
	}

	s.Close()
	s = open(t, dir)
	got, err = s.GetInvocation(ctx, "i1")
	if err != nil {
		t.Fatal(err)
	}
	params, _ := json.Marshal(got.Params)
	if got.State != command.StateFailed || got.Reason != "ticket 42" || got.Actor != "alice" || got.ActorRole != "operator" || got.Customer != "cust-a" ||
		string(params) != `{"limit":5,"table":"orders"}` || !got.QueuedAt.Equal(t0) || !got.Deadline.Equal(t0.Add(time.Minute)) ||
		!got.StartedAt.Equal(done.StartedAt) || !got.FinishedAt.Equal(done.FinishedAt) || got.Output != "boom" || !got.Truncated ||
		got.OutputBytes != 9000 || got.OutputSHA256 != "ab12" || got.Duration != 2*time.Second || got.Redacted["email"] != 1 || got.StateReason != "exit status 3" {
		t.Fatalf("invocation after reopen = %+v (params %s)", got, params)
	}

	if got, err := s.CancelInvocation(ctx, "i1", "no longer needed", t0, nil); !errors.Is(err, store.ErrConflict) || got.State != command.StateFailed {
		t.Fatalf("cancelling a failed invocation: %+v, %v; want ErrConflict", got.State, err)
	}
	if _, err := s.CancelInvocation(ctx, "nope", "x", t0, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancelling an unknown invocation: err = %v, want ErrNotFound", err)
	}
	pend, err := s.PendingInvocations(ctx, "a")
	if err != nil || len(pend) != 1 || pend[0].ID != "i2" {
		t.Fatalf("pending of a = %+v, %v; want i2", pend, err)
	}
	// a has i2 queued and b has i3; i1 failed and i4 was refused.
	deps, err := s.PendingDeployments(ctx)
	slices.Sort(deps)
	if err != nil || !slices.Equal(deps, []string{"a", "b"}) {
		t.Fatalf("deployments with pending invocations = %v, %v; want [a b]", deps, err)
	}
	over, err := s.OverdueInvocations(ctx, t0.Add(time.Minute+time.Second), 10)
	if err != nil || len(over) != 1 || over[0].ID != "i2" {
		t.Fatalf("overdue = %+v, %v; want i2 only (i1 is final, i3 not yet due)", over, err)
	}

	// Pages, newest first, with filters.
	page, next, err := s.ListInvocations(ctx, store.InvocationFilter{Limit: 2})
	if err != nil || len(page) != 2 || page[0].ID != "i4" || page[1].ID != "i3" || next == "" {
		t.Fatalf("first page = %v, %q, %v", ids(page), next, err)
	}
	page, next, err = s.ListInvocations(ctx, store.InvocationFilter{Limit: 2, After: next})
	if err != nil || len(page) != 2 || page[0].ID != "i2" || page[1].ID != "i1" || next != "" {
		t.Fatalf("second page = %v, %q, %v", ids(page), next, err)
	}
	for name, c := range map[string]struct {
		f    store.InvocationFilter
		want string
	}{
		"deployment": {store.InvocationFilter{DeploymentID: "b"}, "i4 i3"},
		"customer":   {store.InvocationFilter{Customer: "cust-a"}, "i2 i1"},
		"command":    {store.InvocationFilter{Command: "row-count"}, "i3 i1"},
		"state":      {store.InvocationFilter{State: command.StateRefused}, "i4"},
		"since":      {store.InvocationFilter{Since: t0.Add(2 * time.Second)}, "i4 i3"},
	} {
		page, _, err := s.ListInvocations(ctx, c.f)
		if err != nil || ids(page) != c.want {
			t.Errorf("%s: %q, %v; want %q", name, ids(page), err, c.want)
		}
	}
	cx := inv("i6", "c", "flush", t0.Add(-time.Hour))
	if err := s.CreateInvocations(ctx, []store.Invocation{cx}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CancelInvocation(ctx, "i6", "no longer needed", t0.Add(time.Second), nil); err != nil || got.State != command.StateCancelled ||
		got.StateReason != "no longer needed" || !got.FinishedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("cancel queued = %+v, %v", got, err)
	}

	// A change's audit entries are written with it, built from the invocation
	// as stored, and not at all when the change does not happen.
	entry := func(action string) store.AuditFunc {
		return func(inv store.Invocation) []store.AuditEntry {
			return []store.AuditEntry{{At: t0, Actor: inv.Actor, Action: action, DeploymentID: inv.DeploymentID, Outcome: string(inv.State), Reason: inv.Reason}}
		}
	}
	a1, a2 := inv("i7", "d", "flush", t0), inv("i8", "d", "flush", t0)
	if err := s.CreateInvocations(ctx, []store.Invocation{a1, a2}, []store.AuditEntry{{At: t0, Actor: "alice", Action: "command.invoke", DeploymentID: "d", Outcome: "queued"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AdvanceInvocation(ctx, store.Invocation{ID: "i7", DeploymentID: "d", State: command.StateFailed, FinishedAt: t0}, entry("command.result")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AdvanceInvocation(ctx, store.Invocation{ID: "i7", DeploymentID: "d", State: command.StateSucceeded}, entry("command.result")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second final state: %v", err)
	}
	if _, err := s.CancelInvocation(ctx, "i8", "oops", t0, entry("command.cancel")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelInvocation(ctx, "i8", "again", t0, entry("command.cancel")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second cancel: %v", err)
	}
	log, _, err := s.ListAudit(ctx, store.AuditFilter{DeploymentID: "d", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range log {
		seen = append(seen, e.Action+"/"+e.Outcome+"/"+e.Actor+"/"+e.Reason)
	}
	want := map[string]bool{"command.invoke/queued/alice/": true, "command.result/failed/alice/ticket 42": true, "command.cancel/cancelled/alice/ticket 42": true}
	if len(seen) != len(want) {
		t.Fatalf("audit log %q, want one entry per change that happened: %v", seen, want)
	}
	for _, g := range seen {
		if !want[g] {
			t.Errorf("unexpected audit entry %q (all: %q)", g, seen)
		}
	}
}

func ids(invs []store.Invocation) string {
	out := ""
	for i, inv := range invs {
		if i > 0 {
			out += " "
		}
		out += inv.ID
	}
	return out
}

// testCommandsRacing moves the same invocations from several goroutines at
// once, as the push of an invocation and the agent's quick result do: every
// move either happens or is refused with ErrConflict because another got
// there first, never fails otherwise (DuckDB reports a write-write conflict
// on one row as an error of its own), and the invocation ends in the state
// that is furthest along.
func testCommandsRacing(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	const n = 20
	var invs []store.Invocation
	for i := range n {
		invs = append(invs, store.Invocation{ID: "race-" + string(rune('a'+i)), DeploymentID: "a", Customer: "cust-a", Command: "row-count",
			Params: command.Params{}, Reason: "r", Actor: "alice", ActorRole: "operator", State: command.StateQueued, QueuedAt: t0, Deadline: t0.Add(time.Minute)})
	}
	if err := s.CreateInvocations(ctx, invs, nil); err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	errs := make(chan error, 3*n)
	var wg sync.WaitGroup
	for _, inv := range invs {
		for _, st := range []command.State{command.StateDelivered, command.StateRunning, command.StateSucceeded} {
			mv := inv
			mv.State, mv.DeliveredAt = st, t0.Add(time.Second)
			if st != command.StateDelivered {
				mv.StartedAt = t0.Add(2 * time.Second)
			}
			if st == command.StateSucceeded {
				mv.FinishedAt = t0.Add(3 * time.Second)
			}
			wg.Go(func() {
				<-start
				if _, err := s.AdvanceInvocation(ctx, mv, nil); err != nil && !errors.Is(err, store.ErrConflict) {
					errs <- err
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a move racing others failed: %v", err)
	}
	for _, inv := range invs {
		got, err := s.GetInvocation(ctx, inv.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != command.StateSucceeded {
			t.Errorf("invocation %s ended %s after racing moves to delivered, running and succeeded; want succeeded", inv.ID, got.State)
		}
	}
}
