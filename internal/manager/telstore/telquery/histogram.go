package telquery

import (
	"math"
	"slices"
)

// MaxHistogramBuckets bounds the buckets of one stored histogram point; a point
// with more is stored with its count and sum only.
const MaxHistogramBuckets = 256

// Histogram is an explicit-bucket histogram as OTLP carries it: Counts[i]
// counts the values in (Bounds[i-1], Bounds[i]], the first bucket reaching down
// to -Inf and the last, Counts[len(Bounds)], up to +Inf. It is plain data and
// arithmetic, with nothing of any store, so every store implementation and
// reader shares it.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
}

// Valid reports whether h has buckets that can be read: one more count than
// bounds, at most MaxHistogramBuckets, and finite bounds in increasing order.
func (h Histogram) Valid() bool {
	if len(h.Counts) == 0 || len(h.Counts) != len(h.Bounds)+1 || len(h.Counts) > MaxHistogramBuckets {
		return false
	}
	for i, b := range h.Bounds {
		if math.IsNaN(b) || math.IsInf(b, 0) || (i > 0 && b <= h.Bounds[i-1]) {
			return false
		}
	}
	return true
}

// Total is the number of values h counts.
func (h Histogram) Total() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Increase is what a cumulative series counted between its points base and
// last: bucket by bucket, last minus base. Without a baseline (hasBase false:
// the series started within the window) it is last. When a bucket of last holds
// less than base's, or the bounds changed, the series restarted in between (the
// sender's counters went back to zero), and last, counted since that restart,
// is the increase, as Prometheus's increase() takes a counter reset. ok is false
// when last is not a valid histogram, or there is a baseline without buckets
// (stored before they were kept): last whole would count more than the window.
func Increase(last, base Histogram, hasBase bool) (Histogram, bool) {
	if !last.Valid() || (hasBase && !base.Valid()) {
		return Histogram{}, false
	}
	if !hasBase || !slices.Equal(last.Bounds, base.Bounds) {
		return last, true
	}
	out := Histogram{Bounds: last.Bounds, Counts: make([]uint64, len(last.Counts))}
	for i, c := range last.Counts {
		if c < base.Counts[i] {
			return last, true // reset
		}
		out.Counts[i] = c - base.Counts[i]
	}
	return out, true
}

// Add adds o's counts to h's. An empty h takes o's bounds; ok is false, and h
// is unchanged, when o is invalid or its bounds differ from h's: counts over
// different buckets cannot be summed without inventing where values lay.
func (h *Histogram) Add(o Histogram) bool {
	if !o.Valid() {
		return false
	}
	if len(h.Counts) == 0 {
		*h = Histogram{Bounds: slices.Clone(o.Bounds), Counts: slices.Clone(o.Counts)}
		return true
	}
	if !slices.Equal(h.Bounds, o.Bounds) {
		return false
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	return true
}

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) of the values h counts as
// Prometheus's histogram_quantile does: it finds the bucket holding the value
// of rank q·total and interpolates linearly between the bucket's bounds,
// assuming the values spread evenly inside it. The first bucket's lower bound
// is 0 when its upper bound is positive (durations and sizes are never
// negative); a rank in the last bucket, which has no upper bound, answers the
// highest finite bound. ok is false when h is invalid or empty, or q is out of
// range, or h has no bounds (one bucket of everything).
func (h Histogram) Quantile(q float64) (v float64, ok bool) {
	if !h.Valid() || len(h.Bounds) == 0 || q < 0 || q > 1 || math.IsNaN(q) {
		return 0, false
	}
	total := h.Total()
	if total == 0 {
		return 0, false
	}
	rank := q * float64(total)
	var below uint64
	b := 0
	for ; b < len(h.Counts)-1; b++ {
		if float64(below+h.Counts[b]) >= rank {
			break
		}
		below += h.Counts[b]
	}
	if b == len(h.Bounds) {
		return h.Bounds[len(h.Bounds)-1], true
	}
	upper := h.Bounds[b]
	lower := 0.0
	if b > 0 {
		lower = h.Bounds[b-1]
	} else if upper <= 0 {
		return upper, true
	}
	if h.Counts[b] == 0 {
		return lower, true // q = 0 before any value
	}
	return lower + (upper-lower)*(rank-float64(below))/float64(h.Counts[b]), true
}
