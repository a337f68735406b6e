package telstore

import (
	"database/sql/driver"
	"math"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Latency histogram of the rollups: bucket b holds durations in
// (bucketBase·growth^(b-1), bucketBase·growth^b], growth = 2^(1/8), so a percentile
// read from it is within 9% of the true value; bucket 0 holds everything up to
// 1µs and the last everything above about an hour.
const (
	nBuckets   = 256
	bucketBase = 1e3 // ns
)

var logGrowth = math.Log(2) / 8

// bucketOf returns the histogram bucket of a duration in nanoseconds.
func bucketOf(ns int64) int {
	if ns <= bucketBase {
		return 0
	}
	b := int(math.Ceil(math.Log(float64(ns)/bucketBase) / logGrowth))
	return min(max(b, 0), nBuckets-1)
}

// bucketUpper is the upper bound of bucket b in nanoseconds.
func bucketUpper(b int) float64 { return bucketBase * math.Exp(float64(b)*logGrowth) }

// hist is a latency histogram over the rollup buckets.
type hist [nBuckets]int64

// quantile estimates the q-quantile in nanoseconds, interpolating inside the
// bucket geometrically (durations spread evenly on a log scale).
func (h *hist) quantile(q float64) float64 {
	var total int64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for b, n := range h {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			if b == 0 {
				return bucketBase
			}
			frac := (rank - seen) / float64(n)
			lo := bucketUpper(b - 1)
			return lo * math.Exp(frac*logGrowth)
		}
		seen += float64(n)
	}
	return bucketUpper(nBuckets - 1)
}

// redKey is one rollup row: a minute and the context it aggregates.
type redKey struct {
	minute int64 // unix seconds
	ctx    [cFunction + 1]string
}

type redAcc struct {
	requests, errors int64
	durationNS       float64
	h                hist
}

// rollup accumulates RED figures of entry spans per minute and context.
type rollup map[redKey]*redAcc

// statusError is OTLP's STATUS_CODE_ERROR.
const statusError = 2

func (r rollup) add(s *spanRow) {
	if !s.entry {
		return
	}
	k := redKey{minute: s.start.Unix() / 60 * 60}
	copy(k.ctx[:], s.res.ctx[:cFunction])
	k.ctx[cFunction] = s.function
	a := r[k]
	if a == nil {
		a = &redAcc{}
		r[k] = a
	}
	a.requests++
	if s.status == statusError {
		a.errors++
	}
	a.durationNS += float64(s.durationNS)
	a.h[bucketOf(s.durationNS)]++
}

// merge adds o's figures to r.
func (r rollup) merge(o rollup) {
	for k, b := range o {
		a := r[k]
		if a == nil {
			r[k] = b
			continue
		}
		a.requests += b.requests
		a.errors += b.errors
		a.durationNS += b.durationNS
		for i, n := range b.h {
			a.h[i] += n
		}
	}
}

// append writes the accumulated rows to red_minute and red_hist. Rows for the same
// key from several flushes are summed by the queries.
func (r rollup) append(dc driver.Conn) error {
	mins, err := duckdb.NewAppender(dc, "", "", "red_minute")
	if err != nil {
		return err
	}
	hists, err := duckdb.NewAppender(dc, "", "", "red_hist")
	if err != nil {
		mins.Close()
		return err
	}
	row := make([]driver.Value, 0, 16)
	fail := func(err error) error {
		mins.Close()
		hists.Close()
		return err
	}
	for k, a := range r {
		minute := time.Unix(k.minute, 0).UTC()
		row = append(row[:0], minute)
		for _, v := range k.ctx {
			row = append(row, v)
		}
		if err := mins.AppendRow(append(row, a.requests, a.errors, a.durationNS)...); err != nil {
			return fail(err)
		}
		for b, n := range a.h {
			if n == 0 {
				continue
			}
			if err := hists.AppendRow(append(row, uint8(b), n)...); err != nil {
				return fail(err)
			}
		}
	}
	if err := mins.Close(); err != nil {
		hists.Close()
		return err
	}
	return hists.Close()
}
