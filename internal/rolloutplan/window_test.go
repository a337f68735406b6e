package rolloutplan

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestWindowOpenAndNext(t *testing.T) {
	cases := []struct {
		name, window, at string
		open             bool
		// next is the next start after at, checked whatever open is.
		next string
	}{
		// Berlin is UTC+1 in December: Sat 02:00-06:00 local is 01:00-05:00Z.
		{"before the window", "Sat 02:00-06:00 Europe/Berlin", "2026-12-05T00:59:00Z", false, "2026-12-05T01:00:00Z"},
		{"at its start", "Sat 02:00-06:00 Europe/Berlin", "2026-12-05T01:00:00Z", true, "2026-12-12T01:00:00Z"},
		{"inside", "Sat 02:00-06:00 Europe/Berlin", "2026-12-05T04:59:59Z", true, "2026-12-12T01:00:00Z"},
		{"its end is outside", "Sat 02:00-06:00 Europe/Berlin", "2026-12-05T05:00:00Z", false, "2026-12-12T01:00:00Z"},
		{"another day", "Sat 02:00-06:00 Europe/Berlin", "2026-12-06T02:00:00Z", false, "2026-12-12T01:00:00Z"},
		// Across midnight: the window named Friday runs into Saturday morning.
		// New York is UTC-5 in December: Fri 22:00 is Sat 03:00Z.
		{"across midnight, evening part", "Fri 22:00-04:00 America/New_York", "2026-12-05T03:30:00Z", true, "2026-12-12T03:00:00Z"},
		{"across midnight, morning part", "Fri 22:00-04:00 America/New_York", "2026-12-05T08:59:00Z", true, "2026-12-12T03:00:00Z"},
		{"across midnight, after it", "Fri 22:00-04:00 America/New_York", "2026-12-05T09:00:00Z", false, "2026-12-12T03:00:00Z"},
		{"across midnight, the day after a day off", "Fri 22:00-04:00 America/New_York", "2026-12-04T08:00:00Z", false, "2026-12-05T03:00:00Z"},
		// The same instant is another local day elsewhere: Tokyo is UTC+9.
		{"the zone's date, not UTC's", "Sat 01:00-03:00 Asia/Tokyo", "2026-12-04T17:00:00Z", true, "2026-12-11T16:00:00Z"},
		{"a half-hour zone", "Mon 09:00-10:00 Asia/Kolkata", "2026-12-07T03:30:00Z", true, "2026-12-14T03:30:00Z"},
		// Spring forward in Berlin, Sun 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00Z).
		{"a start the zone skips begins at the jump", "Sun 02:30-04:00 Europe/Berlin", "2026-03-28T12:00:00Z", false, "2026-03-29T01:00:00Z"},
		{"a window wholly in the skipped hour does not happen that night", "Sun 02:00-02:30 Europe/Berlin", "2026-03-28T12:00:00Z", false, "2026-04-05T00:00:00Z"},
		{"a night window over the jump is an hour shorter", "Sat 22:00-06:00 Europe/Berlin", "2026-03-29T03:59:00Z", true, "2026-04-04T20:00:00Z"},
		{"and ends at 06:00 summer time", "Sat 22:00-06:00 Europe/Berlin", "2026-03-29T04:00:00Z", false, "2026-04-04T20:00:00Z"},
		// Fall back, Sun 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00Z);
		// 02:30 happens at 00:30Z and again at 01:30Z.
		{"a repeated start is its first pass", "Sun 02:30-03:00 Europe/Berlin", "2026-10-24T12:00:00Z", false, "2026-10-25T00:30:00Z"},
		{"the window spans the repeated hour", "Sun 02:30-03:00 Europe/Berlin", "2026-10-25T01:45:00Z", true, "2026-11-01T01:30:00Z"},
		{"and ends at 03:00 winter time", "Sun 02:30-03:00 Europe/Berlin", "2026-10-25T02:00:00Z", false, "2026-11-01T01:30:00Z"},
		// US spring forward, Sun 8 March 2026 (02:00 EST to 03:00 EDT at 07:00Z).
		{"another zone's transition day", "Sun 01:00-05:00 America/New_York", "2026-03-08T08:59:00Z", true, "2026-03-15T05:00:00Z"},
		{"whole days", "Sat,Sun 00:00-24:00 UTC", "2026-12-06T23:59:59Z", true, "2026-12-12T00:00:00Z"},
		{"whole days end at midnight", "Sat,Sun 00:00-24:00 UTC", "2026-12-07T00:00:00Z", false, "2026-12-12T00:00:00Z"},
		{"a range", "Mon-Fri 09:00-17:00 UTC", "2026-12-04T16:00:00Z", true, "2026-12-07T09:00:00Z"},
		{"a range across the week's end", "Fri-Mon 09:00-17:00 UTC", "2026-12-06T10:00:00Z", true, "2026-12-07T09:00:00Z"},
		{"daily", "Daily 01:00-02:00 UTC", "2026-12-06T03:00:00Z", false, "2026-12-07T01:00:00Z"},
		{"an en dash", "Sat 02:00–06:00 Europe/Berlin", "2026-12-05T01:30:00Z", true, "2026-12-12T01:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := ParseWindow(c.window)
			if err != nil {
				t.Fatal(err)
			}
			at := utc(c.at)
			if open, _ := w.Open(at); open != c.open {
				t.Errorf("%s at %s: open = %v, want %v", c.window, c.at, open, c.open)
			}
			if got := w.Next(at); !got.Equal(utc(c.next)) {
				t.Errorf("%s after %s: next start %s, want %s", c.window, c.at, got.UTC().Format(time.RFC3339), c.next)
			}
		})
	}
}

