// Package auditlog keeps the manager's audit log within its retention: a sweep
// that removes entries older than the configured retention, at start and then
// every hour. Removing the oldest entries is the only way an entry leaves the
// log; no API route changes or deletes one.
package auditlog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/periodic"
	"github.com/periscope-dev/periscope/internal/store"
)

// DefaultEvery is how often the sweep runs: an entry outlives its retention by
// at most this long, which against a retention of days or a year is nothing.
const DefaultEvery = time.Hour

// Settings are the sweep's knobs; zero values are safe except Retention.
type Settings struct {
	// Retention is how long an entry is kept (config audit.retention).
	Retention time.Duration
	// Every is how often the sweep runs (DefaultEvery when zero).
	Every  time.Duration
	Clock  clock.Clock
	Logger *slog.Logger
}

// Sweeper removes audit entries past their retention. New starts nothing;
// Start runs the sweep, Shutdown stops it.
type Sweeper struct {
	st   store.Audit
	set  Settings
	clk  clock.Clock
	log  *slog.Logger
	loop *periodic.Loop
}

// New returns a sweeper over st; it refuses a retention that is not positive.
func New(st store.Audit, s Settings) (*Sweeper, error) {
	if s.Retention <= 0 {
		return nil, fmt.Errorf("audit retention must be positive, got %s", s.Retention)
	}
	if s.Every <= 0 {
		s.Every = DefaultEvery
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	sw := &Sweeper{st: st, set: s, clk: clock.Or(s.Clock), log: s.Logger}
	sw.loop = periodic.New("audit retention sweep", s.Every, func(ctx context.Context) {
		if _, err := sw.Sweep(ctx); err != nil && ctx.Err() == nil {
			sw.log.Warn("audit retention sweep failed; will retry", "err", err, "in", s.Every)
		}
	})
	return sw, nil
}

// Sweep removes the entries older than the retention, now, and says how many.
func (s *Sweeper) Sweep(ctx context.Context) (int64, error) {
	cutoff := s.clk.Now().Add(-s.set.Retention)
	n, err := s.st.PruneAudit(ctx, cutoff)
	if err != nil {
		return 0, fmt.Errorf("audit retention sweep: %w", err)
	}
	if n > 0 {
		s.log.Info("audit entries past retention removed", "entries", n, "before", cutoff.UTC(), "retention", s.set.Retention)
	}
	return n, nil
}

// Start sweeps in the background: once at once, so a manager restarted more
// often than Every still sweeps, and then every Every.
func (s *Sweeper) Start(ctx context.Context) error { return s.loop.Start(ctx, true) }

// Shutdown stops the sweep and waits for one in progress, or until ctx ends. It
// is idempotent and safe without Start.
func (s *Sweeper) Shutdown(ctx context.Context) error { return s.loop.Shutdown(ctx) }
