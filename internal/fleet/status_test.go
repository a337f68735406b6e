package fleet

import (
	"strings"
	"testing"
	"time"
)

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	p := Params{HeartbeatInterval: 30 * time.Second, StaleAfter: 90 * time.Second}
	ok := Health{Reported: true, Healthy: true}
	base := func(mut func(*Deployment)) *Deployment {
		d := &Deployment{ID: "d1", Stack: "app", RunningRelease: "1.8.0", Mode: ModePull,
			LastCheckin: now.Add(-10 * time.Second), Health: ok, AcceptsReleases: true}
		if mut != nil {
			mut(d)
		}
		return d
	}
	tests := []struct {
		name       string
		d          *Deployment
		latest     string
		status     Status
		reason     string // substring
		behind     BehindReason
		pinned     bool
		desired    string
		nextPollAt time.Time
		code       string
	}{
		{name: "never checked in", d: base(func(d *Deployment) { d.LastCheckin = time.Time{} }), latest: "1.8.0", status: StatusPending, desired: "1.8.0"},
		{name: "healthy on latest", d: base(nil), latest: "1.8.0", status: StatusHealthy, desired: "1.8.0"},
		{name: "health never reported is not unhealthy", d: base(func(d *Deployment) { d.Health = Health{} }), latest: "1.8.0", status: StatusHealthy, desired: "1.8.0"},
		{name: "no releases registered: desired is what runs", d: base(nil), latest: "", status: StatusHealthy, desired: "1.8.0"},
		{name: "exactly at stale threshold is not stale", d: base(func(d *Deployment) { d.LastCheckin = now.Add(-90 * time.Second) }), latest: "1.8.0", status: StatusHealthy, desired: "1.8.0"},
		{name: "past stale threshold", d: base(func(d *Deployment) { d.LastCheckin = now.Add(-91 * time.Second) }), latest: "1.8.0", status: StatusStale, reason: "no check-in since", desired: "1.8.0"},
		{name: "stale wins over unhealthy", d: base(func(d *Deployment) {
			d.LastCheckin = now.Add(-time.Hour)
			d.Health = Health{Reported: true, Healthy: false}
		}), latest: "1.8.0", status: StatusStale, desired: "1.8.0"},
		{name: "unhealthy names the component", d: base(func(d *Deployment) {
			d.Health = Health{Reported: true, Components: map[string]ComponentHealth{
				"api": {Healthy: false, LastError: "CrashLoopBackOff"}, "db": {Healthy: true}}}
		}), latest: "1.8.0", status: StatusUnhealthy, reason: "api: CrashLoopBackOff", desired: "1.8.0"},
		{name: "applying is updating and not behind", d: base(func(d *Deployment) {
			d.RunningRelease = "1.7.2"
			d.Update = UpdateState{Phase: UpdateApplying, Release: "1.8.0"}
		}), latest: "1.8.0", status: StatusUpdating, reason: "applying 1.8.0", desired: "1.8.0"},
		{name: "failed update to desired", d: base(func(d *Deployment) {
			d.RunningRelease = "1.7.2"
			d.Update = UpdateState{Phase: UpdateFailed, Release: "1.8.0", Error: "hook exited 1"}
		}), latest: "1.8.0", status: StatusFailed, reason: "hook exited 1", behind: BehindUpdateFailed, desired: "1.8.0"},
		{name: "failed update to a release no longer desired is not failed", d: base(func(d *Deployment) {
			d.RunningRelease = "1.7.2"
			d.Update = UpdateState{Phase: UpdateFailed, Release: "1.8.0"}
			d.Pin = &Pin{Release: "1.7.2"}
		}), latest: "1.8.0", status: StatusHealthy, pinned: true, desired: "1.7.2"},
		{name: "pull deployment behind, next poll expected", d: base(func(d *Deployment) { d.RunningRelease = "1.7.2" }), latest: "1.8.0",
			status: StatusHealthy, behind: BehindPullPending, desired: "1.8.0", nextPollAt: now.Add(20 * time.Second)},
		{name: "push deployment disconnected is unreachable", d: base(func(d *Deployment) { d.RunningRelease = "1.7.2"; d.Mode = ModePush }), latest: "1.8.0",
			status: StatusHealthy, behind: BehindUnreachable, desired: "1.8.0"},
		{name: "push deployment connected awaits apply", d: base(func(d *Deployment) {
			d.RunningRelease = "1.7.2"
			d.Mode = ModePush
			d.Connected = true
		}), latest: "1.8.0", status: StatusHealthy, behind: BehindAwaitingApply, desired: "1.8.0"},
		{name: "config drift", d: base(func(d *Deployment) { d.ExpectedConfigHash = "abc"; d.ConfigHash = "def" }), latest: "1.8.0",
			status: StatusHealthy, behind: BehindConfigDrift, desired: "1.8.0"},
		{name: "pinned below latest and running it", d: base(func(d *Deployment) {
			d.RunningRelease = "1.7.2"
			d.Pin = &Pin{Release: "1.7.2"}
		}), latest: "1.8.0", status: StatusHealthy, pinned: true, desired: "1.7.2"},
		{name: "agent without an update hook needs a manual apply", d: base(func(d *Deployment) {
			d.RunningRelease = "1.7.2"
			d.Mode, d.Connected, d.AcceptsReleases = ModePush, true, false
		}), latest: "1.8.0", status: StatusHealthy, behind: BehindManualApply, desired: "1.8.0"},
		{name: "a failed update later applied by hand is not failed", d: base(func(d *Deployment) {
			d.Update = UpdateState{Phase: UpdateFailed, Release: "1.8.0", Error: "hook exited 1"}
		}), latest: "1.8.0", status: StatusHealthy, desired: "1.8.0"},
		{name: "regressed on the running release", d: base(func(d *Deployment) {
			d.Regression = &Regression{Release: "1.8.0", Previous: "1.7.2", Requests: 400, PreviousRequests: 500,
				ErrorRate: 0.25, PreviousErrorRate: 0.01, Worse: []string{"error_rate"}}
		}), latest: "1.8.0", status: StatusUnhealthy, reason: "error rate 25.0% vs 1.0% on 1.8.0 (400 requests) against 1.7.2", desired: "1.8.0", code: ReasonRegressed},
		{name: "a regression of another release does not count", d: base(func(d *Deployment) {
			d.RunningRelease = "1.7.2"
			d.Pin = &Pin{Release: "1.7.2"}
			d.Regression = &Regression{Release: "1.8.0", Previous: "1.7.2", Worse: []string{"p95"}}
		}), latest: "1.8.0", status: StatusHealthy, pinned: true, desired: "1.7.2"},
		{name: "components down outrank a regression", d: base(func(d *Deployment) {
			d.Health = Health{Reported: true, Components: map[string]ComponentHealth{"db": {LastError: "disk full"}}}
			d.Regression = &Regression{Release: "1.8.0", Previous: "1.7.2", Worse: []string{"p95"}}
		}), latest: "1.8.0", status: StatusUnhealthy, reason: "db: disk full", desired: "1.8.0", code: ReasonComponentsDown},
		{name: "a crossed threshold alone is threshold-exceeded, naming the queue and its lag", d: base(func(d *Deployment) {
			d.Health = Health{Reported: true, Components: map[string]ComponentHealth{
				"threshold nats/orders lag": {LastError: "orders consumer workers lag 1200 > 1000"}, "source nats/orders": {Healthy: true}}}
		}), latest: "1.8.0", status: StatusUnhealthy, reason: "threshold exceeded: nats/orders lag: orders consumer workers lag 1200 > 1000",
			desired: "1.8.0", code: ReasonThresholdExceeded},
		{name: "a crash beside a crossed threshold is components-down, naming both", d: base(func(d *Deployment) {
			d.Health = Health{Reported: true, Components: map[string]ComponentHealth{
				"threshold nats/orders lag": {LastError: "orders consumer workers lag 1200 > 1000"},
				"worker/0":                  {Status: "crash-loop", Restarts: 3, Watched: true, LastError: "exit status 1"}}}
		}), latest: "1.8.0", status: StatusUnhealthy,
			reason:  "components down: threshold nats/orders lag: orders consumer workers lag 1200 > 1000; worker/0 (crash-loop, 3 restarts): exit status 1",
			desired: "1.8.0", code: ReasonComponentsDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := Evaluate(tc.d, testStack(tc.latest), now, p)
			if e.Status != tc.status {
				t.Errorf("status = %s, want %s (reason %q)", e.Status, tc.status, e.Reason)
			}
			if !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("reason = %q, want it to contain %q", e.Reason, tc.reason)
			}
			if e.Behind != tc.behind {
				t.Errorf("behind = %q, want %q", e.Behind, tc.behind)
			}
			if e.Pinned != tc.pinned {
				t.Errorf("pinned = %v, want %v", e.Pinned, tc.pinned)
			}
			if e.Desired != tc.desired {
				t.Errorf("desired = %q, want %q", e.Desired, tc.desired)
			}
			if !e.NextPollExpected.Equal(tc.nextPollAt) {
				t.Errorf("next poll = %v, want %v", e.NextPollExpected, tc.nextPollAt)
			}
			if tc.code != "" && e.ReasonCode != tc.code {
				t.Errorf("reason code = %q, want %q", e.ReasonCode, tc.code)
			}
		})
	}
}

