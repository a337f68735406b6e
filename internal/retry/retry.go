// Package retry is the one way Periscope retries a delivery: the forwarder, the
// exporters and the webhooks all decide with it what a failure means and how long to
// wait before the next attempt.
//
// A failure is one of three kinds:
//   - permanent (wrapped by Permanent): the destination will never accept this
//     request as it is, so the caller drops it instead of retrying;
//   - throttled (wrapped by Throttle, usually from a Retry-After header read with
//     ParseRetryAfter or ThrottleHeader): worth retrying, but not before the delay the
//     destination asked for;
//   - anything else: worth retrying after the caller's Backoff.
//
// Both wrappers keep the error they wrap, so errors.Is, errors.As and fmt.Errorf's %w
// see through them, and IsPermanent and RetryAfter find them anywhere in a chain.
//
// The package only decides; it does not loop or sleep. Callers wait with
// clock.Sleep, or schedule the next attempt themselves, so shutdown and fake clocks
// stay theirs.
//
// # Concurrency
//
// Backoff is a plain value and safe for concurrent use as long as its Rand is; the
// default source is. The error helpers have no state.
package retry

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff policy with jitter. The step before retry n
// (n = 1 after the first failure) is Initial·Multiplierⁿ⁻¹, capped at Max; jitter
// then takes a random part of up to Jitter of the step off, so retries of callers
// that failed together spread out while Max still bounds every wait the backoff
// chooses (a longer Retry-After can exceed it; see Delay). Its zero value never waits.
type Backoff struct {
	// Initial is the step before the first retry.
	Initial time.Duration
	// Max caps the step; zero or less means no cap below the longest Duration.
	Max time.Duration
	// Multiplier is how much each step grows; zero means 2, and values below 1
	// count as 1 (a constant step).
	Multiplier float64
	// Jitter is the fraction of a step, from 0 to 1, that randomness may take off
	// it: with 0.5 the wait is between half the step and the whole step.
	Jitter float64
	// Rand returns a number in [0, 1) for the jitter. Nil means math/rand/v2's
	// Float64, which is safe for concurrent use; inject one to make waits
	// predictable in tests.
	Rand func() float64
}

// Centred returns the policy whose waits spread evenly from half to one and a half
// times a step that starts at initial and doubles, as the forwarder's and the
// exporters' do: a wait falls in (step/2, 3·step/2], and never exceeds max, jitter
// included. Once the steps reach the cap, waits spread over (max/3, max].
func Centred(initial, max time.Duration) Backoff {
	// A step half as long again, less up to two thirds of it, is the same spread.
	// The cap applies to that step, which is the longest wait: capping the
	// doubling step at max instead let waits reach 1.5·max (45 s where a
	// 30 s cap was promised).
	return Backoff{Initial: initial * 3 / 2, Max: max, Jitter: 2.0 / 3}
}

// Step returns the unjittered wait before retry attempt (1 for the first retry;
// lower counts as 1).
func (b Backoff) Step(attempt int) time.Duration {
	step := b.Initial
	mult := b.Multiplier
	if mult == 0 {
		mult = 2
	}
	for i := 1; i < attempt && (b.Max <= 0 || step < b.Max); i++ {
		next := float64(step) * mult
		if next >= math.MaxInt64 {
			step = math.MaxInt64
			break
		}
		if time.Duration(next) <= step {
			break // a multiplier of 1 or less, or a zero step: it never grows
		}
		step = time.Duration(next)
	}
	if b.Max > 0 && step > b.Max {
		step = b.Max
	}
	return max(step, 0)
}

// Delay returns how long to wait before retry attempt after err: the jittered step,
// or the delay err asked for through Throttle when that is longer. err may be nil.
func (b Backoff) Delay(attempt int, err error) time.Duration {
	d := b.Step(attempt)
	if j := min(max(b.Jitter, 0), 1); j > 0 && d > 0 {
		r := rand.Float64
		if b.Rand != nil {
			r = b.Rand
		}
		d -= time.Duration(j * r() * float64(d))
	}
	if ra, ok := RetryAfter(err); ok && ra > d {
		d = ra
	}
	return d
}
