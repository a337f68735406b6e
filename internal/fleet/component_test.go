package fleet

import (
	"testing"
	"time"
)

func TestComponentErrorRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		status   string
		restarts int64
		last     string
	}{
		{"crash-loop", 4, "exit status 3: db connection refused; retrying"},
		{"not-ready", 0, ""},
		{"running", 12, "signal: killed"},
	} {
		s := FormatComponentError(tc.status, tc.restarts, tc.last)
		status, restarts, last, ok := ParseComponentError(s)
		if !ok || status != tc.status || restarts != tc.restarts || last != tc.last {
			t.Errorf("Parse(%q) = %q, %d, %q, %v; want %q, %d, %q", s, status, restarts, last, ok, tc.status, tc.restarts, tc.last)
		}
	}
	for _, s := range []string{"", "disk full", "CrashLoopBackOff; restarts x", "a; b; restarts 1", "x; restarts -1", "x; restarts 01", "; restarts 2"} {
		if _, _, _, ok := ParseComponentError(s); ok {
			t.Errorf("Parse(%q) accepted text FormatComponentError never writes", s)
		}
	}
}

func TestComponentsDownNameRestartsAndLastError(t *testing.T) {
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	d := &Deployment{LastCheckin: now, RunningRelease: "1.0.0", Health: Health{Reported: true, Components: map[string]ComponentHealth{
		"worker/0": {Status: "crash-loop", Restarts: 4, LastError: "exit status 3: db connection refused", Watched: true},
		"worker/1": {Status: "not-ready", Watched: true},
		"worker/2": {Healthy: true, Status: "running", Watched: true},
		"web":      {Status: "failing", LastError: "boom"},
	}}}
	e := Evaluate(d, StackReleases{}, now, DefaultParams())
	want := "components down: web: boom; worker/0 (crash-loop, 4 restarts): exit status 3: db connection refused; worker/1 (not-ready)"
	if e.Status != StatusUnhealthy || e.ReasonCode != ReasonComponentsDown || e.Reason != want {
		t.Fatalf("evaluation = %s %s %q\nwant unhealthy components-down %q", e.Status, e.ReasonCode, e.Reason, want)
	}
}

func FuzzParseComponentError(f *testing.F) {
	f.Add("crash-loop; restarts 4; last error exit status 3: boom")
	f.Add("x; restarts 9223372036854775807")
	f.Fuzz(func(t *testing.T, s string) {
		status, restarts, last, ok := ParseComponentError(s)
		if !ok {
			return
		}
		if got := FormatComponentError(status, restarts, last); got != s {
			t.Fatalf("Parse(%q) then Format = %q", s, got)
		}
	})
}
