package registry_test

import (
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// A component keeps the time the manager first saw it in its health and
// status while its agent reports it unchanged, and starts again when either
// changes, so a page can say how long a replica has been down.
func TestAComponentKeepsItsSinceWhileUnchanged(t *testing.T) {
	f := newFleet(t)
	report := func(healthy bool, status string, restarts int64) {
		checkin(t, f, "acme-prod", registry.Report{Health: &fleet.Health{Reported: true, Components: map[string]fleet.ComponentHealth{
			"worker/0": {Healthy: healthy, Status: status, Restarts: restarts, Watched: true}}}})
	}
	since := func() time.Time { return view(t, f, "acme-prod").Deployment.Health.Components["worker/0"].Since }
	start := f.clk.Now()
	report(false, "crash-loop", 1)
	f.clk.Advance(time.Minute)
	report(false, "crash-loop", 2) // another restart, the same state
	if got := since(); !got.Equal(start) {
		t.Fatalf("since = %v after an unchanged report; want %v", got, start)
	}
	f.clk.Advance(time.Minute)
	report(true, "running", 2)
	if got := since(); !got.Equal(start.Add(2 * time.Minute)) {
		t.Fatalf("since = %v after recovering; want %v", got, start.Add(2*time.Minute))
	}
}
