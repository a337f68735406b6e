package store

import (
	"strconv"
	"strings"
	"time"
)

// EncodeCursor is the position after a row of a newest-first page ordered by a
// time and a sequence number, for the next page's query. The fleet stores
// and the telemetry store page so.
func EncodeCursor(t time.Time, seq int64) string {
	return strconv.FormatInt(t.UnixMicro(), 36) + "." + strconv.FormatInt(seq, 36)
}

// DecodeCursor reads what EncodeCursor wrote; ok is false for anything else.
func DecodeCursor(s string) (t time.Time, seq int64, ok bool) {
	a, b, cut := strings.Cut(s, ".")
	us, err1 := strconv.ParseInt(a, 36, 64)
	seq, err2 := strconv.ParseInt(b, 36, 64)
	if !cut || err1 != nil || err2 != nil || seq < 0 {
		return time.Time{}, 0, false
	}
	return time.UnixMicro(us).UTC(), seq, true
}
