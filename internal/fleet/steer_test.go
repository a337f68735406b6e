package fleet

import (
	"testing"
	"time"
)

func TestEvaluateSteered(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := now.Add(30 * time.Minute)
	p := Params{HeartbeatInterval: 30 * time.Second, StaleAfter: 90 * time.Second}
	s := StackReleases{Latest: "2.0", Releases: []Release{{Stack: "app", Version: "2.0"}, {Stack: "app", Version: "1.0"}}}
	dep := func(mut func(*Deployment)) *Deployment {
		d := &Deployment{ID: "d1", Stack: "app", RunningRelease: "1.0", Mode: ModePull, LastCheckin: now.Add(-time.Second),
			Health: Health{Reported: true, Healthy: true}, AcceptsReleases: true}
		if mut != nil {
			mut(d)
		}
		return d
	}
	tests := []struct {
		name     string
		d        *Deployment
		st       Steer
		desired  string
		behind   BehindReason
		wave     string
		expected time.Time
		held     bool
	}{
		{name: "no steer is Evaluate", d: dep(nil), desired: "2.0", behind: BehindPullPending},
		{name: "waiting for its wave on the baseline", d: dep(nil), st: Steer{Release: "1.0", Behind: BehindWaitingForWave, Wave: "main", Expected: at},
			desired: "1.0", behind: BehindWaitingForWave, wave: "main", expected: at},
		{name: "its wave opened: behind as usual", d: dep(nil), st: Steer{Release: "2.0"}, desired: "2.0", behind: BehindPullPending},
		{name: "a closed window holds the offer", d: dep(nil), st: Steer{Release: "2.0", Behind: BehindOutsideWindow, Expected: at, Hold: true},
			desired: "2.0", behind: BehindOutsideWindow, expected: at, held: true},
		{name: "a failed update still says so under a window", d: dep(func(d *Deployment) {
			d.Update = UpdateState{Phase: UpdateFailed, Release: "2.0"}
		}), st: Steer{Release: "2.0", Behind: BehindOutsideWindow, Expected: at, Hold: true}, desired: "2.0", behind: BehindUpdateFailed, held: true},
		{name: "a pin wins over the rollout", d: dep(func(d *Deployment) { d.Pin = &Pin{Release: "1.0"} }),
			st: Steer{Release: "2.0", Behind: BehindOutsideWindow, Hold: true}, desired: "1.0"},
		{name: "config drift shows before the wait", d: dep(func(d *Deployment) { d.ExpectedConfigHash, d.ConfigHash = "a", "b" }),
			st: Steer{Release: "1.0", Behind: BehindWaitingForWave, Wave: "main"}, desired: "1.0", behind: BehindConfigDrift},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := EvaluateSteered(tc.d, s, now, p, tc.st)
			if e.Desired != tc.desired || e.Behind != tc.behind || e.Wave != tc.wave || !e.Expected.Equal(tc.expected) || e.Held != tc.held {
				t.Errorf("got desired %s, behind %q, wave %q, expected %v, held %v", e.Desired, e.Behind, e.Wave, e.Expected, e.Held)
			}
			if e.Latest != "2.0" {
				t.Errorf("latest %s: a rollout never changes what the latest release is", e.Latest)
			}
		})
	}
	if e := EvaluateSteered(dep(nil), s, now, p, Steer{}); e != Evaluate(dep(nil), s, now, p) {
		t.Errorf("a zero steer differs from Evaluate: %+v", e)
	}
}
