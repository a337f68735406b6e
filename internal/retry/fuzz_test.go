package retry

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseRetryAfter: whatever a server sends as Retry-After, the delay is never
// negative, and a plain number of seconds is taken exactly (or saturates).
func FuzzParseRetryAfter(f *testing.F) {
	for _, v := range []string{"120", "0", " 5 ", "-1", "1.5", "+3", "Wed, 21 Oct 2015 07:28:00 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "99999999999999999999", "9223372036"} {
		f.Add(v)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Errorf("ParseRetryAfter(%q) = %v with ok false", v, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, negative", v, d)
		}
		s := strings.TrimSpace(v)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && strings.Trim(s, "0123456789") == "" {
			want := time.Duration(math.MaxInt64)
			if n <= math.MaxInt64/int64(time.Second) {
				want = time.Duration(n) * time.Second
			}
			if d != want {
				t.Errorf("ParseRetryAfter(%q) = %v, want %v", v, d, want)
			}
		}
	})
}
