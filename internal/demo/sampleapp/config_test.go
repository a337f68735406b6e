package sampleapp_test

import (
	"context"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
)

// TestNewReportsEveryProblemAndStartsNothing: a bad config names each bad
// field at once; Shutdown without Start is a no-op.
func TestNewReportsEveryProblemAndStartsNothing(t *testing.T) {
	_, err := sampleapp.New(sampleapp.Config{
		OTLPEndpoint: "localhost:4318",
		Faults:       []sampleapp.Fault{{Release: "2", Function: "nosuch", ErrorShare: 2}},
		Bucket:       sampleapp.Bucket{Endpoint: "http://127.0.0.1:1"},
	})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{"release: required", "otlp_endpoint", "faults[0].function", "faults[0].error_share", "bucket.name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	a, err := sampleapp.New(sampleapp.Config{Release: "1", OTLPEndpoint: "http://127.0.0.1:4318"})
	if err != nil {
		t.Fatal(err)
	}
	if a.URL() != "" {
		t.Errorf("URL before Start = %q", a.URL())
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown without Start: %v", err)
	}
}

// TestRuntimeSourcesAreValidAgentConfig: what the demo puts in the agent's
// runtime config passes the agent's own validation.
func TestRuntimeSourcesAreValidAgentConfig(t *testing.T) {
	q := sampleapp.Queue{URL: "nats://127.0.0.1:4222", Stream: "ORDERS_ACME"}.RuntimeSource("orders")
	if q.Stream != "ORDERS_ACME" || len(q.Consumers) != 1 || q.Consumers[0] != sampleapp.DefaultConsumer {
		t.Errorf("queue source = %+v", q)
	}
	rt := config.DefaultRuntime()
	rt.Queues = []config.QueueSource{q}
	rt.Storage = []config.StorageSource{sampleapp.Bucket{Endpoint: "http://127.0.0.1:9000", Name: "acme-invoices"}.RuntimeSource("invoices", "", "")}
	if err := rt.Validate(); err != nil {
		t.Errorf("the agent refuses the sources: %v", err)
	}
}
