package retry

import (
	"errors"
	"net/http"
	"time"
)

// PermanentError marks a failure that retrying cannot fix. Create it with Permanent
// and test for it with IsPermanent (or errors.As).
type PermanentError struct{ err error }

// Error returns the wrapped error's message unchanged.
func (e *PermanentError) Error() string {
	if e.err == nil {
		return "permanent error"
	}
	return e.err.Error()
}

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.err }

// Permanent wraps an error the destination will never accept as it is (HTTP 400,
// an undecodable batch), so the caller drops the request instead of retrying it.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked by Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// ThrottleError is a retryable failure that carries how long the destination asked
// the caller to wait (an HTTP Retry-After, a gRPC RetryInfo). Create it with
// Throttle and read it with RetryAfter (or errors.As).
type ThrottleError struct {
	err   error
	after time.Duration
}

// Error returns the wrapped error's message unchanged.
func (e *ThrottleError) Error() string {
	if e.err == nil {
		return "throttled"
	}
	return e.err.Error()
}

// Unwrap returns the wrapped error.
func (e *ThrottleError) Unwrap() error { return e.err }

// After returns the delay the destination asked for.
func (e *ThrottleError) After() time.Duration { return e.after }

// Throttle wraps a retryable error with the delay the destination asked for before
// the next attempt; a negative d counts as zero. Throttle(nil, d) is nil.
func Throttle(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &ThrottleError{err: err, after: max(d, 0)}
}

// RetryAfter reports the delay carried by the first ThrottleError in err's chain,
// if there is one. A zero delay with true means the destination asked for no wait
// (a Retry-After of 0 or a date already past).
func RetryAfter(err error) (time.Duration, bool) {
	var t *ThrottleError
	if errors.As(err, &t) {
		return t.after, true
	}
	return 0, false
}

// ThrottleHeader wraps err with the delay in h's Retry-After field when it has a
// valid one (see ParseRetryAfter), and returns err unchanged otherwise.
func ThrottleHeader(err error, h http.Header, now time.Time) error {
	if d, ok := ParseRetryAfter(h.Get("Retry-After"), now); ok {
		return Throttle(err, d)
	}
	return err
}
