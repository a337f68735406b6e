package retry_test

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/retry"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{" 7 ", 7 * time.Second, true}, // optional whitespace is not part of the value
		{"007", 7 * time.Second, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second, true},
		{now.Add(90 * time.Second).Format(time.ANSIC), 90 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true}, // past: retry now
		{now.Format(http.TimeFormat), 0, true},
		{"99999999999999999999", math.MaxInt64, true}, // saturates, never wraps negative
		{"9223372036854775807", math.MaxInt64, true},
		{"", 0, false},
		{"   ", 0, false},
		{"-1", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"Fri, 32 Jan 2026 00:00:00 GMT", 0, false},
	} {
		if d, ok := retry.ParseRetryAfter(tc.in, now); d != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, d, ok, tc.want, tc.ok)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	base := errors.New("boom")
	if retry.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	if retry.Throttle(nil, time.Second) != nil {
		t.Error("Throttle(nil, 1s) != nil")
	}
	if retry.IsPermanent(base) || retry.IsPermanent(nil) {
		t.Error("plain or nil error reported permanent")
	}
	wrapped := fmt.Errorf("exporter %q: %w", "x", retry.Permanent(base))
	if !retry.IsPermanent(wrapped) || !errors.Is(wrapped, base) {
		t.Errorf("wrapped permanent error lost: permanent=%v is=%v", retry.IsPermanent(wrapped), errors.Is(wrapped, base))
	}
	if wrapped.Error() != `exporter "x": boom` {
		t.Errorf("message = %q", wrapped.Error())
	}
	var pe *retry.PermanentError
	if !errors.As(wrapped, &pe) || pe.Unwrap() != base {
		t.Errorf("errors.As(%v, *PermanentError) = %v", wrapped, pe)
	}
	if _, ok := retry.RetryAfter(base); ok {
		t.Error("RetryAfter on a plain error reported a delay")
	}
	if _, ok := retry.RetryAfter(nil); ok {
		t.Error("RetryAfter on nil reported a delay")
	}
	throttled := fmt.Errorf("ctx: %w", retry.Throttle(base, 3*time.Second))
	if d, ok := retry.RetryAfter(throttled); !ok || d != 3*time.Second {
		t.Errorf("RetryAfter = %v, %v; want 3s, true", d, ok)
	}
	if retry.IsPermanent(throttled) || !errors.Is(throttled, base) || throttled.Error() != "ctx: boom" {
		t.Errorf("throttled error = %v (permanent %v), want a retryable wrapper of boom", throttled, retry.IsPermanent(throttled))
	}
	var te *retry.ThrottleError
	if !errors.As(throttled, &te) || te.After() != 3*time.Second {
		t.Errorf("errors.As(%v, *ThrottleError) = %v", throttled, te)
	}
	if d, ok := retry.RetryAfter(retry.Throttle(base, -time.Second)); !ok || d != 0 {
		t.Errorf("RetryAfter of a negative throttle = %v, %v; want 0, true", d, ok)
	}
	// Both kinds in one chain: permanent wins for the caller, the delay is still readable.
	both := fmt.Errorf("outer: %w", retry.Permanent(fmt.Errorf("inner: %w", retry.Throttle(base, time.Minute))))
	if d, ok := retry.RetryAfter(both); !retry.IsPermanent(both) || !ok || d != time.Minute {
		t.Errorf("permanent over throttle: permanent %v, RetryAfter %v, %v", retry.IsPermanent(both), d, ok)
	}
	// The zero values still print something instead of panicking.
	if (&retry.PermanentError{}).Error() == "" || (&retry.ThrottleError{}).Error() == "" {
		t.Error("zero wrappers have no message")
	}
}

func TestThrottleHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	base := errors.New("503")
	for _, tc := range []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"", 0, false},
		{"garbage", 0, false},
		{"4", 4 * time.Second, true},
		{now.Add(time.Minute).Format(http.TimeFormat), time.Minute, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		err := retry.ThrottleHeader(base, h, now)
		if d, ok := retry.RetryAfter(err); d != tc.want || ok != tc.ok || !errors.Is(err, base) {
			t.Errorf("ThrottleHeader(Retry-After: %q) = %v: RetryAfter %v, %v; want %v, %v", tc.header, err, d, ok, tc.want, tc.ok)
		}
	}
	if retry.ThrottleHeader(nil, http.Header{"Retry-After": {"1"}}, now) != nil {
		t.Error("ThrottleHeader(nil) != nil")
	}
}

func TestBackoffStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    retry.Backoff
		want []time.Duration // for attempts 1, 2, …
	}{
		{"doubles up to the cap", retry.Backoff{Initial: time.Second, Max: 10 * time.Second},
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}},
		{"multiplier", retry.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 3},
			[]time.Duration{time.Second, 3 * time.Second, 9 * time.Second, 27 * time.Second, time.Minute}},
		{"fractional multiplier", retry.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 1.5},
			[]time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 225 * time.Millisecond}},
		{"constant", retry.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 1},
			[]time.Duration{time.Second, time.Second, time.Second}},
		{"shrinking multiplier counts as 1", retry.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 0.5},
			[]time.Duration{time.Second, time.Second}},
		{"initial above the cap", retry.Backoff{Initial: time.Minute, Max: time.Second},
			[]time.Duration{time.Second, time.Second}},
		{"no cap", retry.Backoff{Initial: time.Hour},
			[]time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour}},
		{"zero value", retry.Backoff{}, []time.Duration{0, 0, 0}},
	} {
		for i, want := range tc.want {
			if got := tc.b.Step(i + 1); got != want {
				t.Errorf("%s: Step(%d) = %v, want %v", tc.name, i+1, got, want)
			}
		}
	}
	b := retry.Backoff{Initial: time.Second, Max: time.Minute}
	if b.Step(0) != time.Second || b.Step(-3) != time.Second {
		t.Errorf("Step(0), Step(-3) = %v, %v; want the first step", b.Step(0), b.Step(-3))
	}
	// Far past the cap, and with no cap at all, the step neither overflows nor loops long.
	if got := b.Step(math.MaxInt); got != time.Minute {
		t.Errorf("Step(MaxInt) = %v, want the cap", got)
	}
	if got := (retry.Backoff{Initial: time.Second}).Step(math.MaxInt); got != math.MaxInt64 {
		t.Errorf("uncapped Step(MaxInt) = %v, want the longest Duration", got)
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      retry.Backoff
		step   time.Duration // Step(1)
		lo, hi time.Duration // Delay(1) for Rand 0 and for Rand just under 1
	}{
		{"no jitter", retry.Backoff{Initial: time.Second, Max: time.Minute}, time.Second, time.Second, time.Second},
		{"half", retry.Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.5}, time.Second, time.Second, 500 * time.Millisecond},
		{"all", retry.Backoff{Initial: time.Second, Max: time.Minute, Jitter: 1}, time.Second, time.Second, 0},
		{"over 1 counts as 1", retry.Backoff{Initial: time.Second, Max: time.Minute, Jitter: 7}, time.Second, time.Second, 0},
		{"negative counts as 0", retry.Backoff{Initial: time.Second, Max: time.Minute, Jitter: -1}, time.Second, time.Second, time.Second},
		{"centred", retry.Centred(time.Second, time.Minute), 1500 * time.Millisecond, 1500 * time.Millisecond, 500 * time.Millisecond},
	} {
		for _, r := range []struct {
			r    float64
			want time.Duration
		}{{0, tc.lo}, {math.Nextafter(1, 0), tc.hi}} {
			b := tc.b
			b.Rand = func() float64 { return r.r }
			if got := b.Step(1); got != tc.step {
				t.Errorf("%s: Step(1) = %v, want %v", tc.name, got, tc.step)
			}
			// Rand just under 1 lands within a nanosecond of the lower bound.
			if got := b.Delay(1, nil); got < r.want-time.Nanosecond || got > r.want+time.Nanosecond {
				t.Errorf("%s: Delay(1) with Rand %v = %v, want %v", tc.name, r.r, got, r.want)
			}
		}
	}
}

// TestCentredBounds checks the forwarder's and exporters' policy over many draws:
// every wait is within half to one and a half times the doubling step, and never
// longer than the limit, jitter included (the agent's docs promise 30 s).
func TestCentredBounds(t *testing.T) {
	const limit = 30 * time.Second
	b := retry.Centred(500*time.Millisecond, limit)
	for attempt := 1; attempt <= 12; attempt++ {
		base := 500 * time.Millisecond << (attempt - 1)
		lo, hi := base/2, min(base*3/2, limit)
		if base*3/2 > limit {
			lo = limit / 3
		}
		for range 200 {
			if d := b.Delay(attempt, nil); d <= lo || d > hi {
				t.Fatalf("Delay(%d) = %v, want in (%v, %v]", attempt, d, lo, hi)
			}
		}
	}
}

// The longest wait the centred policy can draw, whatever the attempt, is its
// limit: the draw that takes no jitter off lands exactly on it, and no draw above.
func TestCentredCapIncludesJitter(t *testing.T) {
	for _, limit := range []time.Duration{30 * time.Second, time.Minute} {
		for _, r := range []float64{0, 0.25, 0.5, math.Nextafter(1, 0)} {
			b := retry.Centred(500*time.Millisecond, limit)
			b.Rand = func() float64 { return r }
			for attempt := 1; attempt <= 40; attempt++ {
				if d := b.Delay(attempt, nil); d > limit {
					t.Fatalf("limit %v, draw %v: Delay(%d) = %v", limit, r, attempt, d)
				}
			}
			if d := b.Delay(40, nil); r == 0 && d != limit {
				t.Errorf("limit %v: the longest wait is %v, want the limit itself", limit, d)
			}
		}
	}
}

func TestDelayHonoursRetryAfter(t *testing.T) {
	b := retry.Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.5, Rand: func() float64 { return 0 }}
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"nil error", nil, 4 * time.Second},
		{"plain error", io.EOF, 4 * time.Second},
		{"longer Retry-After wins", fmt.Errorf("x: %w", retry.Throttle(io.EOF, 10*time.Second)), 10 * time.Second},
		{"shorter Retry-After keeps the backoff", retry.Throttle(io.EOF, time.Second), 4 * time.Second},
		{"zero Retry-After keeps the backoff", retry.Throttle(io.EOF, 0), 4 * time.Second},
		{"Retry-After beyond the cap", retry.Throttle(io.EOF, time.Hour), time.Hour},
	} {
		if got := b.Delay(3, tc.err); got != tc.want {
			t.Errorf("%s: Delay(3) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func ExampleBackoff_Delay() {
	b := retry.Backoff{Initial: time.Second, Max: 5 * time.Second, Jitter: 0.5,
		Rand: func() float64 { return 0.5 }} // a fixed draw: a quarter of each step off
	for attempt := 1; attempt <= 4; attempt++ {
		fmt.Println(b.Delay(attempt, nil))
	}
	// A destination's Retry-After wins when it is longer.
	fmt.Println(b.Delay(1, retry.Throttle(errors.New("429"), 30*time.Second)))
	// Output:
	// 750ms
	// 1.5s
	// 3s
	// 3.75s
	// 30s
}
