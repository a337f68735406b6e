package rollouts

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// watchedStore runs watch before every rollout update it stores, while the
// engine is in the middle of a change: what Decide answers then is what a
// check-in arriving at that moment would be offered.
type watchedStore struct {
	*memStore
	mu    sync.Mutex
	watch func()
}

func (s *watchedStore) UpdateRollout(ctx context.Context, r store.RolloutRecord, entries []store.AuditEntry) error {
	s.mu.Lock()
	w := s.watch
	s.mu.Unlock()
	if w != nil {
		w()
	}
	return s.memStore.UpdateRollout(ctx, r, entries)
}

// TestCompletingARolloutNeverGivesTheOldBaselineBack: when a rollout that
// superseded another completes, a deployment only it reached keeps its
// release at every instant, so no check-in in between is offered the
// superseded rollout's baseline (a real agent applied 1.0 again for it).
func TestCompletingARolloutNeverGivesTheOldBaselineBack(t *testing.T) {
	clk := clock.NewFake(t0)
	st := &watchedStore{memStore: newMemStore()}
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, sixDeployments(), st, clk)
	start(t, r, "2.0.0")
	s := start(t, r, "2.1.0") // supersedes 2.0.0 while only its canaries were reached
	r.fleet.update("2.1.0", "d1", "d2")
	r.step(t)
	clk.Advance(30 * time.Minute)
	r.step(t)
	r.fleet.update("2.1.0", "d3", "d4")
	r.step(t)
	clk.Advance(time.Hour)
	r.step(t)
	r.fleet.update("2.1.0", "d5", "d6")
	r.step(t)
	if d := r.decideWith("d5", "2.1.0"); d.Release != "2.1.0" {
		t.Fatalf("d5 in the last wave: %+v", d)
	}

	var seen []string
	st.mu.Lock()
	st.watch = func() { seen = append(seen, r.decideWith("d5", "2.1.0").Release) }
	st.mu.Unlock()
	clk.Advance(time.Hour)
	r.step(t)
	if got := r.state(t, s.ID); got.Phase != PhaseCompleted {
		t.Fatalf("rollout of 2.1.0 is %s after its last bake", got.Phase)
	}
	if len(seen) < 2 {
		t.Fatalf("the completion wrote %d updates; want the retirement and the completion", len(seen))
	}
	for i, rel := range seen {
		if rel != "2.1.0" {
			t.Fatalf("during write %d of the completion d5 was given %s (all: %v)", i+1, rel, seen)
		}
	}
	if d := r.decideWith("d5", "2.1.0"); d.Release != "2.1.0" || d.Behind != "" {
		t.Fatalf("d5 after the completion: %+v", d)
	}
}

// TestAReplicaReloadsWhatTheLeaderChanged: a second engine on the same store,
// as on a replica that does not lead, decides like the leader once it
// reloads, and says whether anything changed.
func TestAReplicaReloadsWhatTheLeaderChanged(t *testing.T) {
	clk := clock.NewFake(t0)
	st := newMemStore()
	cfg := rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}
	leader := newRig(t, cfg, sixDeployments(), st, clk)
	follower := newRig(t, cfg, sixDeployments(), st, clk)
	if changed, err := follower.e.Reload(context.Background()); err != nil || changed {
		t.Fatalf("reload with nothing new: changed %v, %v", changed, err)
	}
	start(t, leader, "2.0.0")
	if d := follower.decide("d1"); d.Release != "9.9.9" {
		t.Fatalf("the follower knew of the rollout before reloading: %+v", d)
	}
	changed, err := follower.e.Reload(context.Background())
	if err != nil || !changed {
		t.Fatalf("reload after the leader started a rollout: changed %v, %v", changed, err)
	}
	for _, id := range []string{"d1", "d3"} {
		if got, want := follower.decide(id), leader.decide(id); got != want {
			t.Errorf("%s: follower decides %+v, leader %+v", id, got, want)
		}
	}
	if changed, _ := follower.e.Reload(context.Background()); changed {
		t.Error("a second reload with nothing new says something changed")
	}
}
