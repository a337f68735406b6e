package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

// DefaultSince is the range a report covers when none is given: the last day.
const DefaultSince = 24 * time.Hour

// maxSince bounds a relative range: the record holds far less than a year at any
// rate, so a longer one is a typo.
const maxSince = 366 * 24 * time.Hour

// ParseRange turns a report's range into [from, to): since is a duration before now
// ("1h", "24h"); from and to are RFC 3339 times, to defaulting to now. With none
// given the range is the last DefaultSince. since goes with neither from nor to.
func ParseRange(since, from, to string, now time.Time) (time.Time, time.Time, error) {
	switch {
	case since != "" && (from != "" || to != ""):
		return time.Time{}, time.Time{}, errors.New("give either since, or from and to, not both")
	case since == "" && from == "" && to == "":
		return now.Add(-DefaultSince), now, nil
	case since != "":
		d, err := time.ParseDuration(since)
		if err != nil || d <= 0 || d > maxSince {
			return time.Time{}, time.Time{}, fmt.Errorf("since %q must be a positive duration up to %s, like 1h or 24h", since, maxSince)
		}
		return now.Add(-d), now, nil
	case from == "":
		return time.Time{}, time.Time{}, errors.New("to needs from")
	}
	f, err := time.Parse(time.RFC3339, from)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("from %q must be an RFC 3339 time like 2026-12-05T10:00:00Z", from)
	}
	t := now
	if to != "" {
		if t, err = time.Parse(time.RFC3339, to); err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("to %q must be an RFC 3339 time like 2026-12-05T11:00:00Z", to)
		}
	}
	if !f.Before(t) {
		return time.Time{}, time.Time{}, fmt.Errorf("from (%s) must be before to (%s)", from, t.Format(time.RFC3339))
	}
	return f, t, nil
}

// Handler serves the summary of the record in dir: GET with ?since=1h, or
// ?from=RFC3339[&to=RFC3339] (default the last day), and format=text (default) or
// json. A malformed query is answered 400. One summary is computed at a time, as
// each may read the whole record.
func Handler(dir string, c clock.Clock) http.Handler {
	c = clock.Or(c)
	one := make(chan struct{}, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		for k, vs := range q {
			switch {
			case k != "since" && k != "from" && k != "to" && k != "format":
				http.Error(w, fmt.Sprintf("unknown parameter %q: use since, from, to and format", k), http.StatusBadRequest)
				return
			case len(vs) > 1:
				http.Error(w, fmt.Sprintf("parameter %q given more than once", k), http.StatusBadRequest)
				return
			}
		}
		format := q.Get("format")
		if format != "" && format != "text" && format != "json" {
			http.Error(w, "format must be text or json", http.StatusBadRequest)
			return
		}
		from, to, err := ParseRange(q.Get("since"), q.Get("from"), q.Get("to"), c.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case one <- struct{}{}:
			defer func() { <-one }()
		case <-r.Context().Done():
			return
		}
		s, err := Summarise(dir, from, to)
		if err != nil {
			http.Error(w, "could not read the record: "+err.Error(), http.StatusInternalServerError)
			return
		}
		var body bytes.Buffer
		if format == "json" {
			w.Header().Set("Content-Type", "application/json")
			err = json.NewEncoder(&body).Encode(s)
		} else {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			err = s.WriteText(&body)
		}
		if err != nil {
			http.Error(w, "could not write the summary: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body.Bytes())
	})
}
