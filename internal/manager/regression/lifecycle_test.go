package regression

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// countingFleet counts the detector's passes over the fleet.
type countingFleet struct{ passes chan struct{} }

func (f countingFleet) ReleaseCandidates() []registry.ReleaseCandidate {
	f.passes <- struct{}{}
	return nil
}

func (countingFleet) SetRegression(string, *fleet.Regression) error { return nil }

func TestDetectorChecksEveryIntervalUntilShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := countingFleet{passes: make(chan struct{}, 10)}
		d := New(f, nil, Settings{Every: time.Minute})
		if err := d.Shutdown(t.Context()); err != nil {
			t.Fatalf("Shutdown before Start: %v", err)
		}
		if err := d.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(t.Context()); err == nil {
			t.Error("a second Start succeeded")
		}
		time.Sleep(3*time.Minute + time.Second) // fake time inside the bubble
		synctest.Wait()
		if n := len(f.passes); n != 3 {
			t.Errorf("%d checks in 3 intervals, want 3", n)
		}
		for range 2 {
			if err := d.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if n := len(f.passes); n != 3 {
			t.Errorf("%d checks after Shutdown, want none after the first 3", n-3)
		}
	})
}
