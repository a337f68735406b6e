package telstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckfile"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

type dep struct{ id, customer, release, service, function string }

func tagResource(r pcommon.Resource, d dep) {
	a := r.Attributes()
	a.PutStr(otlp.AttrDeploymentID, d.id)
	a.PutStr(otlp.AttrCustomer, d.customer)
	a.PutStr(otlp.AttrCloudProvider, "aws")
	a.PutStr(otlp.AttrCloudRegion, "eu-west-1")
	a.PutStr(otlp.AttrRelease, d.release)
	a.PutStr(otlp.AttrStack, "shop")
	a.PutStr("service.name", d.service)
	if d.function != "" {
		a.PutStr("faas.name", d.function)
	}
	a.PutStr("k8s.pod.name", d.id+"-pod-1")
	a.PutStr("host.arch", "arm64")
}

type logSpec struct {
	at       time.Time
	severity plog.SeverityNumber
	body     string
	attrs    map[string]string
	trace    uint64
}

func logBatch(t testing.TB, d dep, specs ...logSpec) consumer.Batch {
	t.Helper()
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	tagResource(rl.Resource(), d)
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for _, s := range specs {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(s.at))
		lr.SetSeverityNumber(s.severity)
		lr.SetSeverityText(s.severity.String())
		lr.Body().SetStr(s.body)
		for k, v := range s.attrs {
			lr.Attributes().PutStr(k, v)
		}
		if s.trace != 0 {
			lr.SetTraceID(traceID(s.trace))
		}
	}
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Logs, DeploymentID: d.id, Received: t0, Records: ld.LogRecordCount(), Data: b}
}

// traceHiBits is the first half of every test trace id, 0xfabc000000000000, as
// the signed number the store keeps.
const traceHiBits = -0x0544000000000000

func traceID(n uint64) pcommon.TraceID {
	var id [16]byte
	// The high bit is set on purpose: ids are stored as signed numbers.
	binary.BigEndian.PutUint64(id[:8], 0xfabc000000000000)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

func spanID(n uint64) pcommon.SpanID {
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], n)
	return id
}

type spanSpec struct {
	trace, id, parent uint64
	name              string
	kind              ptrace.SpanKind
	at                time.Time
	dur               time.Duration
	err               bool
	route             string
}

func spanBatch(t testing.TB, d dep, specs ...spanSpec) consumer.Batch {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	tagResource(rs.Resource(), d)
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	for _, s := range specs {
		sp := ss.AppendEmpty()
		sp.SetTraceID(traceID(s.trace))
		sp.SetSpanID(spanID(s.id))
		if s.parent != 0 {
			sp.SetParentSpanID(spanID(s.parent))
		}
		sp.SetName(s.name)
		sp.SetKind(s.kind)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(s.at))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.at.Add(s.dur)))
		if s.err {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage("boom")
		}
		if s.route != "" {
			sp.Attributes().PutStr("http.route", s.route)
		}
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Traces, DeploymentID: d.id, Received: t0, Records: td.SpanCount(), Data: b}
}

