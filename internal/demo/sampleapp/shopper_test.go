package sampleapp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// TestShopperRunBoundsConcurrencyAndStopsCleanly runs a Shopper against a
// server that holds every request until a few are in flight together, and
// stops it after 30: it never exceeds its concurrency, and every request it
// counted reached the server.
func TestShopperRunBoundsConcurrencyAndStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const limit, stopAfter = 3, 30
	var mu sync.Mutex
	inFlight, maxInFlight, seen := 0, 0, 0
	paths := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		seen++
		paths[r.Method+" "+r.URL.Path]++
		if seen == stopAfter {
			cancel()
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
		mu.Lock()
		inFlight--
		mu.Unlock()
	}))
	defer srv.Close()

	sh, err := sampleapp.NewShopper(sampleapp.ShopperConfig{BaseURL: srv.URL, Rate: 500, Concurrency: limit, Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tally := sh.Tally()
	answered := 0
	for _, n := range tally.Status {
		answered += n
	}
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight > limit {
		t.Errorf("%d requests in flight at once, limit %d", maxInFlight, limit)
	}
	if seen < stopAfter || answered+tally.Failed != seen {
		t.Errorf("server saw %d, shopper counted %d answered and %d failed", seen, answered, tally.Failed)
	}
	if paths["GET /products"] == 0 || paths["POST /checkout"] == 0 {
		t.Errorf("request mix %v lacks browsing or checkouts", paths)
	}
	if _, err := sampleapp.NewShopper(sampleapp.ShopperConfig{BaseURL: "ftp://x"}); err == nil {
		t.Error("NewShopper accepted a non-HTTP base URL")
	}
}

// TestRedactionRemovesTheShoppersPersonalData passes what the service sends
// through the agent's redaction under the default policy: the personal data
// the logs carry on purpose is gone, and the records say what was removed.
func TestRedactionRemovesTheShoppersPersonalData(t *testing.T) {
	p, err := redact.Compile(redactpolicy.Merge(redactpolicy.Policy{}, redactpolicy.Policy{}), []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	w.sink = newRedactingSink(t, p)
	app := start(t, w.config("1.0.0", 4))
	if err := shopper(t, app.URL(), 8).Send(context.Background(), 60); err != nil {
		t.Fatal(err)
	}
	if err := app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	personal, marked := 0, 0
	for _, l := range w.sink.logRecords() {
		text := fmt.Sprint(l.body, l.attrs)
		if strings.Contains(text, "@example.") || strings.Contains(text, "203.0.113.") {
			t.Errorf("personal data left in %q", text)
		}
		if strings.Contains(l.body, "signed in") || strings.Contains(l.body, "placed by") {
			personal++
		}
		for k := range l.attrs {
			if strings.HasPrefix(k, "periscope.redacted.") {
				marked++
				break
			}
		}
	}
	if personal == 0 || marked < personal {
		t.Errorf("%d sign-in and order logs, %d marked as redacted", personal, marked)
	}
}