// testStack is a stack whose releases are 1.7.2, 1.7.3 and latest, published a
// month apart.
func testStack(latest string) StackReleases {
	if latest == "" {
		return StackReleases{}
	}
	at := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	var rs []Release
	for i, v := range []string{"1.7.2", "1.7.3", latest} {
		rs = append(rs, Release{Stack: "app", Version: v, CreatedAt: at.AddDate(0, i, 0)})
	}
	return NewStackReleases(rs, "app")
}

func TestEvaluateHowFarBehind(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	p := DefaultParams()
	s := testStack("1.8.0")
	d := &Deployment{Stack: "app", RunningRelease: "1.7.2", LastCheckin: now, Mode: ModePull, AcceptsReleases: true}
	e := Evaluate(d, s, now, p)
	if e.VersionsBehind != 2 || !e.SupersededAt.Equal(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("versions behind %d, superseded %v; want 2 and 2026-10-01 (when 1.7.3 came out)", e.VersionsBehind, e.SupersededAt)
	}
	if e.BehindLatest() != BehindPullPending {
		t.Fatalf("behind latest = %q, want pull-pending", e.BehindLatest())
	}
	d.Pin = &Pin{Release: "1.7.2"}
	if e := Evaluate(d, s, now, p); e.Behind != "" || e.BehindLatest() != BehindPinned || e.VersionsBehind != 2 {
		t.Fatalf("pinned: behind %q, behind latest %q, versions %d; want none, pinned, 2", e.Behind, e.BehindLatest(), e.VersionsBehind)
	}
	if e := Evaluate(d, s, now, p); !(Filter{Behind: "pinned"}).Match(d, e) || !(Filter{Behind: "latest"}).Match(d, e) || (Filter{Behind: "any"}).Match(d, e) {
		t.Fatal("a deployment pinned below the latest must match behind=pinned and behind=latest, not behind=any")
	}
	d.Pin, d.RunningRelease = nil, "1.8.0"
	if e := Evaluate(d, s, now, p); e.VersionsBehind != 0 || !e.SupersededAt.IsZero() || e.BehindLatest() != "" {
		t.Fatalf("on latest: versions %d, superseded %v, behind latest %q; want 0, zero, none", e.VersionsBehind, e.SupersededAt, e.BehindLatest())
	}
}

