package record

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

// The summary is served as text or JSON for the range asked, and a request the
// handler cannot answer as asked is refused with a status that says why.
func TestHandler(t *testing.T) {
	c := clock.NewFake(t0)
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: c})
	r.Sent("logs", 10, 500, "https://manager.example")
	r.Removed("logs", []Removal{{"email", "user.email", 2}})
	flush(t, r)
	c.Advance(2 * time.Hour)
	r.Sent("logs", 3, 100, "https://manager.example")
	flush(t, r)
	c.Advance(time.Minute)
	srv := httptest.NewServer(Handler(dir, c))
	defer srv.Close()

	get := func(method, query string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/report"+query, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}

	code, ctype, body := get("GET", "")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain") || !strings.Contains(body, "sent 13 log records in 2 batches") {
		t.Errorf("default (last day): %d %s %q", code, ctype, body)
	}
	if code, _, body = get("GET", "?since=1h"); code != 200 || !strings.Contains(body, "sent 3 log records in 1 batch ") ||
		!strings.Contains(body, "removed nothing") {
		t.Errorf("since=1h: %d %q", code, body)
	}
	code, ctype, body = get("GET", "?from=2026-12-05T10:00:00Z&to=2026-12-05T11:00:00Z&format=json")
	var s Summary
	if err := json.Unmarshal([]byte(body), &s); code != 200 || ctype != "application/json" || err != nil ||
		s.Records["logs"] != 10 || s.RemovedValues != 2 || s.Removed[0].Keys[0].Key != "user.email" {
		t.Errorf("from/to as JSON: %d %s %v %+v", code, ctype, err, s)
	}
	if code, _, body = get("GET", "?from=2026-12-05T11:00:00Z"); code != 200 || !strings.Contains(body, "From 2026-12-05 11:00 to 12:01 UTC") {
		t.Errorf("from alone runs to now: %d %q", code, body)
	}

	for _, q := range []string{"?since=forever", "?since=-1h", "?since=1h&from=2026-12-05T10:00:00Z", "?to=2026-12-05T10:00:00Z",
		"?from=yesterday", "?from=2026-12-05T11:00:00Z&to=2026-12-05T10:00:00Z", "?format=xml", "?sinse=1h", "?since=1h&since=2h",
		"?since=10000h"} {
		if code, _, body := get("GET", q); code != http.StatusBadRequest || body == "" {
			t.Errorf("%s: %d %q, want 400 with a reason", q, code, body)
		}
	}
	if code, _, _ := get("POST", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", code)
	}
	gone := httptest.NewServer(Handler(dir+"/missing", c))
	defer gone.Close()
	if resp, err := gone.Client().Get(gone.URL); err != nil || resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("a missing record dir: %v %v, want 500", err, resp.StatusCode)
	} else {
		resp.Body.Close()
	}
}