func open(t testing.TB, dir string, set Settings) *Store {
	t.Helper()
	if set.Clock == nil {
		set.Clock = clock.NewFake(t0.Add(time.Hour))
	}
	s, err := Open(context.Background(), dir, set)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func consume(t testing.TB, s *Store, bs ...consumer.Batch) {
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

var (
	acmeOld = dep{"acme-prod", "acme", "1.0.0", "checkout", ""}
	acmeNew = dep{"acme-prod", "acme", "1.1.0", "checkout", ""}
	umbOld  = dep{"umbrella-dr", "umbrella", "1.0.0", "checkout", ""}
)

// requests makes n entry spans (one trace each) of which errs fail, lasting dur,
// spread over the minute starting at at.
func requests(first uint64, n, errs int, at time.Time, dur time.Duration, route string) []spanSpec {
	var out []spanSpec
	for i := 0; i < n; i++ {
		out = append(out, spanSpec{trace: first + uint64(i), id: first + uint64(i), name: "GET " + route, kind: ptrace.SpanKindServer,
			at: at.Add(time.Duration(i) * 50 * time.Millisecond), dur: dur, err: i < errs, route: route})
	}
	return out
}

func TestLogsAreFilteredAndPagedNewestFirst(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	var acme, umb []logSpec
	for i := 0; i < 250; i++ {
		sev := plog.SeverityNumberInfo
		if i%10 == 0 {
			sev = plog.SeverityNumberError
		}
		acme = append(acme, logSpec{at: t0.Add(time.Duration(i) * time.Second), severity: sev,
			body: fmt.Sprintf("request %d Payment Declined", i), attrs: map[string]string{"http.route": fmt.Sprintf("/r%d", i%3)}, trace: uint64(i + 1)})
		umb = append(umb, logSpec{at: t0.Add(time.Duration(i) * time.Second), severity: plog.SeverityNumberWarn, body: "cache miss"})
	}
	consume(t, s, logBatch(t, acmeOld, acme[:100]...), logBatch(t, umbOld, umb...), logBatch(t, acmeNew, acme[100:]...))

	page, err := s.Logs(context.Background(), telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod"}, Limit: 40})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var prev time.Time
	pages := 0
	for {
		pages++
		for _, l := range page.Logs {
			if l.Context.Deployment != "acme-prod" || seen[l.Body] {
				t.Fatalf("record %q from %s on page %d: wrong deployment or seen twice", l.Body, l.Context.Deployment, pages)
			}
			if !prev.IsZero() && l.Time.After(prev) {
				t.Fatalf("page %d not newest first: %s after %s", pages, l.Time, prev)
			}
			seen[l.Body], prev = true, l.Time
		}
		if page.Next == "" {
			break
		}
		if page, err = s.Logs(context.Background(), telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod"}, Limit: 40, Cursor: page.Next}); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 250 || pages != 7 {
		t.Fatalf("paged through %d records in %d pages, want 250 in 7", len(seen), pages)
	}

	for _, tc := range []struct {
		name string
		q    telquery.LogQuery
		want int
	}{
		{"release", telquery.LogQuery{Filter: telquery.Filter{Release: "1.1.0"}}, 150},
		{"customer and severity", telquery.LogQuery{Filter: telquery.Filter{Customer: "acme"}, MinSeverity: 17}, 25},
		{"severity warn", telquery.LogQuery{MinSeverity: 13}, 275},
		{"contains any case", telquery.LogQuery{Contains: "payment declined"}, 250},
		{"attribute", telquery.LogQuery{Attrs: map[string]string{"http.route": "/r1"}}, 83},
		{"resource attribute", telquery.LogQuery{Attrs: map[string]string{"host.arch": "arm64", "service.name": "checkout"}}, 500},
		{"time range", telquery.LogQuery{Filter: telquery.Filter{Deployment: "umbrella-dr", Since: t0.Add(10 * time.Second), Until: t0.Add(20 * time.Second)}}, 10},
		{"trace", telquery.LogQuery{TraceID: traceHex(traceHiBits, 7)}, 1},
	} {
		q := tc.q
		q.Limit = 1000
		page, err := s.Logs(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(page.Logs) != tc.want {
			t.Errorf("%s: %d records, want %d", tc.name, len(page.Logs), tc.want)
		}
	}
	page, _ = s.Logs(context.Background(), telquery.LogQuery{TraceID: traceHex(traceHiBits, 7)})
	l := page.Logs[0]
	if l.Body != "request 6 Payment Declined" || l.Context.Replica != "acme-prod-pod-1" || l.Context.Region != "eu-west-1" ||
		l.Resource["host.arch"] != "arm64" || l.Attributes["http.route"] != "/r0" || l.Severity != 9 {
		t.Errorf("record read back wrong: %+v", l)
	}
	if _, err := s.Logs(context.Background(), telquery.LogQuery{Cursor: "nonsense"}); !errors.Is(err, telquery.ErrInvalid) {
		t.Errorf("bad cursor: %v, want ErrInvalid", err)
	}
}

func TestTraceComesBackAsATree(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	fn := dep{"acme-prod", "acme", "1.1.0", "checkout", "charge-card"}
	consume(t, s,
		spanBatch(t, acmeNew,
			spanSpec{trace: 42, id: 1, name: "POST /checkout", kind: ptrace.SpanKindServer, at: t0, dur: 300 * time.Millisecond, route: "/checkout"},
			spanSpec{trace: 42, id: 2, parent: 1, name: "SELECT cart", kind: ptrace.SpanKindClient, at: t0.Add(10 * time.Millisecond), dur: 20 * time.Millisecond}),
		spanBatch(t, fn,
			spanSpec{trace: 42, id: 3, parent: 1, name: "invoke", kind: ptrace.SpanKindServer, at: t0.Add(40 * time.Millisecond), dur: 250 * time.Millisecond, err: true},
			spanSpec{trace: 42, id: 4, parent: 3, name: "HTTP POST", kind: ptrace.SpanKindClient, at: t0.Add(50 * time.Millisecond), dur: 200 * time.Millisecond, err: true},
			spanSpec{trace: 43, id: 5, name: "other", kind: ptrace.SpanKindServer, at: t0, dur: time.Millisecond}))

	tr, err := s.Trace(context.Background(), traceHex(traceHiBits, 42))
	if err != nil {
		t.Fatal(err)
	}
	if tr.SpanCount != 4 || tr.Errors != 2 || len(tr.Roots) != 1 || tr.DurationMS != 300 {
		t.Fatalf("trace: %d spans, %d errors, %d roots, %vms; want 4, 2, 1, 300", tr.SpanCount, tr.Errors, len(tr.Roots), tr.DurationMS)
	}
	root := tr.Roots[0]
	if root.Context.Function != "/checkout" || len(root.Children) != 2 {
		t.Fatalf("root %q function %q with %d children", root.Name, root.Context.Function, len(root.Children))
	}
	invoke := root.Children[1]
	if invoke.Name != "invoke" || invoke.Context.Function != "charge-card" || invoke.Status != telquery.StatusError ||
		invoke.OffsetMS != 40 || invoke.DurationMS != 250 || len(invoke.Children) != 1 || invoke.Children[0].Context.Function != "charge-card" {
		t.Fatalf("the failing function's span is wrong: %+v", invoke)
	}
	if _, err := s.Trace(context.Background(), traceHex(traceHiBits, 99)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown trace: %v, want ErrNotFound", err)
	}
	if _, err := s.Trace(context.Background(), "xyz"); !errors.Is(err, telquery.ErrInvalid) {
		t.Errorf("bad trace id: %v, want ErrInvalid", err)
	}

	page, err := s.Spans(context.Background(), telquery.SpanQuery{Filter: telquery.Filter{Function: "charge-card"}, ErrorsOnly: true, MinDuration: 210 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Spans) != 1 || page.Spans[0].Name != "invoke" {
		t.Fatalf("span search found %+v, want the invoke span", page.Spans)
	}
	page, _ = s.Spans(context.Background(), telquery.SpanQuery{RootsOnly: true})
	if len(page.Spans) != 3 {
		t.Fatalf("entry spans: %d, want 3 (two server roots and the function's server span)", len(page.Spans))
	}
}

// sendReleases sends acme-prod 1.0.0 at 2% errors and 100ms, then 1.1.0 at 10%
// errors and 400ms, and umbrella-dr 1.0.0 throughout.
func sendReleases(t *testing.T, s *Store) {
	for m := 0; m < 10; m++ {
		at := t0.Add(time.Duration(m) * time.Minute)
		if m < 5 {
			consume(t, s, spanBatch(t, acmeOld, requests(uint64(m*1000), 100, 2, at, 100*time.Millisecond, "/pay")...))
		} else {
			consume(t, s, spanBatch(t, acmeNew, requests(uint64(m*1000), 100, 10, at, 400*time.Millisecond, "/pay")...))
		}
		consume(t, s, spanBatch(t, umbOld, requests(uint64(100000+m*1000), 50, 0, at, 50*time.Millisecond, "/pay")...))
	}
}

func TestREDFromRollupsMatchesRawRows(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Settings{RollupEvery: time.Hour})
	sendReleases(t, s)
	// The rollups are written at close and must be there after a reopen.
	s.Close()
	s = open(t, dir, Settings{})
	q := telquery.REDQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: t0, Until: t0.Add(10 * time.Minute)}, GroupBy: telquery.ByRelease, Step: 5 * time.Minute}
	rolled, err := s.RED(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	q.Raw = true
	raw, err := s.RED(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	for _, red := range []telquery.RED{rolled, raw} {
		if len(red.Series) != 2 || red.Series[0].Group != "1.0.0" || red.Series[1].Group != "1.1.0" {
			t.Fatalf("series %+v, want 1.0.0 then 1.1.0", red.Series)
		}
		old, cur := red.Series[0].Total, red.Series[1].Total
		if old.Requests != 500 || old.Errors != 10 || cur.Requests != 500 || cur.Errors != 50 {
			t.Fatalf("totals old %+v new %+v; want 500/10 and 500/50", old, cur)
		}
		if len(red.Series[0].Points) != 2 || red.Series[0].Points[0].Requests != 500 || red.Series[0].Points[1].Requests != 0 {
			t.Fatalf("1.0.0 points %+v, want all 500 in the first 5-minute step", red.Series[0].Points)
		}
		within(t, "old p95", old.P95, 100, 0.1)
		within(t, "new p99", cur.P99, 400, 0.1)
	}
	if raw.Series[1].Total.P95 != 400 {
		t.Errorf("raw p95 %v, want exactly 400", raw.Series[1].Total.P95)
	}

	byDep, err := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: t0, Until: t0.Add(10 * time.Minute), Function: "/pay"}, GroupBy: telquery.ByDeployment})
	if err != nil {
		t.Fatal(err)
	}
	if len(byDep.Series) != 2 || byDep.Series[1].Total.Requests != 500 || byDep.Series[1].Total.ErrorRate != 0 || byDep.StepSec != 60 {
		t.Fatalf("by deployment: %+v", byDep)
	}
}

func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*want {
		t.Errorf("%s = %v, want %v ±%.0f%%", what, got, want, tol*100)
	}
}

func TestCompareReleasesOfADeploymentAndTheFleet(t *testing.T) {
	s := open(t, t.TempDir(), Settings{Clock: clock.NewFake(t0.Add(10 * time.Minute))})
	sendReleases(t, s)
	c, err := s.CompareReleases(context.Background(), telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod"}, Window: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if c.Current.Release != "1.1.0" || c.Previous.Release != "1.0.0" || c.Current.Requests != 300 || c.Previous.Requests != 300 {
		t.Fatalf("comparison %+v", c)
	}
	if !c.Current.From.Equal(t0.Add(5*time.Minute)) || !c.Previous.To.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("windows %s–%s and %s–%s: want 3 minutes either side of the switch", c.Previous.From, c.Previous.To, c.Current.From, c.Current.To)
	}
	within(t, "error rate change", c.ErrorRateChange, 0.08, 0.001)
	within(t, "p95 ratio", c.P95Ratio, 4, 0.15)

	fleetCmp, err := s.CompareReleases(context.Background(), telquery.CompareQuery{Window: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// Umbrella still serves 1.0.0, so the fleet compares both over the last two minutes.
	if fleetCmp.Current.Release != "1.1.0" || fleetCmp.Previous.Release != "1.0.0" || fleetCmp.Previous.Requests != 100 || fleetCmp.Current.Requests != 200 {
		t.Fatalf("fleet comparison %+v", fleetCmp)
	}
	if _, err := s.CompareReleases(context.Background(), telquery.CompareQuery{Filter: telquery.Filter{Deployment: "umbrella-dr"}}); !errors.Is(err, telquery.ErrInvalid) {
		t.Errorf("one release only: %v, want ErrInvalid", err)
	}
}

func TestRollupsLostInACrashAreRebuilt(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Settings{RollupEvery: time.Hour})
	sendReleases(t, s)
	s.Close()
	// What a crash before the rollup flush leaves: raw rows, no rollups.
	s = open(t, dir, Settings{})
	for _, q := range []string{"DELETE FROM red_minute", "DELETE FROM red_hist", "UPDATE rollup_state SET span_seq = 0"} {
		if _, err := s.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, dir, Settings{})
	red, err := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: t0, Until: t0.Add(10 * time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := red.Series[0].Total; got.Requests != 1500 || got.Errors != 60 {
		t.Fatalf("after rebuild: %d requests, %d errors; want 1500, 60", got.Requests, got.Errors)
	}
}

func TestMetricSeriesGroupedByAttribute(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	tagResource(rm.Resource(), acmeNew)
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	g := ms.AppendEmpty()
	g.SetName("queue.depth")
	g.SetUnit("{messages}")
	gauge := g.SetEmptyGauge().DataPoints()
	for m := 0; m < 4; m++ {
		for i, q := range []string{"orders", "emails"} {
			p := gauge.AppendEmpty()
			p.SetTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(m) * time.Minute)))
			p.SetIntValue(int64((i + 1) * 10 * (m + 1)))
			p.Attributes().PutStr("queue", q)
		}
	}
	c := ms.AppendEmpty()
	c.SetName("http.requests")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for m := 0; m < 4; m++ {
		p := sum.DataPoints().AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(m) * time.Minute)))
		p.SetDoubleValue(float64(100 * (m + 1)))
	}
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, s, consumer.Batch{Signal: otlp.Metrics, DeploymentID: "acme-prod", Received: t0, Data: data})

	names, err := s.MetricNames(context.Background(), telquery.MetricNamesQuery{Filter: telquery.Filter{Deployment: "acme-prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(names.Metrics) != 2 || names.Metrics[0].Name != "http.requests" || names.Metrics[0].Kind != "sum" || names.Metrics[0].Points != 4 ||
		names.Metrics[1].Name != "queue.depth" || names.Metrics[1].Unit != "{messages}" || names.Metrics[1].Points != 8 ||
		!names.Metrics[1].Last.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("metric names: %+v", names)
	}
	if names, err = s.MetricNames(context.Background(), telquery.MetricNamesQuery{Filter: telquery.Filter{Deployment: "umbrella-dr"}}); err != nil || len(names.Metrics) != 0 {
		t.Fatalf("metric names of another deployment: %+v, %v", names, err)
	}
	m, err := s.Metric(context.Background(), telquery.MetricQuery{Filter: telquery.Filter{Since: t0, Until: t0.Add(4 * time.Minute)}, Name: "queue.depth", GroupBy: "queue", Step: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m.Agg != telquery.AggAvg || len(m.Series) != 2 || m.Series[0].Group != "emails" || len(m.Series[0].Points) != 2 ||
		m.Series[0].Points[0].Value != 30 || m.Series[1].Points[1].Value != 35 {
		t.Fatalf("queue depth by queue: %+v", m)
	}
	m, err = s.Metric(context.Background(), telquery.MetricQuery{Filter: telquery.Filter{Since: t0, Until: t0.Add(4 * time.Minute)}, Name: "http.requests", GroupBy: "release", Step: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m.Agg != telquery.AggLast || len(m.Series) != 1 || m.Series[0].Group != "1.1.0" || m.Series[0].Points[1].Value != 400 {
		t.Fatalf("cumulative requests by release: %+v", m)
	}
}

func TestTailSeesNewRecordsOnly(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	consume(t, s, logBatch(t, acmeOld, logSpec{at: t0, severity: plog.SeverityNumberError, body: "before"}))
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan telquery.Log, 10)
	done := make(chan error, 1)
	go func() {
		done <- s.TailLogs(ctx, telquery.LogQuery{MinSeverity: 17}, func(l telquery.Log) error { got <- l; return nil })
	}()
	// The tail starts from the newest record when it begins; keep sending until
	// it is listening.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		consume(t, s, logBatch(t, acmeOld,
			logSpec{at: t0, severity: plog.SeverityNumberInfo, body: "quiet"},
			logSpec{at: t0, severity: plog.SeverityNumberError, body: fmt.Sprintf("after %d", i)}))
		select {
		case l := <-got:
			if l.Body == "before" || l.Body == "quiet" {
				t.Fatalf("tail returned %q", l.Body)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("tail ended with %v", err)
			}
			return
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("tail saw nothing in 10s")
		}
	}
}

func TestRetentionByAgeDropsOldRecords(t *testing.T) {
	clk := clock.NewFake(t0.Add(8 * 24 * time.Hour))
	s := open(t, t.TempDir(), Settings{Clock: clk, MaxAge: 7 * 24 * time.Hour})
	recent := t0.Add(8*24*time.Hour - time.Hour)
	consume(t, s,
		logBatch(t, acmeOld, logSpec{at: t0, severity: plog.SeverityNumberInfo, body: "old"}),
		logBatch(t, acmeOld, logSpec{at: recent, severity: plog.SeverityNumberInfo, body: "recent"}),
		spanBatch(t, acmeOld, requests(1, 10, 0, t0, time.Millisecond, "/old")...),
		spanBatch(t, acmeOld, requests(100, 10, 0, recent, time.Millisecond, "/recent")...))
	if err := s.Retain(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, _ := s.Logs(context.Background(), telquery.LogQuery{})
	if len(page.Logs) != 1 || page.Logs[0].Body != "recent" {
		t.Fatalf("after retention: %+v, want only the recent record", page.Logs)
	}
	red, _ := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: t0, Until: clk.Now()}, Step: 24 * time.Hour, GroupBy: telquery.ByFunction})
	if len(red.Series) != 1 || red.Series[0].Group != "/recent" {
		t.Fatalf("rollups after retention: %+v, want only /recent", red.Series)
	}
}

