package rolloutplan

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzParseWindow feeds window text as the config file and the API take it:
// parsing never panics, and a window it accepts opens and closes sanely.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"Sat 02:00-06:00 Europe/Berlin", "Fri-Mon 22:00–04:00 America/New_York", "Daily 00:00-24:00 UTC",
		"Sat,Sun 24:00-01:00 UTC", "Mon 02:30-03:00 Australia/Lord_Howe", "* 23:59-00:00 Asia/Kolkata"} {
		f.Add(s, int64(1796000000))
	}
	f.Fuzz(func(t *testing.T, s string, unix int64) {
		w, err := ParseWindow(s)
		if err != nil {
			return
		}
		at := time.Unix(unix%(1<<34), 0).UTC() // within years 1425-2514
		next := w.Next(at)
		if next.IsZero() || !next.After(at) || next.Sub(at) > 8*24*time.Hour {
			t.Fatalf("%q after %s: next start %s", s, at, next)
		}
		if open, _ := w.Open(next); !open {
			t.Fatalf("%q is not open at its own start %s", s, next)
		}
		if back, err := ParseWindow(w.String()); err != nil || back.String() != w.String() {
			t.Fatalf("%q does not read back: %v", w.String(), err)
		}
	})
}

// FuzzPlanJSON feeds a plan as PUT /api/v1/rollout-plans takes it: decoding
// and Validate never panic, and selection of a valid plan's waves neither.
func FuzzPlanJSON(f *testing.F) {
	f.Add(`{"stack":"shop","waves":[{"name":"c","select":{"labels":{"ring":"canary"}},"bake":"30m","gates":{"regressed":{"max":0,"max_percent":10}}},{"name":"r","select":{"rest":true},"bake":"0s"}]}`)
	f.Add(`{"stack":"s","waves":[{"name":"p","select":{"percent":12.5,"clouds":["aws"]},"bake":"1h"}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		var p Plan
		if json.Unmarshal([]byte(body), &p) != nil || p.Validate() != nil {
			return
		}
		d := Subject{ID: "d", Customer: "c", Cloud: "aws", Region: "r", Labels: map[string]string{"ring": "canary"}}
		for i, w := range p.Waves {
			w.Select.Matches(d, "ro-1", i)
			g := w.Effective()
			for _, th := range []*Threshold{g.Regressed, g.FailedUpdates, g.ComponentsDown, g.Stale} {
				if th != nil && th.Allowed(100) < 0 {
					t.Fatalf("negative allowance from %+v", th)
				}
			}
		}
	})
}