func TestEvaluateStaleSinceIsTheMissedDeadline(t *testing.T) {
	last := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &Deployment{LastCheckin: last}
	e := Evaluate(d, StackReleases{}, last.Add(time.Hour), Params{HeartbeatInterval: time.Second, StaleAfter: 3 * time.Second})
	if want := last.Add(3 * time.Second); !e.Since.Equal(want) {
		t.Fatalf("since = %v, want %v", e.Since, want)
	}
}

func TestNextChangeIsWhenTimeAloneChangesTheEvaluation(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	p := Params{HeartbeatInterval: 30 * time.Second, StaleAfter: 90 * time.Second, LossQuietWindow: 10 * time.Minute}
	lost := func(at time.Time) *TelemetryLoss { return &TelemetryLoss{Records: 5, Last: at} }
	tests := []struct {
		name string
		d    Deployment
		want time.Time // zero: never
	}{
		{"pending never changes with time", Deployment{}, time.Time{}},
		{"healthy turns stale after StaleAfter", Deployment{LastCheckin: now.Add(-time.Minute)}, now.Add(30*time.Second + time.Nanosecond)},
		{"stale stays stale", Deployment{LastCheckin: now.Add(-time.Hour)}, time.Time{}},
		{"loss leaves its window before staleness", Deployment{LastCheckin: now, TelemetryLoss: lost(now.Add(-9*time.Minute - 30*time.Second))}, now.Add(30 * time.Second)},
		{"staleness before loss leaves", Deployment{LastCheckin: now, TelemetryLoss: lost(now)}, now.Add(90*time.Second + time.Nanosecond)},
		{"stale with loss shown: only the loss changes", Deployment{LastCheckin: now.Add(-time.Hour), TelemetryLoss: lost(now)}, now.Add(10 * time.Minute)},
		{"old loss is not shown and stays so", Deployment{LastCheckin: now.Add(-time.Hour), TelemetryLoss: lost(now.Add(-time.Hour))}, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := Evaluate(&tc.d, StackReleases{}, now, p)
			got := NextChange(&tc.d, e, p)
			if !got.Equal(tc.want) {
				t.Fatalf("next change = %v, want %v", got, tc.want)
			}
			if got.IsZero() {
				if later := Evaluate(&tc.d, StackReleases{}, now.Add(365*24*time.Hour), p); later != e {
					t.Fatalf("evaluation changed a year later with no next change: %+v, then %+v", e, later)
				}
				return
			}
			if before := Evaluate(&tc.d, StackReleases{}, got.Add(-time.Nanosecond), p); before != e {
				t.Fatalf("evaluation changed before its next change: %+v, then %+v", e, before)
			}
			if at := Evaluate(&tc.d, StackReleases{}, got, p); at == e {
				t.Fatalf("evaluation at its next change is still %+v", e)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.10.0", "1.9.0", 1},
		{"v1.2.3", "1.2.3", 0},
		{"1.8.0-rc.1", "1.8.0", -1},
		{"1.8.0-rc.2", "1.8.0-rc.10", -1},
		{"1.8", "1.8.1", -1},
		{"2.0.0", "10.0.0", -1},
		{"1.0.0-alpha", "1.0.0-1", 1},
		{"2024.11.3", "2024.2.9", 1},
	}
	for _, tc := range tests {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestLatest(t *testing.T) {
	rs := []Release{{Stack: "a", Version: "1.9.0"}, {Stack: "a", Version: "1.10.0"}, {Stack: "b", Version: "9.0.0"}, {Stack: "a", Version: "1.10.0-rc.1"}}
	if got := Latest(rs, "a"); got != "1.10.0" {
		t.Fatalf("Latest(a) = %q, want 1.10.0", got)
	}
	if got := Latest(rs, "c"); got != "" {
		t.Fatalf("Latest(c) = %q, want empty", got)
	}
}

func TestFilterMatch(t *testing.T) {
	d := &Deployment{ID: "acme-prod", Name: "Acme production", Customer: "Acme", Cloud: "aws", Region: "eu-west-1", Stack: "app", RunningRelease: "1.8.0",
		Labels: map[string]string{"tier": "gold"}}
	e := Evaluation{Status: StatusHealthy}
	for _, tc := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Customer: "Acme", Cloud: "aws", Region: "eu-west-1", Release: "1.8.0", Stack: "app", Status: StatusHealthy}, true},
		{Filter{Text: "PRODUCTION"}, true},
		{Filter{Text: "globex"}, false},
		{Filter{Status: StatusStale}, false},
		{Filter{Release: "1.7.2"}, false},
		{Filter{Cloud: "gcp"}, false},
		{Filter{Labels: map[string]string{"tier": "gold"}}, true},
		{Filter{Labels: map[string]string{"tier": "silver"}}, false},
		{Filter{Labels: map[string]string{"missing": ""}}, false},
		{Filter{Behind: "any"}, false},
		{Filter{Pinned: "false"}, true},
		{Filter{Pinned: "true"}, false},
		{Filter{Behind: "latest"}, false},
		{Filter{Behind: "pinned"}, false},
	} {
		if got := tc.f.Match(d, e); got != tc.want {
			t.Errorf("%+v.Match = %v, want %v", tc.f, got, tc.want)
		}
	}
}
