package registry

import (
	"maps"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
)

// counts is the unfiltered Summary kept as deployments change, so reading it
// costs nothing at 100,000 deployments. Every change reaches it through
// setEvaluationLocked, the one place an entry's evaluation is replaced.
type counts struct {
	mu sync.Mutex
	s  Summary
	// due is the earliest instant at which time alone may change some kept
	// evaluation (fleet.NextChange), zero when none can. It only moves earlier
	// between sweeps: a sweep computes it afresh.
	due time.Time
	// sweeping and sweepDue collect due during a sweep (evaluateAllLocked),
	// including changes made while it runs.
	sweeping bool
	sweepDue time.Time
	// swept is when the last sweep began.
	swept time.Time
}

// fullSweepEvery bounds the time between two sweeps of the whole fleet even
// when no evaluation is due, in case the clock stepped back.
const fullSweepEvery = time.Minute

func newCounts() *counts { return &counts{s: newSummer().s} }

// kept is what an entry contributes to the counts, as last counted.
type kept struct {
	in      bool
	release string
	ev      fleet.Evaluation
}

func (c *counts) addLocked(k kept, sign int) {
	if !k.in {
		return
	}
	s := &c.s
	s.Total += sign
	s.ByStatus[k.ev.Status] += sign
	bump(s.ByRelease, k.release, sign)
	if k.ev.Behind != "" {
		bump(s.Behind, k.ev.Behind, sign)
	}
	if k.ev.Pinned {
		s.Pinned += sign
	}
}

// bump adds sign to m[key], leaving out keys that reach zero so the counts
// name only what some deployment has, as a summary from scratch does.
func bump[K comparable](m map[K]int, key K, sign int) {
	if n := m[key] + sign; n != 0 {
		m[key] = n
	} else {
		delete(m, key)
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// setEvaluationLocked makes ev deployment e's kept evaluation, the one
// Summary, filtered counts and lists read, and moves its contribution to the
// fleet's counts; ev nil takes e out of them (it was deleted). Every change to
// what Evaluate reads of a deployment must end here, through evaluateLocked,
// including changes merged from elsewhere. The caller holds r.mu (either way)
// and e.mu.
func (r *Registry) setEvaluationLocked(e *entry, ev *fleet.Evaluation) {
	next := kept{}
	var due time.Time
	if ev != nil {
		next = kept{in: true, release: e.d.RunningRelease, ev: *ev}
		due = fleet.NextChange(&e.d, *ev, r.params)
	}
	c := r.counts
	c.mu.Lock()
	c.addLocked(e.kept, -1)
	c.addLocked(next, +1)
	if !due.IsZero() {
		c.due = earliest(c.due, due)
		if c.sweeping {
			c.sweepDue = earliest(c.sweepDue, due)
		}
	}
	c.mu.Unlock()
	e.kept = next
}

// beginSweep and endSweep bracket a sweep of the whole fleet, which finds
// the earliest next change afresh. Sweeps are serialised by r.sweepMu.
func (c *counts) beginSweep(now time.Time) {
	c.mu.Lock()
	c.sweeping, c.sweepDue, c.swept = true, time.Time{}, now
	c.mu.Unlock()
}

func (c *counts) endSweep() {
	c.mu.Lock()
	c.sweeping, c.due = false, c.sweepDue
	c.mu.Unlock()
}

// summary copies the counts.
func (c *counts) summary() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.ByStatus, s.ByRelease, s.Behind = maps.Clone(s.ByStatus), maps.Clone(s.ByRelease), maps.Clone(s.Behind)
	return s
}

// refresh re-evaluates the fleet when time alone may have changed a kept
// evaluation since the last sweep (a deployment turned stale), so reads agree
// with an evaluation at this instant, and the timer's sweep costs nothing
// while no deployment is due. The caller holds no registry lock.
func (r *Registry) refresh() {
	now := r.clk.Now()
	r.counts.mu.Lock()
	due, swept := r.counts.due, r.counts.swept
	r.counts.mu.Unlock()
	if (!due.IsZero() && !now.Before(due)) || now.Sub(swept) >= fullSweepEvery || now.Before(swept) {
		r.evaluateAll()
	}
}
