package sampleapp_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
)

// TestShutdownAfterItsDeadlineStillStopsTheSDK stops an instance with a
// context that has already ended, as the demo's stop does to a service whose
// turn comes after the stop's deadline: nothing is flushed, but none of the
// instance's goroutines (the SDK's batch loops included) may outlive it.
func TestShutdownAfterItsDeadlineStillStopsTheSDK(t *testing.T) {
	sk := newSink(t)
	before := goleak.IgnoreCurrent()
	a, err := sampleapp.New(sampleapp.Config{Deployment: "acme-prod", Customer: "acme", Release: "1.0.0",
		OTLPEndpoint: sk.url, Listen: "127.0.0.1:0", Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = a.Shutdown(ctx) // reports the deadline; what matters is what it leaves running
	goleak.VerifyNone(t, before)
}
