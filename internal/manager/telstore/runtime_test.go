package telstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// runtimeRound is one collection round as the agent's runtime collector sends
// it: a queue depth gauge and the ingress proxy's cumulative request counter.
func runtimeRound(t *testing.T, at time.Time, depth int64, requests int64) consumer.Batch {
	t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	tagResource(rm.Resource(), dep{"acme-prod", "acme", "1.1.0", "periscope-agent", ""})
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("periscope-agent/runtime")
	g := sm.Metrics().AppendEmpty()
	g.SetName("periscope.queue.depth")
	p := g.SetEmptyGauge().DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(at))
	p.SetIntValue(depth)
	p.Attributes().PutStr("messaging.system", "nats")
	p.Attributes().PutStr("messaging.destination.name", "ORDERS")
	c := sm.Metrics().AppendEmpty()
	c.SetName("periscope.ingress.requests")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	q := sum.DataPoints().AppendEmpty()
	q.SetTimestamp(pcommon.NewTimestampFromTime(at))
	q.SetIntValue(requests)
	q.Attributes().PutStr("periscope.ingress.name", "shop")
	q.Attributes().PutStr("http.route", "/orders/{id}")
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Metrics, DeploymentID: "acme-prod", Received: at, Data: data}
}

func TestRuntimeGivesTheNewestPointAndTheBaselineBeforeTheWindow(t *testing.T) {
	s := open(t, t.TempDir(), Settings{Clock: clock.NewFake(t0.Add(15 * time.Minute))})
	consume(t, s, runtimeRound(t, t0, 40, 100), runtimeRound(t, t0.Add(4*time.Minute), 30, 150),
		runtimeRound(t, t0.Add(6*time.Minute), 20, 170), runtimeRound(t, t0.Add(9*time.Minute), 7, 230))

	// The default window is the last 10 minutes: from t0+5m.
	m, err := s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Since.Equal(t0.Add(5*time.Minute)) || len(m.Series) != 2 || m.Truncated {
		t.Fatalf("runtime: %+v", m)
	}
	req, depth := m.Series[0], m.Series[1]
	if req.Name != "periscope.ingress.requests" || req.Value != 230 || !req.HasBase || req.BaseValue != 150 ||
		req.Attrs["http.route"] != "/orders/{id}" || !req.Time.Equal(t0.Add(9*time.Minute)) {
		t.Errorf("requests series: %+v", req)
	}
	if depth.Name != "periscope.queue.depth" || depth.Value != 7 || depth.Kind != "gauge" || depth.Attrs["messaging.destination.name"] != "ORDERS" {
		t.Errorf("depth series: %+v", depth)
	}

	// A window with nothing in it answers no series, not stale ones.
	m, err = s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod", Since: t0.Add(10 * time.Minute)})
	if err != nil || len(m.Series) != 0 {
		t.Fatalf("empty window: %+v, %v", m, err)
	}
	if m, err = s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "umbrella-dr"}); err != nil || len(m.Series) != 0 {
		t.Fatalf("another deployment: %+v, %v", m, err)
	}
	if _, err := s.Runtime(context.Background(), telquery.RuntimeQuery{}); !errors.Is(err, telquery.ErrInvalid) {
		t.Errorf("no deployment: %v, want ErrInvalid", err)
	}
}

// durationRound is one round of an ingress proxy's cumulative latency
// histogram for route /pay, with the semantic conventions' bounds and these
// bucket counts; attrs orders the point's attributes (keys in that order).
func durationRound(t testing.TB, at time.Time, buckets []uint64, keys ...string) consumer.Batch {
	t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	tagResource(rm.Resource(), dep{"acme-prod", "acme", "1.1.0", "periscope-agent", ""})
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("http.server.request.duration")
	m.SetUnit("s")
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	p := h.DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(at))
	p.ExplicitBounds().FromRaw(semconvBounds)
	p.BucketCounts().FromRaw(buckets)
	var n uint64
	for _, c := range buckets {
		n += c
	}
	p.SetCount(n)
	p.SetSum(float64(n) * 0.01)
	values := map[string]string{"periscope.ingress.name": "shop", "http.route": "/pay", "periscope.http.status_class": "2xx"}
	if len(keys) == 0 {
		keys = []string{"periscope.ingress.name", "http.route", "periscope.http.status_class"}
	}
	for _, k := range keys {
		p.Attributes().PutStr(k, values[k])
	}
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Metrics, DeploymentID: "acme-prod", Received: at, Data: data}
}

var semconvBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// buckets15 is a bucket count list for semconvBounds with counts at the given
// indexes.
func buckets15(pairs ...uint64) []uint64 {
	out := make([]uint64, len(semconvBounds)+1)
	for i := 0; i < len(pairs); i += 2 {
		out[pairs[i]] = pairs[i+1]
	}
	return out
}

func TestRuntimeGivesHistogramBucketsOfTheNewestPointAndTheBaseline(t *testing.T) {
	s := open(t, t.TempDir(), Settings{Clock: clock.NewFake(t0.Add(15 * time.Minute))})
	// The agent's attribute order changed between releases: the rounds in the
	// window send them reversed, and must still be one series.
	consume(t, s, durationRound(t, t0.Add(4*time.Minute), buckets15(1, 40)),
		durationRound(t, t0.Add(9*time.Minute), buckets15(1, 90, 6, 10), "periscope.http.status_class", "http.route", "periscope.ingress.name"))

	m, err := s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Series) != 1 {
		t.Fatalf("series: %+v", m.Series)
	}
	d := m.Series[0]
	if d.Histogram == nil || !slices.Equal(d.Histogram.Bounds, semconvBounds) || !slices.Equal(d.Histogram.Counts, buckets15(1, 90, 6, 10)) {
		t.Errorf("newest buckets: %+v", d.Histogram)
	}
	if !d.HasBase || d.BaseHistogram == nil || !slices.Equal(d.BaseHistogram.Counts, buckets15(1, 40)) {
		t.Errorf("baseline buckets: %+v", d.BaseHistogram)
	}
	var series int
	if err := s.db.QueryRow("SELECT count(DISTINCT attrs) FROM metric_points").Scan(&series); err != nil || series != 1 {
		t.Errorf("attribute orders stored as %d series (%v), want 1", series, err)
	}
}

func TestHistogramsWithoutReadableBucketsKeepCountAndSum(t *testing.T) {
	s := open(t, t.TempDir(), Settings{Clock: clock.NewFake(t0.Add(15 * time.Minute))})
	// Counts that do not match the bounds are stored without buckets.
	bad := durationRound(t, t0.Add(9*time.Minute), []uint64{3, 4})
	consume(t, s, bad)
	// An exponential histogram of the same name is stored (count and sum) and
	// answers no buckets rather than failing.
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	tagResource(rm.Resource(), dep{"acme-prod", "acme", "1.1.0", "periscope-agent", ""})
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("http.server.request.duration")
	p := m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(t0.Add(9 * time.Minute)))
	p.SetCount(6)
	p.SetSum(0.6)
	p.SetScale(2)
	p.Positive().BucketCounts().FromRaw([]uint64{1, 2, 3})
	p.Attributes().PutStr("http.route", "/exp")
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, s, consumer.Batch{Signal: otlp.Metrics, DeploymentID: "acme-prod", Received: t0, Data: data})

	rt, err := s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Series) != 2 {
		t.Fatalf("series: %+v", rt.Series)
	}
	for _, d := range rt.Series {
		if d.Histogram != nil || d.Count == 0 || d.Sum == 0 {
			t.Errorf("%v: histogram %+v, count %d, sum %v; want no buckets, count and sum kept", d.Attrs, d.Histogram, d.Count, d.Sum)
		}
	}
}

// TestHistogramsOfAnEarlierVersionStillRead: a histogram point stored before
// buckets were (schema version 3) answers its count and sum, and points after
// the upgrade answer their buckets too.
func TestHistogramsOfAnEarlierVersionStillRead(t *testing.T) {
	dir := t.TempDir()
	buildVersion(t, dir, 3)
	s := open(t, dir, Settings{Clock: clock.NewFake(t0.Add(5 * time.Minute))})
	m, err := s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Series) != 1 || m.Series[0].Count != 50 || m.Series[0].Histogram != nil {
		t.Fatalf("old histogram: %+v", m.Series)
	}
	consume(t, s, durationRound(t, t0.Add(4*time.Minute), buckets15(6, 60), "http.route", "periscope.ingress.name", "periscope.http.status_class"))
	if m, err = s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"}); err != nil {
		t.Fatal(err)
	}
	if len(m.Series) != 2 {
		t.Fatalf("series after the upgrade: %+v", m.Series)
	}
	var withBuckets int
	for _, d := range m.Series {
		if d.Histogram != nil && d.Histogram.Total() == 60 {
			withBuckets++
		}
	}
	if withBuckets != 1 {
		t.Errorf("series after the upgrade: %+v", m.Series)
	}
}
