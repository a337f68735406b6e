package telstoretest

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// T0 is when the tests' records start.
var T0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// Dep is a deployment's context as the tests tag resources with it.
type Dep struct{ ID, Customer, Release, Service, Function string }

// TagResource tags r as the manager's ingest would for d.
func TagResource(r pcommon.Resource, d Dep) {
	a := r.Attributes()
	a.PutStr(otlp.AttrDeploymentID, d.ID)
	a.PutStr(otlp.AttrCustomer, d.Customer)
	a.PutStr(otlp.AttrCloudProvider, "aws")
	a.PutStr(otlp.AttrCloudRegion, "eu-west-1")
	a.PutStr(otlp.AttrRelease, d.Release)
	a.PutStr(otlp.AttrStack, "shop")
	a.PutStr("service.name", d.Service)
	if d.Function != "" {
		a.PutStr("faas.name", d.Function)
	}
	a.PutStr("k8s.pod.name", d.ID+"-pod-1")
	a.PutStr("host.arch", "arm64")
}

// LogSpec is one log record to send.
type LogSpec struct {
	At       time.Time
	Severity plog.SeverityNumber
	Body     string
	Attrs    map[string]string
	Trace    uint64
}

// LogBatch is a batch of d's log records.
func LogBatch(t testing.TB, d Dep, specs ...LogSpec) consumer.Batch {
	t.Helper()
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	TagResource(rl.Resource(), d)
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for _, s := range specs {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(s.At))
		lr.SetSeverityNumber(s.Severity)
		lr.SetSeverityText(s.Severity.String())
		lr.Body().SetStr(s.Body)
		for k, v := range s.Attrs {
			lr.Attributes().PutStr(k, v)
		}
		if s.Trace != 0 {
			lr.SetTraceID(TraceID(s.Trace))
		}
	}
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Logs, DeploymentID: d.ID, Received: T0, Records: ld.LogRecordCount(), Data: b}
}

// TraceHex is the hex id of TraceID(n).
func TraceHex(n uint64) string { return fmt.Sprintf("fabc000000000000%016x", n) }

// TraceID is trace n's id; its high bit is set.
func TraceID(n uint64) pcommon.TraceID {
	var id [16]byte
	// The high bit is set on purpose: ids are stored as signed numbers.
	binary.BigEndian.PutUint64(id[:8], 0xfabc000000000000)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// SpanID is span n's id.
func SpanID(n uint64) pcommon.SpanID {
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], n)
	return id
}

// SpanSpec is one span to send.
type SpanSpec struct {
	Trace, ID, Parent uint64
	Name              string
	Kind              ptrace.SpanKind
	At                time.Time
	Dur               time.Duration
	Err               bool
	Route             string
}

// SpanBatch is a batch of d's spans.
func SpanBatch(t testing.TB, d Dep, specs ...SpanSpec) consumer.Batch {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	TagResource(rs.Resource(), d)
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	for _, s := range specs {
		sp := ss.AppendEmpty()
		sp.SetTraceID(TraceID(s.Trace))
		sp.SetSpanID(SpanID(s.ID))
		if s.Parent != 0 {
			sp.SetParentSpanID(SpanID(s.Parent))
		}
		sp.SetName(s.Name)
		sp.SetKind(s.Kind)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(s.At))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.At.Add(s.Dur)))
		if s.Err {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage("boom")
		}
		if s.Route != "" {
			sp.Attributes().PutStr("http.route", s.Route)
		}
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Traces, DeploymentID: d.ID, Received: T0, Records: td.SpanCount(), Data: b}
}

