package pipeline

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
)

// Loss is what the pipeline dropped of the telemetry it had accepted, since it
// started.
type Loss struct {
	// Counts are dropped log records, spans and data points by "<signal>/<reason>"
	// (reasons: queue_full, expired, corrupt from the queue; refused, request,
	// encode, corrupt from the forwarder).
	Counts map[string]int64
	// Last is when the last of them was dropped.
	Last time.Time
}

// defaultLossInterval is the shortest time between two loss log lines and reports.
const defaultLossInterval = time.Minute

// lossTracker adds up dropped records and tells of them: the first drop at once,
// then at most once an interval with what was dropped since the last line, so a
// queue dropping for hours neither goes unnoticed nor fills the customer's disk.
type lossTracker struct {
	clk      clock.Clock
	log      *slog.Logger
	onLoss   func(Loss)
	interval time.Duration

	mu     sync.Mutex
	counts map[string]int64 // since start
	since  map[string]int64 // since the last line
	last   time.Time
	kick   chan struct{} // capacity 1: there is something to tell
}

func newLossTracker(clk clock.Clock, log *slog.Logger, onLoss func(Loss), interval time.Duration) *lossTracker {
	if interval <= 0 {
		interval = defaultLossInterval
	}
	return &lossTracker{clk: clk, log: log, onLoss: onLoss, interval: interval,
		counts: map[string]int64{}, since: map[string]int64{}, kick: make(chan struct{}, 1)}
}

// add counts n records of sig dropped for reason. It never blocks.
func (t *lossTracker) add(sig otlp.Signal, reason string, n int64) {
	if n <= 0 {
		return
	}
	key := sig.String() + "/" + reason
	t.mu.Lock()
	t.counts[key] += n
	t.since[key] += n
	t.last = t.clk.Now()
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default: // a kick is pending already
	}
}

// snapshot returns the loss since start.
func (t *lossTracker) snapshot() Loss {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Loss{Counts: maps.Clone(t.counts), Last: t.last}
}

// run tells of drops until ctx ends: at once after a quiet interval, else once the
// interval since the last line has passed. What is left is told on the way out.
func (t *lossTracker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			t.tell()
			return
		case <-t.kick:
		}
		t.tell()
		if !clock.Sleep(ctx, t.interval) {
			t.tell()
			return
		}
	}
}

// tell logs what was dropped since the last line and reports the totals, if
// anything was.
func (t *lossTracker) tell() {
	t.mu.Lock()
	if len(t.since) == 0 {
		t.mu.Unlock()
		return
	}
	since, first := t.since, len(t.counts) == len(t.since) && maps.Equal(t.counts, t.since)
	t.since = map[string]int64{}
	loss := Loss{Counts: maps.Clone(t.counts), Last: t.last}
	t.mu.Unlock()

	var n, total int64
	for _, v := range since {
		n += v
	}
	for _, v := range loss.Counts {
		total += v
	}
	msg := "dropped telemetry the agent had accepted"
	if first {
		msg = "dropping telemetry the agent had accepted; see periscope_agent_dropped_records_total"
	}
	t.log.Warn(msg, "records", n, "counts", since, "total_since_start", total, "last_at", loss.Last)
	if t.onLoss != nil {
		t.onLoss(loss)
	}
}
