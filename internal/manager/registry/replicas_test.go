package registry_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// replica is one of two registries sharing a store, with what it told its
// push connections and its notifier.
type replica struct {
	reg     *registry.Registry
	mu      sync.Mutex
	desired []string
	events  []fleet.Event
}

func (r *replica) pushed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.desired
	r.desired = nil
	return out
}

func (r *replica) observed() []fleet.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// twoReplicas starts two registries over one store, syncing only when a test
// says so; a leads.
func twoReplicas(t *testing.T, clk *clock.Fake) (a, b *replica) {
	t.Helper()
	ctx := context.Background()
	st, err := duckdb.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	start := func() *replica {
		r := &replica{}
		r.reg, err = registry.New(st, registry.Settings{Clock: clk, FlushInterval: time.Hour, EvalInterval: time.Hour, SyncInterval: time.Hour,
			Params: fleet.Params{HeartbeatInterval: time.Second, StaleAfter: 10 * time.Second},
			OnDesiredChange: func(ids []string) {
				r.mu.Lock()
				r.desired = append(r.desired, ids...)
				r.mu.Unlock()
			},
			OnEvent: func(e fleet.Event) {
				r.mu.Lock()
				r.events = append(r.events, e)
				r.mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.reg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.reg.Shutdown(ctx) })
		return r
	}
	a, b = start(), start()
	a.reg.SetLeader(true)
	return a, b
}

func syncOK(t *testing.T, r *replica) {
	t.Helper()
	if err := r.reg.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func flushOK(t *testing.T, r *replica) {
	t.Helper()
	if err := r.reg.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// What one replica writes, the other reads at its next sync: new deployments
// and releases, check-ins later than its own, and pins, which it offers its
// push connections as if made locally.
func TestReplicasFollowEachOthersWrites(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	a, b := twoReplicas(t, clk)
	if _, err := a.reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "d1", Stack: "app"}}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0", "1.1"} {
		if _, err := a.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	syncOK(t, b)
	v, err := b.reg.Get("d1")
	if err != nil {
		t.Fatalf("B does not know the deployment A created: %v", err)
	}
	if v.Evaluation.Desired != "1.1" {
		t.Fatalf("B desires %q for d1, want the latest release A published, 1.1", v.Evaluation.Desired)
	}

	// The agent checks in with B; A reads it.
	clk.Advance(time.Second)
	push := fleet.ModePush
	if _, err := b.reg.Checkin("d1", registry.Report{Mode: push, Description: &registry.Description{Release: "1.1", AgentVersion: "0.9"}}); err != nil {
		t.Fatal(err)
	}
	flushOK(t, b)
	syncOK(t, a)
	if v, _ := a.reg.Get("d1"); !v.Deployment.LastCheckin.Equal(t0.Add(time.Second)) || !v.Deployment.Connected || v.Deployment.RunningRelease != "1.1" {
		t.Fatalf("A's view after B heard the agent: last check-in %v, connected %v, release %q", v.Deployment.LastCheckin, v.Deployment.Connected, v.Deployment.RunningRelease)
	}

	// A pin made on A reaches B's push connection.
	b.pushed()
	if _, err := a.reg.Pin(ctx, registry.PinRequest{Action: fleet.ActionPin, Release: "1.0", Reason: "incident", By: "ops", Select: registry.Selector{IDs: []string{"d1"}}}); err != nil {
		t.Fatal(err)
	}
	syncOK(t, b)
	if got := b.pushed(); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("B offered %v to its push connections after A's pin, want d1", got)
	}
	if v, _ := b.reg.Get("d1"); v.Deployment.Pin == nil || v.Evaluation.Desired != "1.0" {
		t.Fatalf("B's view after A's pin: pin %+v, desired %q", v.Deployment.Pin, v.Evaluation.Desired)
	}

	// A later check-in heard here is not undone by an older one read from the
	// store, and the pin is not undone by B's flush of its older copy.
	clk.Advance(time.Second)
	if _, err := a.reg.Checkin("d1", registry.Report{Mode: fleet.ModePull}); err != nil {
		t.Fatal(err)
	}
	flushOK(t, b)
	syncOK(t, a)
	v, _ = a.reg.Get("d1")
	if !v.Deployment.LastCheckin.Equal(t0.Add(2*time.Second)) || v.Deployment.Mode != fleet.ModePull {
		t.Fatalf("A's own later check-in was undone by an older one: last check-in %v, mode %s", v.Deployment.LastCheckin, v.Deployment.Mode)
	}
	flushOK(t, a)
	syncOK(t, b)
	if v, _ := b.reg.Get("d1"); v.Deployment.Mode != fleet.ModePull || v.Deployment.Pin == nil {
		t.Fatalf("B after A's later check-in: mode %s, pin %+v", v.Deployment.Mode, v.Deployment.Pin)
	}
}

// Only the leader records a status change, so a deployment going stale is
// recorded (and notified) once however many replicas see it.
func TestOnlyTheLeaderRecordsStatusChanges(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	a, b := twoReplicas(t, clk)
	if _, err := b.reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "d1", Stack: "app"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.reg.Checkin("d1", registry.Report{Mode: fleet.ModePull, Description: &registry.Description{Release: "1.0"}}); err != nil {
		t.Fatal(err)
	}
	flushOK(t, b)
	syncOK(t, a)
	clk.Advance(time.Minute)
	// Both evaluate (reading events makes each record what it sees).
	if _, err := b.reg.Events(ctx, "d1", 10); err != nil {
		t.Fatal(err)
	}
	evs, err := a.reg.Events(ctx, "d1", 10)
	if err != nil {
		t.Fatal(err)
	}
	stale := 0
	for _, e := range evs {
		if e.To == fleet.StatusStale {
			stale++
		}
	}
	if stale != 1 {
		t.Fatalf("stale recorded %d times (%+v), want once", stale, evs)
	}
	for _, e := range b.observed() {
		if e.To == fleet.StatusStale {
			t.Errorf("the follower told its notifier %+v", e)
		}
	}
	if v, _ := b.reg.Get("d1"); v.Evaluation.Status != fleet.StatusStale {
		t.Errorf("the follower shows %s, want stale like the leader", v.Evaluation.Status)
	}
}
