// Package reach turns the failures of every part of the agent that talks to the
// manager (the OpAMP check-in, the forwarder of each signal, the context fetch)
// into one log line per change of state: the manager went down, it is still
// down (at a bounded rate, with the count of failed attempts), it is back.
//
// Without it a manager that is down for an hour made each part log each retry,
// several lines per attempt, each repeating the manager's URL twice.
package reach

import (
	"errors"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

// DefaultEvery is how often a manager that stays down is reported again.
const DefaultEvery = time.Minute

// Tracker keeps whether the manager is reachable. Its methods are safe for
// concurrent use; a nil *Tracker does nothing, so parts built without one
// (in tests) need no checks.
type Tracker struct {
	log     *slog.Logger
	clk     clock.Clock
	manager string
	every   time.Duration

	mu       sync.Mutex
	down     bool
	since    time.Time // when it went down
	attempts int       // failures since it went down
	lastLog  time.Time
}

// New returns a tracker for the manager at managerURL, logging to log (nil
// discards) with times from clk (nil is the wall clock), reporting a manager
// still down every every (DefaultEvery when zero or less).
func New(log *slog.Logger, clk clock.Clock, managerURL string, every time.Duration) *Tracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if every <= 0 {
		every = DefaultEvery
	}
	return &Tracker{log: log, clk: clk, manager: managerURL, every: every}
}

// Failed records a failed attempt to reach the manager: the first after it was
// up is logged at once; later ones only as a count, at most once per period.
func (t *Tracker) Failed(err error) {
	if t == nil {
		return
	}
	now := t.clk.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.down {
		t.down, t.since, t.attempts, t.lastLog = true, now, 1, now
		t.log.Warn("manager unreachable; retrying", "manager", t.manager, "error", Cause(err))
		return
	}
	t.attempts++
	if now.Sub(t.lastLog) >= t.every {
		t.lastLog = now
		t.log.Warn("manager still unreachable; retrying", "manager", t.manager, "for", now.Sub(t.since).Round(time.Second),
			"failed_attempts", t.attempts, "error", Cause(err))
	}
}

// OK records a successful exchange with the manager; after a failure it logs
// that the manager is back, with how long it was away.
func (t *Tracker) OK() {
	if t == nil {
		return
	}
	now := t.clk.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.down {
		return
	}
	t.log.Info("manager reachable again", "manager", t.manager, "after", now.Sub(t.since).Round(time.Second), "failed_attempts", t.attempts)
	t.down, t.attempts = false, 0
}

// Down reports whether the last attempt failed.
func (t *Tracker) Down() bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.down
}

// Cause is err without the request's URL, which the tracker's line already
// carries once: "dial tcp 127.0.0.1:7070: connect: connection refused" rather
// than `post URL: Post "URL": dial tcp …`.
func Cause(err error) string {
	if err == nil {
		return ""
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err.Error()
	}
	return err.Error()
}