// Consume stores the batches and flushes the rollups, failing t on an error.
func Consume(t testing.TB, s Store, bs ...consumer.Batch) {
	t.Helper()
	for _, b := range bs {
		if err := s.Consume(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Deployments and releases the tests send as.
var (
	AcmeOld = Dep{"acme-prod", "acme", "1.0.0", "checkout", ""}
	AcmeNew = Dep{"acme-prod", "acme", "1.1.0", "checkout", ""}
	UmbOld  = Dep{"umbrella-dr", "umbrella", "1.0.0", "checkout", ""}
)

// Requests makes n entry spans (one trace each) of which errs fail, lasting dur,
// spread over the minute starting at at.
func Requests(first uint64, n, errs int, at time.Time, dur time.Duration, route string) []SpanSpec {
	var out []SpanSpec
	for i := 0; i < n; i++ {
		out = append(out, SpanSpec{Trace: first + uint64(i), ID: first + uint64(i), Name: "GET " + route, Kind: ptrace.SpanKindServer,
			At: at.Add(time.Duration(i) * 50 * time.Millisecond), Dur: dur, Err: i < errs, Route: route})
	}
	return out
}

// SendReleases sends acme-prod 1.0.0 at 2% errors and 100ms, then 1.1.0 at 10%
// errors and 400ms, and umbrella-dr 1.0.0 throughout.
func SendReleases(t testing.TB, s Store) {
	for m := 0; m < 10; m++ {
		at := T0.Add(time.Duration(m) * time.Minute)
		if m < 5 {
			Consume(t, s, SpanBatch(t, AcmeOld, Requests(uint64(m*1000), 100, 2, at, 100*time.Millisecond, "/pay")...))
		} else {
			Consume(t, s, SpanBatch(t, AcmeNew, Requests(uint64(m*1000), 100, 10, at, 400*time.Millisecond, "/pay")...))
		}
		Consume(t, s, SpanBatch(t, UmbOld, Requests(uint64(100000+m*1000), 50, 0, at, 50*time.Millisecond, "/pay")...))
	}
}

// Within fails t unless got is within tol (a fraction) of want.
func Within(t testing.TB, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*want {
		t.Errorf("%s = %v, want %v ±%.0f%%", what, got, want, tol*100)
	}
}

// CancelOnWatch is a context that is cancelled the moment something asks for its
// Done channel: a Consume is cancelled exactly as it starts waiting, the narrowest
// point between refusing a batch and taking it.
type CancelOnWatch struct {
	context.Context
	cancel context.CancelFunc
}

// Done cancels the context and returns its channel.
func (c CancelOnWatch) Done() <-chan struct{} {
	c.cancel()
	return c.Context.Done()
}

// RuntimeRound is one collection round as the agent's runtime collector sends
// it: a queue depth gauge and the ingress proxy's cumulative request counter.
func RuntimeRound(t testing.TB, at time.Time, depth int64, requests int64) consumer.Batch {
	t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	TagResource(rm.Resource(), Dep{"acme-prod", "acme", "1.1.0", "periscope-agent", ""})
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

// DurationRound is one round of an ingress proxy's cumulative latency
// histogram for route /pay, with the semantic conventions' bounds and these
// bucket counts; attrs orders the point's attributes (keys in that order).
func DurationRound(t testing.TB, at time.Time, buckets []uint64, keys ...string) consumer.Batch {
	t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	TagResource(rm.Resource(), Dep{"acme-prod", "acme", "1.1.0", "periscope-agent", ""})
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("http.server.request.duration")
	m.SetUnit("s")
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	p := h.DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(at))
	p.ExplicitBounds().FromRaw(SemconvBounds)
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

// SemconvBounds are the semantic conventions' latency bounds in seconds.
var SemconvBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Buckets15 is a bucket count list for SemconvBounds with counts at the given
// indexes.
func Buckets15(pairs ...uint64) []uint64 {
	out := make([]uint64, len(SemconvBounds)+1)
	for i := 0; i < len(pairs); i += 2 {
		out[pairs[i]] = pairs[i+1]
	}
	return out
}

// LogLoad is n batches of per log records each, as a benchmark sends them:
// HTTP access lines of 16 deployments, one attribute each.
func LogLoad(tb testing.TB, n, per int) []consumer.Batch {
	batches := make([]consumer.Batch, n)
	for i := range batches {
		specs := make([]LogSpec, per)
		for j := range specs {
			specs[j] = LogSpec{At: T0.Add(time.Duration(i*per+j) * time.Millisecond), Severity: plog.SeverityNumberInfo,
				Body: fmt.Sprintf("GET /api/orders/%d completed in %dms", j*7919%10007, j%250), Attrs: map[string]string{"http.route": "/api/orders/{id}"}}
		}
		batches[i] = LogBatch(tb, Dep{ID: fmt.Sprintf("dep-%03d", i%16), Customer: "acme", Release: "1.0.0", Service: "checkout"}, specs...)
	}
	return batches
}
