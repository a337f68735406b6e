// Package regression notices a deployment that went bad after a release: it
// compares each deployment's current release with the one it ran before, from
// the telemetry store's per-minute rollups, and tells the fleet registry when the
// new release is clearly worse (or no longer is).
package regression

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/periodic"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// Fleet is what the detector needs of the fleet registry.
type Fleet interface {
	ReleaseCandidates() []registry.ReleaseCandidate
	SetRegression(id string, reg *fleet.Regression) error
}

// Telemetry is what the detector needs of the telemetry store.
type Telemetry interface {
	CompareReleases(ctx context.Context, q telquery.CompareQuery) (telquery.Comparison, error)
}

// Thresholds say when a release is clearly worse. A release regressed when both
// sides have at least MinRequests requests and either its error rate or its p95
// latency crossed both its absolute and its relative threshold, so a jump from
// 0.1% to 0.3% errors, or from 2 ms to 5 ms, is not an alarm.
type Thresholds struct {
	// MinRequests is the least number of requests each release needs (default 20).
	MinRequests int64
	// ErrorRateIncrease is the least rise in error rate, absolute (default 0.05:
	// five percentage points).
	ErrorRateIncrease float64
	// ErrorRateRatio is the least factor by which the error rate rose (default 2).
	ErrorRateRatio float64
	// P95Increase is the least rise in p95 latency (default 100 ms).
	P95Increase time.Duration
	// P95Ratio is the least factor by which p95 latency rose (default 1.5).
	P95Ratio float64
}

// DefaultThresholds returns the thresholds documented on Thresholds.
func DefaultThresholds() Thresholds {
	return Thresholds{MinRequests: 20, ErrorRateIncrease: 0.05, ErrorRateRatio: 2, P95Increase: 100 * time.Millisecond, P95Ratio: 1.5}
}

// Settings configure a Detector; zero values take defaults.
type Settings struct {
	Thresholds Thresholds
	// Window is how much of each release is compared (default 30 minutes): the
	// first Window of the new release against the last Window of the previous.
	Window time.Duration
	// Every is how often the fleet is checked (default 30 s).
	Every  time.Duration
	Clock  clock.Clock
	Logger *slog.Logger
}

// Detector runs the comparison for every deployment that changed release.
type Detector struct {
	fleet Fleet
	tel   Telemetry
	th    Thresholds
	win   time.Duration
	every time.Duration
	clk   clock.Clock
	log   *slog.Logger

	loop *periodic.Loop
}

// New returns a detector over f and t.
func New(f Fleet, t Telemetry, s Settings) *Detector {
	d := &Detector{fleet: f, tel: t, th: s.Thresholds, win: s.Window, every: s.Every, clk: clock.Or(s.Clock), log: s.Logger}
	def := DefaultThresholds()
	if d.th.MinRequests <= 0 {
		d.th.MinRequests = def.MinRequests
	}
	if d.th.ErrorRateIncrease <= 0 {
		d.th.ErrorRateIncrease = def.ErrorRateIncrease
	}
	if d.th.ErrorRateRatio <= 0 {
		d.th.ErrorRateRatio = def.ErrorRateRatio
	}
	if d.th.P95Increase <= 0 {
		d.th.P95Increase = def.P95Increase
	}
	if d.th.P95Ratio <= 0 {
		d.th.P95Ratio = def.P95Ratio
	}
	if d.win <= 0 {
		d.win = 30 * time.Minute
	}
	if d.every <= 0 {
		d.every = 30 * time.Second
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.loop = periodic.New("regression detector", d.every, func(ctx context.Context) {
		if err := d.Check(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("regression check failed; will retry", "err", err)
		}
	})
	return d
}

// Start checks the fleet every interval until Shutdown. It fails only when called
// twice.
func (d *Detector) Start(ctx context.Context) error { return d.loop.Start(ctx, false) }

// Shutdown stops the checks and waits for one in progress, or until ctx ends. It is
// idempotent and safe without Start.
func (d *Detector) Shutdown(ctx context.Context) error { return d.loop.Shutdown(ctx) }

// Check compares every deployment that changed release once, now, and records
// what it finds. A deployment without enough data on both releases keeps its
// current verdict.
func (d *Detector) Check(ctx context.Context) error {
	var errs []error
	for _, c := range d.fleet.ReleaseCandidates() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cmp, err := d.tel.CompareReleases(ctx, telquery.CompareQuery{
			Filter: telquery.Filter{Deployment: c.ID, Release: c.Release}, Against: c.Previous, Window: d.win})
		if errors.Is(err, telquery.ErrInvalid) {
			continue // no request data on one of the releases yet
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("compare %s: %w", c.ID, err))
			continue
		}
		reg := d.Judge(cmp)
		if reg == nil && c.Regression == nil {
			continue
		}
		if reg != nil {
			reg.Since = d.clk.Now().UTC()
			if c.Regression == nil {
				d.log.Info("release regressed", "deployment", c.ID, "release", c.Release, "previous", c.Previous, "evidence", reg.Summary())
			}
		} else if c.Regression != nil && !d.enough(cmp) {
			continue // too little data now to overturn the verdict
		} else {
			d.log.Info("release no longer regressed", "deployment", c.ID, "release", c.Release)
		}
		if err := d.fleet.SetRegression(c.ID, reg); err != nil && !errors.Is(err, registry.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Detector) enough(c telquery.Comparison) bool {
	return c.Current.Requests >= d.th.MinRequests && c.Previous.Requests >= d.th.MinRequests
}

// Judge returns the regression a comparison shows, or nil when the current
// release is not clearly worse (or there is too little data to say).
func (d *Detector) Judge(c telquery.Comparison) *fleet.Regression {
	if !d.enough(c) {
		return nil
	}
	cur, prev := c.Current, c.Previous
	var worse []string
	if cur.ErrorRate-prev.ErrorRate >= d.th.ErrorRateIncrease && cur.ErrorRate >= d.th.ErrorRateRatio*prev.ErrorRate {
		worse = append(worse, "error_rate")
	}
	inc := float64(d.th.P95Increase) / float64(time.Millisecond)
	if cur.P95-prev.P95 >= inc && cur.P95 >= d.th.P95Ratio*prev.P95 {
		worse = append(worse, "p95")
	}
	if len(worse) == 0 {
		return nil
	}
	return &fleet.Regression{Release: cur.Release, Previous: prev.Release, Requests: cur.Requests, PreviousRequests: prev.Requests,
		ErrorRate: cur.ErrorRate, PreviousErrorRate: prev.ErrorRate, P95: cur.P95, PreviousP95: prev.P95, Worse: worse}
}