func TestRetentionBySizeKeepsTheNewest(t *testing.T) {
	const limit = 3 << 20
	clk := clock.NewFake(t0)
	s := open(t, t.TempDir(), Settings{Clock: clk, MaxBytes: limit, RetainEvery: time.Hour})
	var used []int64
	for b := 0; b < 40; b++ {
		at := t0.Add(time.Duration(b) * time.Minute)
		specs := make([]logSpec, 5000)
		for i := range specs {
			specs[i] = logSpec{at: at.Add(time.Duration(i) * time.Millisecond), severity: plog.SeverityNumberInfo,
				body: fmt.Sprintf("batch %d record %d %x", b, i, uint64(i)*0x9e3779b97f4a7c15)}
		}
		consume(t, s, logBatch(t, acmeOld, specs...))
		clk.Set(at)
		if err := s.Retain(context.Background()); err != nil {
			t.Fatal(err)
		}
		n, err := s.UsedBytes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		used = append(used, n)
	}
	t.Logf("used bytes after each batch: %v", used)
	// DuckDB frees space a row group (122,880 rows) at a time, so a pass can end
	// a little over a limit this small; a quarter is more than one group here.
	if last := used[len(used)-1]; last > limit+limit/4 {
		t.Errorf("used %d bytes after retention, limit %d", last, limit)
	}
	count := func(body string) int {
		page, err := s.Logs(context.Background(), telquery.LogQuery{Contains: body, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Logs)
	}
	if count("batch 0 record 1 ") != 0 {
		t.Error("the oldest batch is still stored")
	}
	if count("batch 39 record 4999 ") != 1 || count("batch 39 record 0 ") != 1 {
		t.Error("the newest batch is not all there")
	}
}

// cancelOnWatch is a context that is cancelled the moment something asks for its
// Done channel: a Consume is cancelled exactly as it starts waiting, the narrowest
// point between refusing a batch and taking it.
type cancelOnWatch struct {
	context.Context
	cancel context.CancelFunc
}

func (c cancelOnWatch) Done() <-chan struct{} {
	c.cancel()
	return c.Context.Done()
}

func TestACancelledConsumeIsStoredOnlyIfAcknowledged(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	acked := 0
	for i := 0; i < 100; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		if s.Consume(cancelOnWatch{ctx, cancel}, logBatch(t, acmeOld, logSpec{at: t0, severity: plog.SeverityNumberInfo, body: fmt.Sprintf("record %d", i)})) == nil {
			acked++
		}
		cancel()
	}
	page, err := s.Logs(context.Background(), telquery.LogQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// A refused batch is resent by its agent; had it been stored anyway, it would
	// be stored twice.
	if len(page.Logs) != acked {
		t.Fatalf("%d records stored, %d acknowledged", len(page.Logs), acked)
	}
	// Taken, and then cancelled while it was being committed: it must wait for the
	// commit and say the batch is stored.
	if acked == 0 {
		t.Error("no batch was taken before its context ended, so none was cancelled while waiting for its commit")
	}
	t.Logf("%d of 100 batches taken; the rest refused", acked)
}

func TestSizeRetentionIgnoresOutlierTimestamps(t *testing.T) {
	const limit = 2 << 20
	s := open(t, t.TempDir(), Settings{Clock: clock.NewFake(t0.Add(time.Hour)), MaxBytes: limit, RetainEvery: time.Hour})
	consume(t, s, logBatch(t, acmeOld, logSpec{at: t0.AddDate(5, 0, 0), severity: plog.SeverityNumberInfo, body: "from the future"}),
		spanBatch(t, acmeOld, spanSpec{trace: 1, id: 1, name: "epoch", at: time.Unix(0, 0), dur: time.Millisecond}))
	for b := 0; b < 20; b++ {
		specs := make([]logSpec, 5000)
		for i := range specs {
			specs[i] = logSpec{at: t0.Add(time.Duration(b)*time.Minute + time.Duration(i)*time.Millisecond), severity: plog.SeverityNumberInfo,
				body: fmt.Sprintf("batch %d record %d %x", b, i, uint64(i)*0x9e3779b97f4a7c15)}
		}
		consume(t, s, logBatch(t, acmeOld, specs...))
		if err := s.Retain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.Logs(context.Background(), telquery.LogQuery{Contains: "batch 19 record", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Logs) != 1000 {
		t.Fatalf("the newest batch lost records to retention: %d of its first 1000 found", len(page.Logs))
	}
}

func TestCompareAfterARollbackUsesTheCurrentStretch(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	for m := 0; m < 15; m++ {
		at := t0.Add(time.Duration(m) * time.Minute)
		switch {
		case m < 5:
			consume(t, s, spanBatch(t, acmeOld, requests(uint64(m*1000), 10, 0, at, 10*time.Millisecond, "/pay")...))
		case m < 10:
			consume(t, s, spanBatch(t, acmeNew, requests(uint64(m*1000), 10, 5, at, 10*time.Millisecond, "/pay")...))
		default:
			consume(t, s, spanBatch(t, acmeOld, requests(uint64(m*1000), 10, 1, at, 10*time.Millisecond, "/pay")...))
		}
	}
	c, err := s.CompareReleases(context.Background(), telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Current.Release != "1.0.0" || !c.Current.From.Equal(t0.Add(10*time.Minute)) || c.Current.Errors != 5 || c.Previous.Errors != 25 {
		t.Fatalf("after rolling back to 1.0.0: %+v", c)
	}
}

func TestTraceWithAParentCycleStillShowsEverySpan(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	consume(t, s, spanBatch(t, acmeOld,
		spanSpec{trace: 9, id: 1, name: "root", kind: ptrace.SpanKindServer, at: t0, dur: time.Second},
		spanSpec{trace: 9, id: 2, parent: 3, name: "a", at: t0.Add(time.Millisecond), dur: time.Millisecond},
		spanSpec{trace: 9, id: 3, parent: 2, name: "b", at: t0.Add(2 * time.Millisecond), dur: time.Millisecond}))
	tr, err := s.Trace(context.Background(), traceHex(traceHiBits, 9))
	if err != nil {
		t.Fatal(err)
	}
	var count func([]*telquery.Span) int
	count = func(ss []*telquery.Span) int {
		n := 0
		for _, sp := range ss {
			n += 1 + count(sp.Children)
		}
		return n
	}
	if n := count(tr.Roots); n != 3 || len(tr.Roots) != 2 {
		t.Fatalf("%d spans shown under %d roots, want 3 under 2", n, len(tr.Roots))
	}
	if _, err := json.Marshal(tr); err != nil {
		t.Fatalf("the trace does not encode: %v", err)
	}
}

func TestTailMissesNothingWhileWritersCommitConcurrently(t *testing.T) {
	s := open(t, t.TempDir(), Settings{Writers: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan string, 1000)
	go func() {
		_ = s.TailLogs(ctx, telquery.LogQuery{}, func(l telquery.Log) error { seen <- l.Body; return nil })
	}()
	// The tail starts from the newest row when it begins; wait until it listens.
	probe := 0
	for listening := false; !listening; probe++ {
		consume(t, s, logBatch(t, acmeOld, logSpec{at: t0, severity: plog.SeverityNumberInfo, body: fmt.Sprintf("probe %d", probe)}))
		select {
		case <-seen:
			listening = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	const senders, batches, per = 8, 20, 5
	var wg sync.WaitGroup
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				specs := make([]logSpec, per)
				for i := range specs {
					specs[i] = logSpec{at: t0, severity: plog.SeverityNumberInfo, body: fmt.Sprintf("g%d b%d r%d", g, b, i)}
				}
				if err := s.Consume(context.Background(), logBatch(t, acmeOld, specs...)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got := map[string]int{}
	for len(got) < senders*batches*per {
		select {
		case b := <-seen:
			if !strings.HasPrefix(b, "probe") {
				got[b]++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the tail saw %d of %d records: commits out of order hide rows from it", len(got), senders*batches*per)
		}
	}
	for b, n := range got {
		if n != 1 {
			t.Fatalf("%q seen %d times", b, n)
		}
	}
}

func TestREDBoundsPointsAndRatesThePartialLastStep(t *testing.T) {
	now := t0.Add(90 * time.Second)
	s := open(t, t.TempDir(), Settings{Clock: clock.NewFake(now)})
	consume(t, s, spanBatch(t, acmeOld, requests(1, 60, 0, t0.Add(60*time.Second), time.Millisecond, "/pay")...))
	red, err := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: t0}, Step: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pts := red.Series[0].Points
	// 60 requests in the half minute the last step covers: 2 per second, not 1.
	if len(pts) != 2 || pts[1].Requests != 60 || pts[1].Rate != 2 {
		t.Fatalf("points %+v, want the last at 2 requests/s", pts)
	}
	year, err := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: now.AddDate(-1, 0, 0)}, Step: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(year.Series[0].Points); n > MaxPoints || year.StepSec <= 60 {
		t.Fatalf("a year at 1m steps: %d points of %vs, want at most %d", n, year.StepSec, MaxPoints)
	}
}

func TestUnusedResourcesGoAndComeBack(t *testing.T) {
	clk := clock.NewFake(t0.Add(8 * 24 * time.Hour))
	s := open(t, t.TempDir(), Settings{Clock: clk, MaxAge: 7 * 24 * time.Hour})
	ctx := context.Background()
	resources := func() int {
		t.Helper()
		var n int
		if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM resources").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Two releases of acme: two resources. The old one's records age out.
	consume(t, s,
		logBatch(t, acmeOld, logSpec{at: t0, severity: plog.SeverityNumberInfo, body: "old release"}),
		logBatch(t, acmeNew, logSpec{at: clk.Now().Add(-time.Minute), severity: plog.SeverityNumberInfo, body: "new release"}))
	if n := resources(); n != 2 {
		t.Fatalf("%d resources after two releases, want 2", n)
	}
	// Just used: retention deletes the old record but keeps its resource.
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := resources(); n != 2 {
		t.Fatalf("%d resources right after retention, want 2 (the old one was used moments ago)", n)
	}
	clk.Advance(resourceGrace + time.Minute)
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := resources(); n != 1 {
		t.Fatalf("%d resources once the old one's grace passed, want 1", n)
	}
	// The old release comes back (a rollback): its resource is stored anew and
	// its records carry the full context.
	consume(t, s, logBatch(t, acmeOld, logSpec{at: clk.Now(), severity: plog.SeverityNumberWarn, body: "rolled back"}))
	page, err := s.Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Release: "1.0.0"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Logs) != 1 || page.Logs[0].Body != "rolled back" || page.Logs[0].Context.Deployment != "acme-prod" ||
		page.Logs[0].Context.Customer != "acme" || page.Logs[0].Context.Replica != "acme-prod-pod-1" {
		t.Fatalf("release 1.0.0 after its resource came back: %+v", page.Logs)
	}
	if n := resources(); n != 2 {
		t.Fatalf("%d resources after the rollback, want 2", n)
	}
}

// TestFirstLayoutIsMigrated writes records in the store's first layout (every
// row carrying its context columns) and opens the file with this version.
func TestFirstLayoutIsMigrated(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db, _, err := duckfile.Open(ctx, dir, FileName)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`, `INSERT INTO schema_version VALUES (1)`, migrations[1],
		`INSERT INTO logs VALUES
			(1, TIMESTAMP '2026-11-24 10:00:00', 'acme-prod', 'acme', 'aws', 'eu-west-1', '1.0.0', 'shop', 'checkout', 'pay', 'app', 'pod-1', 9, 'INFO', 'paid', NULL, NULL, NULL, '{"user":"u1"}', '{"host.arch":"arm64"}'),
			(2, TIMESTAMP '2026-11-24 10:01:00', 'acme-prod', 'acme', 'aws', 'eu-west-1', '1.1.0', 'shop', 'checkout', 'pay', 'app', 'pod-1', 17, 'ERROR', 'card declined', 1, 2, 3, NULL, NULL),
			(3, TIMESTAMP '2026-11-24 10:02:00', 'umbrella-dr', 'umbrella', 'gcp', 'us-east1', '1.0.0', 'shop', 'checkout', '', 'app', 'pod-9', 9, 'INFO', 'ok', NULL, NULL, NULL, NULL, NULL)`,
		`INSERT INTO spans VALUES
			(1, TIMESTAMP '2026-11-24 10:00:00', 5000000, 1, 2, 10, NULL, 'GET /pay', 2, 2, 'boom', true, 'acme-prod', 'acme', 'aws', 'eu-west-1', '1.1.0', 'shop', 'checkout', '/pay', 'app', 'pod-1', NULL, NULL),
			(2, TIMESTAMP '2026-11-24 10:00:00', 1000000, 1, 2, 11, 10, 'SELECT', 3, 0, NULL, false, 'acme-prod', 'acme', 'aws', 'eu-west-1', '1.1.0', 'shop', 'checkout', 'SELECT', 'app', 'pod-1', '{"db.system":"postgresql"}', NULL)`,
		`INSERT INTO metric_points VALUES
			(1, TIMESTAMP '2026-11-24 10:00:00', 'queue.depth', 'gauge', '1', 0, 7, NULL, NULL, 'acme-prod', 'acme', 'aws', 'eu-west-1', '1.1.0', 'shop', 'checkout', '', 'app', 'pod-1', '{"queue":"orders"}', NULL)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := open(t, dir, Settings{})
	page, err := s.Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Logs) != 2 || page.Logs[0].Body != "card declined" || page.Logs[1].Body != "paid" {
		t.Fatalf("acme's logs after migration: %+v", page.Logs)
	}
	old := page.Logs[1]
	if old.Context != (telquery.Context{Deployment: "acme-prod", Customer: "acme", Cloud: "aws", Region: "eu-west-1", Release: "1.0.0",
		Stack: "shop", Service: "checkout", Function: "pay", Container: "app", Replica: "pod-1"}) ||
		old.Attributes["user"] != "u1" || old.Resource["host.arch"] != "arm64" {
		t.Fatalf("first record after migration: %+v", old)
	}
	if page.Logs[0].TraceID != "00000000000000010000000000000002" {
		t.Fatalf("trace id after migration: %q", page.Logs[0].TraceID)
	}
	tr, err := s.Trace(ctx, "00000000000000010000000000000002")
	if err != nil {
		t.Fatal(err)
	}
	if tr.SpanCount != 2 || len(tr.Roots) != 1 || len(tr.Roots[0].Children) != 1 || tr.Roots[0].Context.Release != "1.1.0" ||
		tr.Roots[0].Children[0].Attributes["db.system"] != "postgresql" {
		t.Fatalf("trace after migration: %+v", tr)
	}
	// New records go on from the old numbering and join the migrated resources.
	consume(t, s, logBatch(t, dep{"umbrella-dr", "umbrella", "1.0.0", "checkout", ""},
		logSpec{at: t0.Add(5 * time.Minute), severity: plog.SeverityNumberInfo, body: "after upgrade"}))
	page, err = s.Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Customer: "umbrella"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Logs) != 2 || page.Logs[0].Body != "after upgrade" || page.Logs[1].Body != "ok" {
		t.Fatalf("umbrella's logs after a new record: %+v", page.Logs)
	}
	var seq int64
	if err := s.db.QueryRowContext(ctx, "SELECT seq FROM log_rows WHERE body = 'after upgrade'").Scan(&seq); err != nil || seq != 4 {
		t.Fatalf("new record's seq %d (%v), want 4", seq, err)
	}
}