func TestWindowsTakeTheEarliestNextStart(t *testing.T) {
	var ws Windows
	for _, s := range []string{"Sat 02:00-06:00 Europe/Berlin", "Wed 22:00-23:00 UTC"} {
		w, err := ParseWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	open, next := ws.Open(utc("2026-12-07T12:00:00Z")) // a Monday
	if open || !next.Equal(utc("2026-12-09T22:00:00Z")) {
		t.Errorf("Monday: open %v, next %s; want closed until Wednesday 22:00Z", open, next)
	}
	if open, next := ws.Open(utc("2026-12-05T02:00:00Z")); !open || !next.IsZero() {
		t.Errorf("inside the Saturday window: open %v, next %s", open, next)
	}
	if open, _ := Windows(nil).Open(utc("2026-12-07T12:00:00Z")); !open {
		t.Error("no windows must mean updates at any time")
	}
}

func TestParseWindowRefusesInWords(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Sat 02:00 Europe/Berlin", "not a time range"},
		{"Sat 02:00-06:00", "want days, times and a time zone"},
		{"Sa 02:00-06:00 UTC", `"Sa" is not a day`},
		{"Mon-Xy 02:00-06:00 UTC", `"Xy" is not a day`},
		{"Sat 2:00-06:00 UTC", `"2:00" is not a time like 02:00`},
		{"Sat 24:00-06:00 UTC", "24:00 only ends a window"},
		{"Sat 02:60-06:00 UTC", "not a time like 02:00"},
		{"Sat 02:00-02:00 UTC", "it starts when it ends"},
		{"Sat 02:00-06:00 Mars/Olympus", `unknown time zone "Mars/Olympus"`},
		{"Sat 02:00-06:00 Local", "name a time zone"},
		{strings.Repeat("Sat,", 40) + " 02:00-06:00 UTC", "longer than"},
	} {
		_, err := ParseWindow(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseWindow(%q) = %v, want an error saying %q", c.in, err, c.want)
		}
	}
}

func TestWindowRoundTripsThroughYAMLAndJSON(t *testing.T) {
	var ws WindowSet
	src := "customers:\n  acme: [\"Sat 02:00-06:00 Europe/Berlin\"]\ndeployments:\n  dep-1: [\"Mon-Fri 22:00-04:00 America/New_York\"]\n"
	if err := yaml.Unmarshal([]byte(src), &ws); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ws)
	if err != nil {
		t.Fatal(err)
	}
	var back WindowSet
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.For("dep-1", "acme"); len(got) != 1 || got[0].String() != "Mon-Fri 22:00-04:00 America/New_York" {
		t.Errorf("a deployment's own windows: %v", got)
	}
	if got := back.For("dep-2", "acme"); len(got) != 1 || got[0].String() != "Sat 02:00-06:00 Europe/Berlin" {
		t.Errorf("its customer's windows: %v", got)
	}
	if got := back.For("dep-3", "globex"); got != nil {
		t.Errorf("no windows: %v", got)
	}
	if err := json.Unmarshal([]byte(`{"customers":{"acme":["Sat 02:00 UTC"]}}`), &back); err == nil {
		t.Error("a bad window in JSON was accepted")
	}
}
