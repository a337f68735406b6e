package telquery

import (
	"math"
	"slices"
	"testing"
)

// semconv are the semantic conventions' bounds for http.server.request.duration,
// which the agent's ingress proxy uses.
var semconv = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

func counts(pairs ...uint64) []uint64 {
	out := make([]uint64, len(semconv)+1)
	for i := 0; i < len(pairs); i += 2 {
		out[pairs[i]] = pairs[i+1]
	}
	return out
}

func TestQuantileInterpolatesInsideTheBucket(t *testing.T) {
	for _, c := range []struct {
		name   string
		h      Histogram
		q      float64
		want   float64
		wantOK bool
	}{
		// 100 values in (0.1, 0.25]: the median is halfway, 0.175.
		{"median of one bucket", Histogram{semconv, counts(6, 100)}, 0.5, 0.175, true},
		{"p99 of one bucket", Histogram{semconv, counts(6, 100)}, 0.99, 0.1 + 0.15*0.99, true},
		// 90 in (0.005, 0.01], 10 in (0.1, 0.25]: p50 is rank 50 of 90 in the
		// first, p95 rank 5 of 10 in the second.
		{"p50 of two buckets", Histogram{semconv, counts(1, 90, 6, 10)}, 0.5, 0.005 + 0.005*50/90, true},
		{"p95 of two buckets", Histogram{semconv, counts(1, 90, 6, 10)}, 0.95, 0.175, true},
		// Rank 90 is the last value of the first bucket: its upper bound.
		{"rank on a bucket's edge", Histogram{semconv, counts(1, 90, 6, 10)}, 0.9, 0.01, true},
		// The first bucket reaches down to 0.
		{"first bucket from zero", Histogram{semconv, counts(0, 4)}, 0.5, 0.0025, true},
		// Beyond the last bound there is no upper bound: the highest finite one.
		{"overflow bucket", Histogram{semconv, counts(14, 3)}, 0.5, 10, true},
		{"q=1", Histogram{semconv, counts(2, 1, 3, 1)}, 1, 0.05, true},
		{"q=0", Histogram{semconv, counts(2, 1, 3, 1)}, 0, 0, true},
		{"empty", Histogram{semconv, counts()}, 0.5, 0, false},
		{"no bounds", Histogram{nil, []uint64{5}}, 0.5, 0, false},
		{"q out of range", Histogram{semconv, counts(6, 100)}, 1.5, 0, false},
		{"counts do not match bounds", Histogram{semconv, []uint64{1, 2}}, 0.5, 0, false},
		{"bounds not increasing", Histogram{[]float64{1, 1}, []uint64{1, 1, 1}}, 0.5, 0, false},
		{"bound not finite", Histogram{[]float64{1, math.Inf(1)}, []uint64{1, 1, 1}}, 0.5, 0, false},
		{"negative first bound", Histogram{[]float64{-1, 1}, []uint64{2, 0, 0}}, 0.5, -1, true},
	} {
		got, ok := c.h.Quantile(c.q)
		if ok != c.wantOK || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: Quantile(%v) = %v, %v; want %v, %v", c.name, c.q, got, ok, c.want, c.wantOK)
		}
	}
}

func TestIncreaseOfCumulativePoints(t *testing.T) {
	other := []float64{0.1, 1}
	for _, c := range []struct {
		name       string
		last, base Histogram
		hasBase    bool
		want       []uint64
		wantOK     bool
	}{
		{"bucket by bucket", Histogram{semconv, counts(1, 90, 6, 10)}, Histogram{semconv, counts(1, 40, 6, 10)}, true, counts(1, 50), true},
		{"no baseline: all of it", Histogram{semconv, counts(1, 90)}, Histogram{}, false, counts(1, 90), true},
		// A bucket fell: the sender restarted, and last is what it counted since.
		{"reset", Histogram{semconv, counts(1, 5, 6, 30)}, Histogram{semconv, counts(1, 40, 6, 10)}, true, counts(1, 5, 6, 30), true},
		// New bounds mean a new configuration, hence a restart.
		{"bounds changed", Histogram{semconv, counts(1, 5)}, Histogram{other, []uint64{1, 2, 3}}, true, counts(1, 5), true},
		// The baseline was stored without buckets: the window's share is unknown.
		{"baseline without buckets", Histogram{semconv, counts(1, 5)}, Histogram{}, true, nil, false},
		{"last without buckets", Histogram{}, Histogram{semconv, counts(1, 5)}, true, nil, false},
	} {
		got, ok := Increase(c.last, c.base, c.hasBase)
		if ok != c.wantOK || !slices.Equal(got.Counts, c.want) {
			t.Errorf("%s: Increase = %v, %v; want %v, %v", c.name, got.Counts, ok, c.want, c.wantOK)
		}
	}
}

func TestAddMergesOnlyEqualBounds(t *testing.T) {
	var h Histogram
	if !h.Add(Histogram{semconv, counts(1, 2)}) || !h.Add(Histogram{semconv, counts(1, 3, 6, 1)}) {
		t.Fatal("adding histograms with the same bounds failed")
	}
	if !slices.Equal(h.Counts, counts(1, 5, 6, 1)) {
		t.Errorf("sum %v", h.Counts)
	}
	if h.Add(Histogram{[]float64{1}, []uint64{1, 1}}) || h.Total() != 6 {
		t.Errorf("other bounds were added: %v", h.Counts)
	}
	// Adding must not alias the first operand's slices.
	src := Histogram{semconv, counts(1, 1)}
	var g Histogram
	g.Add(src)
	g.Add(src)
	if src.Counts[1] != 1 {
		t.Errorf("Add changed its operand: %v", src.Counts)
	}
}
