package registry_test

import (
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// An agent's cumulative loss reports add up once each, across agent and manager
// restarts; a report dated in the future is dated when the manager heard it; the
// deployment shows the loss beside its status until a quiet window passes.
func TestTelemetryLossAddsUpAndSurvivesRestart(t *testing.T) {
	f := newFleet(t)
	run := f.clk.Now().Add(-time.Hour)
	report := func(f *fixture, start time.Time, n int64, last time.Time) {
		checkin(t, f, "acme-prod", registry.Report{Loss: &registry.LossReport{RunStart: start,
			Counts: map[string]int64{"logs/queue_full": n}, Last: last}})
	}
	report(f, run, 500, f.clk.Now().Add(-time.Minute))
	report(f, run, 500, f.clk.Now().Add(-time.Minute)) // repeated in full state: adds nothing
	report(f, run, 560, f.clk.Now().Add(time.Hour))    // an agent clock ahead of the manager's
	v := view(t, f, "acme-prod")
	if l := v.Deployment.TelemetryLoss; l == nil || l.Records != 560 || !l.Last.Equal(f.clk.Now()) {
		t.Fatalf("loss = %+v; want 560 records, last at the manager's now %v", l, f.clk.Now())
	}
	if v.Evaluation.Loss != fleet.ReasonTelemetryDropped || v.Evaluation.Status != fleet.StatusHealthy {
		t.Fatalf("evaluation = %+v; want healthy with telemetry-dropped beside it", v.Evaluation)
	}

	dir := f.dir
	f.close(t)
	g := open(t, dir, f.clk)
	report(g, run, 560, g.clk.Now()) // the agent's full state to the restarted manager
	g.clk.Advance(time.Minute)
	report(g, run.Add(2*time.Hour), 7, g.clk.Now()) // the agent restarted: its counts start over
	v = view(t, g, "acme-prod")
	if l := v.Deployment.TelemetryLoss; l == nil || l.Records != 567 || l.Counts["logs/queue_full"] != 567 {
		t.Fatalf("loss after restarts = %+v; want 567 records", l)
	}
	g.clk.Advance(fleet.DefaultLossQuietWindow)
	v = view(t, g, "acme-prod")
	if v.Evaluation.Loss != "" || v.Deployment.TelemetryLoss.Records != 567 {
		t.Fatalf("after a quiet window: evaluation %+v, loss %+v; want no badge, counts kept", v.Evaluation, v.Deployment.TelemetryLoss)
	}
}
