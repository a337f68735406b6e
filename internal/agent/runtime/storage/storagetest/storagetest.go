// Package storagetest holds what the storage sources' tests share: one
// collection as the collector runs it, and lookups of the figures it made.
package storagetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
)

// Now is the time every collection in tests is stamped with.
var Now = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

// Collect runs one collection stamped Now, bounded as the collector bounds it.
func Collect(t *testing.T, src runtime.Source) (pmetric.MetricSlice, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := pmetric.NewMetricSlice()
	err := src.Collect(ctx, Now, ms)
	return ms, err
}

// Points returns the points of the metric called name whose attributes hold
// every key, value pair of kv, checking the metric's unit on the way.
func Points(t *testing.T, ms pmetric.MetricSlice, name, unit string, kv ...string) []pmetric.NumberDataPoint {
	t.Helper()
	var out []pmetric.NumberDataPoint
	for i := 0; i < ms.Len(); i++ {
		m := ms.At(i)
		if m.Name() != name {
			continue
		}
		if m.Unit() != unit {
			t.Errorf("%s: unit %q, want %q", name, m.Unit(), unit)
		}
		var pts pmetric.NumberDataPointSlice
		switch m.Type() {
		case pmetric.MetricTypeGauge:
			pts = m.Gauge().DataPoints()
		case pmetric.MetricTypeSum:
			pts = m.Sum().DataPoints()
		default:
			t.Fatalf("%s: type %s", name, m.Type())
		}
	next:
		for j := 0; j < pts.Len(); j++ {
			p := pts.At(j)
			for k := 0; k+1 < len(kv); k += 2 {
				v, ok := p.Attributes().Get(kv[k])
				if !ok || v.AsString() != kv[k+1] {
					continue next
				}
			}
			if p.Timestamp().AsTime() != Now {
				t.Errorf("%s: stamped %s, want %s", name, p.Timestamp().AsTime(), Now)
			}
			out = append(out, p)
		}
	}
	return out
}

// Value is the one point of name matching kv, as an integer.
func Value(t *testing.T, ms pmetric.MetricSlice, name, unit string, kv ...string) int64 {
	t.Helper()
	pts := Points(t, ms, name, unit, kv...)
	if len(pts) != 1 {
		t.Fatalf("%s %v: %d points, want 1 (metrics: %v)", name, kv, len(pts), Names(ms))
	}
	return pts[0].IntValue()
}

// Partial says whether a point is marked periscope.partial=true.
func Partial(p pmetric.NumberDataPoint) bool {
	v, ok := p.Attributes().Get("periscope.partial") // storage.AttrPartial; this package is imported by storage's own tests
	return ok && v.Bool()
}

// Names lists the metrics' names, for failure messages.
func Names(ms pmetric.MetricSlice) []string {
	var out []string
	for i := 0; i < ms.Len(); i++ {
		out = append(out, ms.At(i).Name())
	}
	return out
}

// Unreachable checks a source pointed at nothing: Collect fails, the error
// names the source, and no metric is sent.
func Unreachable(t *testing.T, src runtime.Source) {
	t.Helper()
	ms, err := Collect(t, src)
	if err == nil {
		t.Fatal("Collect succeeded against nothing")
	}
	if want := "storage source " + src.Name() + ":"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the source (%q)", err, want)
	}
	if ms.Len() != 0 {
		t.Errorf("sent metrics %v from a source that collected nothing", Names(ms))
	}
}

// Build runs a source constructor (storage.New, s3bucket.New, …) on c and
// env, failing the test if it refuses. It is generic so that package
// storage's own tests can use it without an import cycle.
func Build[C any](t *testing.T, build func(C, []string) (runtime.Source, error), c C, env ...string) runtime.Source {
	t.Helper()
	src, err := build(c, env)
	if err != nil {
		t.Fatalf("build %+v: %v", c, err)
	}
	return src
}
