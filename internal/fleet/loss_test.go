package fleet

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func TestLossStatusRoundTrip(t *testing.T) {
	counts := map[string]int64{"logs/queue_full": 560, "traces/refused": 3}
	s := FormatLossStatus(counts)
	if s != "dropped logs/queue_full=560 traces/refused=3" {
		t.Errorf("FormatLossStatus = %q", s)
	}
	got, err := ParseLossStatus(s)
	if err != nil || !maps.Equal(got, counts) {
		t.Errorf("ParseLossStatus(%q) = %v, %v", s, got, err)
	}
	if got, err := ParseLossStatus(FormatLossStatus(nil)); err != nil || got != nil {
		t.Errorf("ParseLossStatus(ok) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "dropped", "dropped logs=1", "dropped logs/full=-1", "dropped Logs/x=1",
		"dropped a/b=1 a/b=2", "running", "dropped a/b=99999999999999999999"} {
		if _, err := ParseLossStatus(bad); err == nil {
			t.Errorf("ParseLossStatus(%q) accepted", bad)
		}
	}
}

// Reports are cumulative per agent run: repeats add nothing, a restart starts over.
func TestLossObserveAddsAcrossRestarts(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	var l TelemetryLoss
	if !l.Observe(t0, map[string]int64{"logs/queue_full": 500}, t0.Add(time.Minute)) {
		t.Error("first report added nothing")
	}
	if l.Observe(t0, map[string]int64{"logs/queue_full": 500}, t0.Add(time.Minute)) {
		t.Error("a repeated report added something")
	}
	l.Observe(t0, map[string]int64{"logs/queue_full": 560}, t0.Add(2*time.Minute))
	l.Observe(t0.Add(time.Hour), map[string]int64{"logs/queue_full": 7, "traces/refused": 1}, t0.Add(61*time.Minute))
	want := map[string]int64{"logs/queue_full": 567, "traces/refused": 1}
	if l.Records != 568 || !maps.Equal(l.Counts, want) || !l.Last.Equal(t0.Add(61*time.Minute)) {
		t.Errorf("loss = %+v; want 568 records %v, last at +61m", l, want)
	}
}

func TestEvaluateShowsLossBesideStatus(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	d := &Deployment{ID: "d1", Stack: "app", RunningRelease: "1.0.0", Mode: ModePull, LastCheckin: now,
		Health:        Health{Reported: true, Healthy: true},
		TelemetryLoss: &TelemetryLoss{Records: 560, Counts: map[string]int64{"logs/queue_full": 560}, Last: now.Add(-time.Minute)}}
	p := DefaultParams()
	e := Evaluate(d, StackReleases{}, now, p)
	if e.Status != StatusHealthy || e.Loss != ReasonTelemetryDropped || !strings.Contains(e.LossReason, "logs/queue_full 560") {
		t.Errorf("Evaluate = %+v; want healthy with loss telemetry-dropped naming logs/queue_full 560", e)
	}
	// Quiet for the window: the badge clears, the counts stay on the deployment.
	e = Evaluate(d, StackReleases{}, now.Add(p.LossQuietWindow), p)
	if e.Loss != "" || e.LossReason != "" {
		t.Errorf("Evaluate after a quiet window = %+v; want no loss shown", e)
	}
}

func FuzzParseLossStatus(f *testing.F) {
	f.Add("ok")
	f.Add("dropped logs/queue_full=560 traces/refused=3")
	f.Add("dropped a/b=1 a/b=2")
	f.Fuzz(func(t *testing.T, s string) {
		counts, err := ParseLossStatus(s)
		if err != nil {
			return
		}
		again, err := ParseLossStatus(FormatLossStatus(counts))
		if err != nil || !maps.Equal(again, counts) {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}
