package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

var t0 = time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)

// fleet is a fixed set of command targets.
type fleet map[string]registry.CommandTarget

func (f fleet) CommandTargets(sel registry.Selector) ([]registry.CommandTarget, error) {
	var out []registry.CommandTarget
	for _, id := range sel.IDs {
		t, ok := f[id]
		if !ok {
			return nil, registry.ErrNotFound
		}
		out = append(out, t)
	}
	if len(sel.IDs) == 0 {
		for _, id := range []string{"push", "poll", "closed", "picky"} {
			if t, ok := f[id]; ok && (sel.Filter.Customer == "" || sel.Filter.Customer == t.Customer) {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// auditLog reads the store's audit log, where the service's entries are
// written with the changes they record.
type auditLog struct{ st *duckdb.Store }

func (a auditLog) find(action, outcome, dep string) *store.AuditEntry {
	es, _, err := a.st.ListAudit(context.Background(), store.AuditFilter{Action: action, Outcome: outcome, DeploymentID: dep, Limit: 100})
	if err != nil || len(es) == 0 {
		return nil
	}
	return &es[0]
}

var specs = []command.Spec{
	{Name: "row-count", Timeout: command.Duration(time.Minute), OutputLimit: 8, Exec: &command.ExecHandler{Path: "/bin/count"},
		Params: []command.Param{{Name: "table", Type: command.TypeEnum, Values: []string{"orders", "users"}, Required: true}}},
	{Name: "flush", HTTP: &command.HTTPHandler{URL: "http://localhost:8080/flush"}},
}

type fixture struct {
	svc    *commands.Service
	st     *duckdb.Store
	clk    *clock.Fake
	audit  auditLog
	mu     sync.Mutex
	pushed []string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st, err := duckdb.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, clk: clock.NewFake(t0), audit: auditLog{st}}
	fl := fleet{
		"push":   {ID: "push", Customer: "acme", Release: "2.0", Commands: specs},
		"poll":   {ID: "poll", Customer: "acme", Release: "2.0", Commands: specs, Rule: &command.Rule{}},
		"closed": {ID: "closed", Customer: "globex", Release: "2.0", Commands: specs, Rule: &command.Rule{Disabled: true}},
		"picky":  {ID: "picky", Customer: "initech", Release: "2.0", Commands: specs, Rule: &command.Rule{Allow: []string{"flush"}}},
		"old":    {ID: "old", Customer: "acme", Release: "1.0"},
	}
	f.svc, err = commands.New(st, fl, commands.Settings{Clock: f.clk, Rand: rand.NewChaCha8([32]byte{1}),
		Push: func(_ context.Context, ids []string) {
			f.mu.Lock()
			f.pushed = append(f.pushed, ids...)
			f.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) invoke(t *testing.T, ids []string, cmd string, params map[string]any) map[string]store.Invocation {
	t.Helper()
	invs, err := f.svc.Invoke(context.Background(), commands.Request{Actor: commands.Actor{Name: "alice", Role: "operator"},
		Select: registry.Selector{IDs: ids}, Command: cmd, Params: params, Reason: "ticket 7"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Invocation{}
	for _, inv := range invs {
		out[inv.DeploymentID] = inv
	}
	return out
}

func update(ups ...command.Update) *protobufs.CustomMessage {
	return command.Message(command.MessageUpdate, command.Updates{Updates: ups})
}

func acked(t *testing.T, msg *protobufs.CustomMessage) []string {
	t.Helper()
	if msg == nil {
		return nil
	}
	a, err := command.DecodeAck(msg.Data)
	if err != nil || msg.Type != command.MessageAck {
		t.Fatalf("reply %s: %v", msg.Type, err)
	}
	return a.IDs
}

// Before anything is queued, each target is checked: declared by its release,
// allowed by its customer, parameters within the schema. What fails is stored
// refused with the reason and audited as refused; the rest is queued, audited
// and pushed.
func TestInvokeChecksEachTargetBeforeQueuing(t *testing.T) {
	f := newFixture(t)
	got := f.invoke(t, []string{"push", "poll", "closed", "picky", "old"}, "row-count", map[string]any{"table": "orders"})
	want := map[string]string{
		"push":   "",
		"poll":   "",
		"closed": "the customer has disabled commands",
		"picky":  "the customer allows only [flush]",
		"old":    "release 1.0 does not declare command row-count",
	}
	for id, why := range want {
		inv := got[id]
		if why == "" {
			if inv.State != command.StateQueued || !inv.Deadline.Equal(t0.Add(time.Minute+commands.DefaultDeliveryAllowance)) {
				t.Errorf("%s: %s (deadline %v), want queued", id, inv.State, inv.Deadline)
			}
			if e := f.audit.find(store.ActionCommandInvoke, "queued", id); e == nil || e.Actor != "alice" || e.ActorRole != "operator" ||
				e.Reason != "ticket 7" || e.Target != "row-count" || !strings.Contains(e.Detail, inv.ID) || !strings.Contains(e.Detail, `"table":"orders"`) {
				t.Errorf("%s: audit entry %+v", id, e)
			}
			continue
		}
		if inv.State != command.StateRefused || !strings.Contains(inv.StateReason, why) {
			t.Errorf("%s: %s %q, want refused with %q", id, inv.State, inv.StateReason, why)
		}
		if e := f.audit.find(store.ActionCommandInvoke, "refused", id); e == nil || !strings.Contains(e.Detail, why) {
			t.Errorf("%s: refusal audit entry %+v", id, e)
		}
	}
	if slices.Sort(f.pushed); !slices.Equal(f.pushed, []string{"poll", "push"}) {
		t.Errorf("pushed %v, want the two queued", f.pushed)
	}
	bad := f.invoke(t, []string{"push"}, "row-count", map[string]any{"table": "secrets", "x": []any{1, 2}})["push"]
	if bad.State != command.StateRefused || !strings.Contains(bad.StateReason, "x") || bad.Params["table"] != "secrets" || bad.Params["x"] != "(a []interface {})" {
		t.Errorf("parameters outside the schema: %s %q, params kept %v", bad.State, bad.StateReason, bad.Params)
	}
	if c := f.invoke(t, []string{"closed"}, "row-count", map[string]any{"table": "secrets"})["closed"]; !strings.Contains(c.StateReason, "disabled") {
		t.Errorf("a disabled deployment with bad parameters: %q, want the customer's refusal first", c.StateReason)
	}
	if _, err := f.svc.Invoke(context.Background(), commands.Request{Select: registry.Selector{IDs: []string{"push"}}, Command: "flush"}); !errors.Is(err, commands.ErrInvalid) {
		t.Errorf("no reason: err = %v, want ErrInvalid", err)
	}
	// Stored as returned.
	st, err := f.svc.Get(context.Background(), got["closed"].ID)
	if err != nil || st.State != command.StateRefused || st.Actor != "alice" {
		t.Errorf("stored refused invocation = %+v, %v", st, err)
	}
}

// A queued invocation goes out once, comes back through its states, and its
// final result is stored, acked and audited; another deployment cannot touch
// it, and nothing moves it backwards.
func TestInvocationLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	inv := f.invoke(t, []string{"poll"}, "row-count", map[string]any{"table": "users"})["poll"]

	msg, sent := f.svc.Outgoing(ctx, "poll")
	if msg == nil || msg.Type != command.MessageInvoke {
		t.Fatalf("outgoing = %v", msg)
	}
	body, err := command.DecodeInvocations(msg.Data)
	if err != nil || len(body.Invocations) != 1 || body.Invocations[0].ID != inv.ID || body.Invocations[0].By != "alice" ||
		command.String(body.Invocations[0].Params["table"]) != "users" {
		t.Fatalf("invocations = %+v, %v", body, err)
	}
	// The declaration travels with it, for an agent that takes no offers.
	if sp := body.Invocations[0].Spec; sp == nil || sp.Name != "row-count" || sp.Exec == nil {
		t.Fatalf("the invocation carries declaration %+v, want row-count's", sp)
	}
	sent()
	if again, _ := f.svc.Outgoing(ctx, "poll"); again != nil {
		t.Fatal("a delivered invocation was sent again at once")
	}
	if other, _ := f.svc.Outgoing(ctx, "push"); other != nil {
		t.Fatal("another deployment was sent poll's invocation")
	}

	f.clk.Advance(time.Second)
	if r := f.svc.Incoming(ctx, "poll", update(command.Update{ID: inv.ID, State: command.StateRunning, At: f.clk.Now()})); r != nil {
		t.Fatalf("a running update was acked: %v", r)
	}
	// Another deployment reports poll's invocation done: nothing changes.
	exit := 0
	res := &command.Result{ExitCode: &exit, Output: "12345678901234", OutputBytes: 14, Duration: time.Second}
	if ids := acked(t, f.svc.Incoming(ctx, "push", update(command.Update{ID: inv.ID, State: command.StateSucceeded, Result: res}))); !slices.Equal(ids, []string{inv.ID}) {
		t.Fatalf("foreign final update acked %v", ids)
	}
	if got, _ := f.svc.Get(ctx, inv.ID); got.State != command.StateRunning {
		t.Fatalf("another deployment moved poll's invocation to %s", got.State)
	}

	f.clk.Advance(time.Second)
	ids := acked(t, f.svc.Incoming(ctx, "poll", update(command.Update{ID: inv.ID, State: command.StateSucceeded, At: f.clk.Now(), Result: res})))
	if !slices.Equal(ids, []string{inv.ID}) {
		t.Fatalf("acked %v", ids)
	}
	got, _ := f.svc.Get(ctx, inv.ID)
	if got.State != command.StateSucceeded || got.Output != "12345678" || !got.Truncated || got.OutputBytes != 14 || got.ExitCode == nil ||
		got.DeliveredAt.IsZero() || !got.StartedAt.Equal(t0.Add(time.Second)) || !got.FinishedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("stored = %+v (output over the declared limit must be cut and marked)", got)
	}
	e := f.audit.find(store.ActionCommandResult, "succeeded", "poll")
	if e == nil || e.Actor != "alice" || !strings.Contains(e.Detail, `"reported_by":"agent:poll"`) || !strings.Contains(e.Detail, `"output_bytes":14`) || !strings.Contains(e.Detail, got.OutputSHA256) {
		t.Fatalf("result audit = %+v", e)
	}
	// A resent final update is acked again, changes nothing.
	if ids := acked(t, f.svc.Incoming(ctx, "poll", update(command.Update{ID: inv.ID, State: command.StateFailed}))); len(ids) != 1 {
		t.Fatalf("resent update acked %v", ids)
	}
	if got, _ := f.svc.Get(ctx, inv.ID); got.State != command.StateSucceeded {
		t.Fatalf("a late update moved a succeeded invocation to %s", got.State)
	}
}

// Invocations past their deadline end expired; only queued ones can be
// cancelled; waiters wake when an invocation ends.
func TestExpiryCancelAndWait(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.invoke(t, []string{"poll"}, "flush", nil)["poll"]
	b := f.invoke(t, []string{"push"}, "flush", nil)["push"]
	_, sent := f.svc.Outgoing(ctx, "push")
	sent()

	if _, err := f.svc.Cancel(ctx, commands.Actor{Name: "bob", Role: "operator"}, b.ID, "wrong target"); !errors.Is(err, commands.ErrConflict) {
		t.Fatalf("cancelling a delivered invocation: err = %v, want ErrConflict", err)
	}
	waited := make(chan store.Invocation)
	go func() {
		inv, _ := f.svc.Wait(ctx, a.ID)
		waited <- inv
	}()
	got, err := f.svc.Cancel(ctx, commands.Actor{Name: "bob", Role: "operator"}, a.ID, "wrong target")
	if err != nil || got.State != command.StateCancelled {
		t.Fatalf("cancel queued = %+v, %v", got, err)
	}
	if w := <-waited; w.State != command.StateCancelled {
		t.Fatalf("waiter saw %s", w.State)
	}
	if e := f.audit.find(store.ActionCommandCancel, "cancelled", "poll"); e == nil || e.Actor != "bob" || e.Reason != "wrong target" {
		t.Fatalf("cancel audit = %+v", e)
	}

	f.clk.Advance(30*time.Second + commands.DefaultDeliveryAllowance - time.Second)
	if n, err := f.svc.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before the deadline expired %d, %v", n, err)
	}
	f.clk.Advance(time.Second)
	if n, err := f.svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep at the deadline expired %d, %v", n, err)
	}
	if got, _ := f.svc.Get(ctx, b.ID); got.State != command.StateExpired {
		t.Fatalf("past its deadline: %s", got.State)
	}
	if e := f.audit.find(store.ActionCommandResult, "expired", "push"); e == nil || e.Actor != "alice" || !strings.Contains(e.Detail, `"reported_by":"periscope"`) {
		t.Fatalf("expiry audit = %+v", e)
	}
}

// FuzzCommandUpdates sends hostile update bodies from one deployment: the
// handler never panics, never moves an invocation backwards, and never stores
// anything on another deployment's invocation.
func FuzzCommandUpdates(f *testing.F) {
	seed := func(ups ...command.Update) {
		b, _ := json.Marshal(command.Updates{Updates: ups})
		f.Add(b)
	}
	exit := 1
	seed(command.Update{ID: "INV", State: command.StateRunning})
	seed(command.Update{ID: "INV", State: command.StateSucceeded, Result: &command.Result{ExitCode: &exit, Output: strings.Repeat("x", 100), OutputBytes: -1}})
	seed(command.Update{ID: "FOREIGN", State: command.StateFailed, Reason: "nope"})
	seed(command.Update{ID: "INV", State: command.StateDelivered}, command.Update{ID: "INV", State: command.StateQueued})
	f.Add([]byte(`{"updates":[{"id":"INV","state":"cancelled","at":"9999-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"updates":null}`))
	f.Add([]byte(`{`))

	fx := newFixture(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		own := fx.invoke(t, []string{"poll"}, "flush", nil)["poll"]
		foreign := fx.invoke(t, []string{"push"}, "flush", nil)["push"]
		body := strings.NewReplacer("INV", own.ID, "FOREIGN", foreign.ID).Replace(string(data))
		before, _ := fx.svc.Get(ctx, own.ID)
		fx.svc.Incoming(ctx, "poll", &protobufs.CustomMessage{Capability: command.Capability, Type: command.MessageUpdate, Data: []byte(body)})
		after, err := fx.svc.Get(ctx, own.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.State != before.State && !after.State.Follows(before.State) {
			t.Fatalf("moved %s → %s", before.State, after.State)
		}
		if len(after.Output) > 256<<10 {
			t.Fatalf("stored %d bytes of output", len(after.Output))
		}
		if got, _ := fx.svc.Get(ctx, foreign.ID); got.State != command.StateQueued || got.Output != "" {
			t.Fatalf("poll's update changed push's invocation: %+v", got)
		}
	})
}

// countingStore is the real store, counting the per-deployment reads of
// pending invocations that every check-in would otherwise make.
type countingStore struct {
	*duckdb.Store
	mu    sync.Mutex
	reads []string
}

func (c *countingStore) PendingInvocations(ctx context.Context, id string) ([]store.Invocation, error) {
	c.mu.Lock()
	c.reads = append(c.reads, id)
	c.mu.Unlock()
	return c.Store.PendingInvocations(ctx, id)
}

// After a manager starts, the first check-in of each of its deployments asks
// for commands: only the ones with something pending may cost a store read
// (with 100,000 agents checking in after a restart, a read each kept the
// embedded store busy), and nothing pending may be missed, whether it was
// queued before the start, after it, or on another replica.
func TestStartReadsPendingCommandsOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	before := f.invoke(t, []string{"poll"}, "row-count", map[string]any{"table": "users"})["poll"]

	cs := &countingStore{Store: f.st}
	fl := fleet{
		"push": {ID: "push", Customer: "acme", Release: "2.0", Commands: specs},
		"poll": {ID: "poll", Customer: "acme", Release: "2.0", Commands: specs, Rule: &command.Rule{}},
		"old":  {ID: "old", Customer: "acme", Release: "1.0"},
	}
	restarted, err := commands.New(cs, fl, commands.Settings{Clock: f.clk, Rand: rand.NewChaCha8([32]byte{2})})
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer restarted.Shutdown(ctx)

	for _, id := range []string{"push", "old", "never-seen"} {
		if msg, _ := restarted.Outgoing(ctx, id); msg != nil {
			t.Fatalf("%s was sent %s with nothing pending", id, msg.Type)
		}
	}
	if len(cs.reads) != 0 {
		t.Fatalf("check-ins with nothing pending read the store for %v", cs.reads)
	}
	msg, _ := restarted.Outgoing(ctx, "poll")
	body, err := decodeOrNil(msg)
	if err != nil || len(body.Invocations) != 1 || body.Invocations[0].ID != before.ID {
		t.Fatalf("poll's invocation queued before the start: got %+v, %v", body, err)
	}

	// Queued here after the start.
	invs, err := restarted.Invoke(ctx, commands.Request{Actor: commands.Actor{Name: "bob", Role: "operator"},
		Select: registry.Selector{IDs: []string{"push"}}, Command: "flush", Reason: "ticket 8"})
	if err != nil || len(invs) != 1 {
		t.Fatal(invs, err)
	}
	if body, err := decodeOrNil(first(restarted.Outgoing(ctx, "push"))); err != nil || len(body.Invocations) != 1 || body.Invocations[0].ID != invs[0].ID {
		t.Fatalf("push's invocation queued after the start: got %+v, %v", body, err)
	}
	// Queued on another replica (the fixture's service), then notified.
	elsewhere := f.invoke(t, []string{"poll"}, "flush", nil)["poll"]
	restarted.QueuedElsewhere(ctx, []string{"poll"})
	if body, err := decodeOrNil(first(restarted.Outgoing(ctx, "poll"))); err != nil || !slices.ContainsFunc(body.Invocations, func(i command.Invocation) bool { return i.ID == elsewhere.ID }) {
		t.Fatalf("poll's invocation queued on another replica: got %+v, %v", body, err)
	}
	// A replica that may have missed notifications forgets and reads afresh.
	cs.mu.Lock()
	cs.reads = nil
	cs.mu.Unlock()
	restarted.ForgetIdle(ctx)
	if msg, _ := restarted.Outgoing(ctx, "old"); msg != nil || len(cs.reads) != 0 {
		t.Fatalf("after forgetting, a deployment with nothing pending got %v and read the store for %v", msg, cs.reads)
	}
}

func first(msg *protobufs.CustomMessage, _ func()) *protobufs.CustomMessage { return msg }

func decodeOrNil(msg *protobufs.CustomMessage) (command.Invocations, error) {
	if msg == nil {
		return command.Invocations{}, errors.New("nothing was sent")
	}
	return command.DecodeInvocations(msg.Data)
}
