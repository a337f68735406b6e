package notify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/store"
)

// holdDecider keeps "waits" on 1.0.0 until its wave and "held" outside its
// window; the rest follow the latest release.
type holdDecider struct{}

func (holdDecider) Steer(d *fleet.Deployment, latest string, _ time.Time) fleet.Steer {
	switch d.ID {
	case "waits":
		return fleet.Steer{Release: "1.0.0", Behind: fleet.BehindWaitingForWave, Wave: "main"}
	case "held":
		return fleet.Steer{Release: latest, Behind: fleet.BehindOutsideWindow, Hold: true}
	}
	return fleet.Steer{Release: latest}
}

func (holdDecider) Published(context.Context, fleet.Release, string) error { return nil }

// TestPlannedWaitsAreNotBehindNotifications: a deployment waiting for its
// rollout wave or its customer's update window is not reported behind
// however long it waits; one that lags is.
func TestPlannedWaitsAreNotBehindNotifications(t *testing.T) {
	rc := newReceiver(t, nil)
	f := startSteered(t, defaultConfig(config.Webhook{Name: "ops", URL: rc.URL, Statuses: []string{"behind"}}), holdDecider{})
	ctx := context.Background()
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	f.create("waits", "held", "lags")
	for _, id := range []string{"waits", "held", "lags"} {
		f.checkin(id, "1.0.0", healthy())
	}
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(2 * time.Hour)
	for _, id := range []string{"waits", "held", "lags"} {
		f.checkin(id, "", healthy())
	}
	f.clk.Advance(time.Minute)
	rc.wait(t, "lags behind entered", 1)
	for _, id := range []string{"waits", "held"} {
		if ns := f.list(store.NotificationQuery{Deployment: id}); len(ns) != 0 {
			t.Errorf("%s notified as behind: %+v", id, ns)
		}
		v, err := f.reg.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if lagging := !v.Deployment.BehindSince.IsZero(); lagging != (id == "held") {
			t.Errorf("%s (%s) behind since %v: only a deployment not on its desired release lags", id, v.Evaluation.Behind, v.Deployment.BehindSince)
		}
	}
}

// TestRolloutNoticesReachTheRolloutKind: a halt enters and a completion
// resolves, each saying why.
func TestRolloutNoticesReachTheRolloutKind(t *testing.T) {
	rc := newReceiver(t, nil)
	f := start(t, defaultConfig(config.Webhook{Name: "ops", URL: rc.URL, Statuses: []string{"rollout"}}))
	ctx := context.Background()
	f.n.NotifyRollout(ctx, rollouts.Notice{Kind: rollouts.NoticeHalted, Rollout: "ro-1", Stack: "app", Release: "2.0.0", Wave: "main",
		Reason: "gate regressed failed: 1 of 2 deployments regressed on 2.0.0", At: t0, PinnedBack: []string{"acme-prod"}})
	f.n.NotifyRollout(ctx, rollouts.Notice{Kind: rollouts.NoticeCompleted, Rollout: "ro-2", Stack: "app", Release: "2.0.1", Reason: "every wave passed", At: t0})
	rc.wait(t, "halt and completion", 2)
	evs := rc.events(t)
	if evs[0]["kind"] != "rollout" || evs[0]["state"] != "entered" || evs[0]["reason_code"] != "rollout-halted" ||
		!strings.Contains(evs[0]["reason"].(string), "gate regressed failed") || !strings.Contains(evs[0]["reason"].(string), "pinned back acme-prod") {
		t.Errorf("halt event %v", evs[0])
	}
	if evs[1]["state"] != "resolved" || evs[1]["reason_code"] != "rollout-completed" || !strings.Contains(evs[1]["reason"].(string), "2.0.1") {
		t.Errorf("completion event %v", evs[1])
	}
}
