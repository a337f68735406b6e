package reach

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

func lines(b *bytes.Buffer) []string {
	s := strings.TrimSpace(b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// A manager down for ten minutes while the check-in and three signals retry
// every few seconds gives one warning, one summary a minute with the count of
// failed attempts, and one line when it is back; the URL appears once a line.
func TestOneLinePerStateChange(t *testing.T) {
	var out bytes.Buffer
	clk := clock.NewFake(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	const mgr = "http://127.0.0.1:7070"
	tr := New(slog.New(slog.NewTextHandler(&out, nil)), clk, mgr, time.Minute)
	refused := &url.Error{Op: "Post", URL: mgr + "/v1/logs", Err: errors.New("dial tcp 127.0.0.1:7070: connect: connection refused")}
	wrapped := fmt.Errorf("post %s/v1/logs: %w", mgr, refused)

	tr.OK() // up and staying up: nothing to say
	failures := 0
	for range 10 * 60 / 5 { // every 5 s for 10 minutes
		for range 4 { // the check-in and three signals
			tr.Failed(wrapped)
			failures++
		}
		clk.Advance(5 * time.Second)
	}
	if !tr.Down() {
		t.Fatal("not down after failures")
	}
	tr.OK()
	tr.OK()
	got := lines(&out)
	// 1 first warning + 9 summaries (a minute apart over the following 9:55) + 1 back.
	if len(got) != 11 {
		t.Fatalf("%d lines, want 11:\n%s", len(got), out.String())
	}
	if !strings.Contains(got[0], "manager unreachable; retrying") || !strings.Contains(got[1], "manager still unreachable") ||
		!strings.Contains(got[1], "for=1m0s") || !strings.Contains(got[1], "failed_attempts=49") {
		t.Errorf("first lines:\n%s\n%s", got[0], got[1])
	}
	last := got[len(got)-1]
	if !strings.Contains(last, "manager reachable again") || !strings.Contains(last, fmt.Sprintf("failed_attempts=%d", failures)) || !strings.Contains(last, "after=10m0s") {
		t.Errorf("last line: %s", last)
	}
	for _, l := range got {
		if n := strings.Count(l, "127.0.0.1:7070"); n > 2 { // the manager attribute, and the dial error's address
			t.Errorf("the manager's address %d times in: %s", n, l)
		}
		if strings.Contains(l, "/v1/logs") {
			t.Errorf("the request URL repeated: %s", l)
		}
	}

	// Down again: a new first warning at once.
	out.Reset()
	tr.Failed(errors.New("manager answered 503"))
	if got := lines(&out); len(got) != 1 || !strings.Contains(got[0], "manager unreachable") || !strings.Contains(got[0], "503") {
		t.Errorf("down again: %q", got)
	}
}

func TestNilTrackerAndCause(t *testing.T) {
	var tr *Tracker
	tr.Failed(errors.New("x"))
	tr.OK()
	if tr.Down() {
		t.Error("a nil tracker is down")
	}
	if got := Cause(&url.Error{Op: http.MethodGet, URL: "http://m/x", Err: errors.New("refused")}); got != "refused" {
		t.Errorf("Cause = %q", got)
	}
	if Cause(nil) != "" {
		t.Error("Cause(nil)")
	}
}
