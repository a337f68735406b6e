package retry

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter reads a Retry-After field value as RFC 9110 section 10.2.3 defines
// it: delay-seconds (one or more digits) or an HTTP-date, in any of the three formats
// a recipient must accept. A date is turned into the delay from now, zero when it has
// passed; a number too large for a Duration saturates. ok is false when v is empty
// or neither form (a sign, a fraction, a word), so the caller falls back on its own
// backoff.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > math.MaxInt64/int64(time.Second) {
			return math.MaxInt64, true // only digits, so only too many of them
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
