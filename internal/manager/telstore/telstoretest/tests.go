package telstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
)

func testLogsAreFilteredAndPagedNewestFirst(t *testing.T, open Opener) {
	s := open(t, Options{})
	var acme, umb []LogSpec
	for i := 0; i < 250; i++ {
		sev := plog.SeverityNumberInfo
		if i%10 == 0 {
			sev = plog.SeverityNumberError
		}
		acme = append(acme, LogSpec{At: T0.Add(time.Duration(i) * time.Second), Severity: sev,
			Body: fmt.Sprintf("request %d Payment Declined", i), Attrs: map[string]string{"http.route": fmt.Sprintf("/r%d", i%3)}, Trace: uint64(i + 1)})
		umb = append(umb, LogSpec{At: T0.Add(time.Duration(i) * time.Second), Severity: plog.SeverityNumberWarn, Body: "cache miss"})
	}
	Consume(t, s, LogBatch(t, AcmeOld, acme[:100]...), LogBatch(t, UmbOld, umb...), LogBatch(t, AcmeNew, acme[100:]...))

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
		{"time range", telquery.LogQuery{Filter: telquery.Filter{Deployment: "umbrella-dr", Since: T0.Add(10 * time.Second), Until: T0.Add(20 * time.Second)}}, 10},
		{"trace", telquery.LogQuery{TraceID: TraceHex(7)}, 1},
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
	page, _ = s.Logs(context.Background(), telquery.LogQuery{TraceID: TraceHex(7)})
	l := page.Logs[0]
	if l.Body != "request 6 Payment Declined" || l.Context.Replica != "acme-prod-pod-1" || l.Context.Region != "eu-west-1" ||
		l.Resource["host.arch"] != "arm64" || l.Attributes["http.route"] != "/r0" || l.Severity != 9 {
		t.Errorf("record read back wrong: %+v", l)
	}
	if _, err := s.Logs(context.Background(), telquery.LogQuery{Cursor: "nonsense"}); !errors.Is(err, telquery.ErrInvalid) {
		t.Errorf("bad cursor: %v, want ErrInvalid", err)
	}
}

func testTraceComesBackAsATree(t *testing.T, open Opener) {
	s := open(t, Options{})
	fn := Dep{"acme-prod", "acme", "1.1.0", "checkout", "charge-card"}
	Consume(t, s,
		SpanBatch(t, AcmeNew,
			SpanSpec{Trace: 42, ID: 1, Name: "POST /checkout", Kind: ptrace.SpanKindServer, At: T0, Dur: 300 * time.Millisecond, Route: "/checkout"},
			SpanSpec{Trace: 42, ID: 2, Parent: 1, Name: "SELECT cart", Kind: ptrace.SpanKindClient, At: T0.Add(10 * time.Millisecond), Dur: 20 * time.Millisecond}),
		SpanBatch(t, fn,
			SpanSpec{Trace: 42, ID: 3, Parent: 1, Name: "invoke", Kind: ptrace.SpanKindServer, At: T0.Add(40 * time.Millisecond), Dur: 250 * time.Millisecond, Err: true},
			SpanSpec{Trace: 42, ID: 4, Parent: 3, Name: "HTTP POST", Kind: ptrace.SpanKindClient, At: T0.Add(50 * time.Millisecond), Dur: 200 * time.Millisecond, Err: true},
			SpanSpec{Trace: 43, ID: 5, Name: "other", Kind: ptrace.SpanKindServer, At: T0, Dur: time.Millisecond}))

	tr, err := s.Trace(context.Background(), TraceHex(42))
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
	if _, err := s.Trace(context.Background(), TraceHex(99)); !errors.Is(err, store.ErrNotFound) {
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

func testCompareReleasesOfADeploymentAndTheFleet(t *testing.T, open Opener) {
	s := open(t, Options{Clock: clock.NewFake(T0.Add(10 * time.Minute))})
	SendReleases(t, s)
	c, err := s.CompareReleases(context.Background(), telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod"}, Window: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if c.Current.Release != "1.1.0" || c.Previous.Release != "1.0.0" || c.Current.Requests != 300 || c.Previous.Requests != 300 {
		t.Fatalf("comparison %+v", c)
	}
	if !c.Current.From.Equal(T0.Add(5*time.Minute)) || !c.Previous.To.Equal(T0.Add(5*time.Minute)) {
		t.Errorf("windows %s–%s and %s–%s: want 3 minutes either side of the switch", c.Previous.From, c.Previous.To, c.Current.From, c.Current.To)
	}
	Within(t, "error rate change", c.ErrorRateChange, 0.08, 0.001)
	Within(t, "p95 ratio", c.P95Ratio, 4, 0.15)

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

func testMetricSeriesGroupedByAttribute(t *testing.T, open Opener) {
	s := open(t, Options{})
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	TagResource(rm.Resource(), AcmeNew)
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	g := ms.AppendEmpty()
	g.SetName("queue.depth")
	g.SetUnit("{messages}")
	gauge := g.SetEmptyGauge().DataPoints()
	for m := 0; m < 4; m++ {
		for i, q := range []string{"orders", "emails"} {
			p := gauge.AppendEmpty()
			p.SetTimestamp(pcommon.NewTimestampFromTime(T0.Add(time.Duration(m) * time.Minute)))
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
		p.SetTimestamp(pcommon.NewTimestampFromTime(T0.Add(time.Duration(m) * time.Minute)))
		p.SetDoubleValue(float64(100 * (m + 1)))
	}
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	Consume(t, s, consumer.Batch{Signal: otlp.Metrics, DeploymentID: "acme-prod", Received: T0, Data: data})

	names, err := s.MetricNames(context.Background(), telquery.MetricNamesQuery{Filter: telquery.Filter{Deployment: "acme-prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(names.Metrics) != 2 || names.Metrics[0].Name != "http.requests" || names.Metrics[0].Kind != "sum" || names.Metrics[0].Points != 4 ||
		names.Metrics[1].Name != "queue.depth" || names.Metrics[1].Unit != "{messages}" || names.Metrics[1].Points != 8 ||
		!names.Metrics[1].Last.Equal(T0.Add(3*time.Minute)) {
		t.Fatalf("metric names: %+v", names)
	}
	if names, err = s.MetricNames(context.Background(), telquery.MetricNamesQuery{Filter: telquery.Filter{Deployment: "umbrella-dr"}}); err != nil || len(names.Metrics) != 0 {
		t.Fatalf("metric names of another deployment: %+v, %v", names, err)
	}
	m, err := s.Metric(context.Background(), telquery.MetricQuery{Filter: telquery.Filter{Since: T0, Until: T0.Add(4 * time.Minute)}, Name: "queue.depth", GroupBy: "queue", Step: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m.Agg != telquery.AggAvg || len(m.Series) != 2 || m.Series[0].Group != "emails" || len(m.Series[0].Points) != 2 ||
		m.Series[0].Points[0].Value != 30 || m.Series[1].Points[1].Value != 35 {
		t.Fatalf("queue depth by queue: %+v", m)
	}
	m, err = s.Metric(context.Background(), telquery.MetricQuery{Filter: telquery.Filter{Since: T0, Until: T0.Add(4 * time.Minute)}, Name: "http.requests", GroupBy: "release", Step: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m.Agg != telquery.AggLast || len(m.Series) != 1 || m.Series[0].Group != "1.1.0" || m.Series[0].Points[1].Value != 400 {
		t.Fatalf("cumulative requests by release: %+v", m)
	}
}

func testTailSeesNewRecordsOnly(t *testing.T, open Opener) {
	s := open(t, Options{})
	Consume(t, s, LogBatch(t, AcmeOld, LogSpec{At: T0, Severity: plog.SeverityNumberError, Body: "before"}))
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
		Consume(t, s, LogBatch(t, AcmeOld,
			LogSpec{At: T0, Severity: plog.SeverityNumberInfo, Body: "quiet"},
			LogSpec{At: T0, Severity: plog.SeverityNumberError, Body: fmt.Sprintf("after %d", i)}))
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

func testRetentionByAgeDropsOldRecords(t *testing.T, open Opener) {
	clk := clock.NewFake(T0.Add(8 * 24 * time.Hour))
	s := open(t, Options{Clock: clk, MaxAge: 7 * 24 * time.Hour})
	recent := T0.Add(8*24*time.Hour - time.Hour)
	Consume(t, s,
		LogBatch(t, AcmeOld, LogSpec{At: T0, Severity: plog.SeverityNumberInfo, Body: "old"}),
		LogBatch(t, AcmeOld, LogSpec{At: recent, Severity: plog.SeverityNumberInfo, Body: "recent"}),
		SpanBatch(t, AcmeOld, Requests(1, 10, 0, T0, time.Millisecond, "/old")...),
		SpanBatch(t, AcmeOld, Requests(100, 10, 0, recent, time.Millisecond, "/recent")...))
	if err := s.Retain(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, _ := s.Logs(context.Background(), telquery.LogQuery{})
	if len(page.Logs) != 1 || page.Logs[0].Body != "recent" {
		t.Fatalf("after retention: %+v, want only the recent record", page.Logs)
	}
	red, _ := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: T0, Until: clk.Now()}, Step: 24 * time.Hour, GroupBy: telquery.ByFunction})
	if len(red.Series) != 1 || red.Series[0].Group != "/recent" {
		t.Fatalf("rollups after retention: %+v, want only /recent", red.Series)
	}
}

func testACancelledConsumeIsStoredOnlyIfAcknowledged(t *testing.T, open Opener) {
	s := open(t, Options{})
	acked := 0
	for i := 0; i < 100; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		if s.Consume(CancelOnWatch{ctx, cancel}, LogBatch(t, AcmeOld, LogSpec{At: T0, Severity: plog.SeverityNumberInfo, Body: fmt.Sprintf("record %d", i)})) == nil {
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

func testCompareAfterARollbackUsesTheCurrentStretch(t *testing.T, open Opener) {
	s := open(t, Options{})
	for m := 0; m < 15; m++ {
		at := T0.Add(time.Duration(m) * time.Minute)
		switch {
		case m < 5:
			Consume(t, s, SpanBatch(t, AcmeOld, Requests(uint64(m*1000), 10, 0, at, 10*time.Millisecond, "/pay")...))
		case m < 10:
			Consume(t, s, SpanBatch(t, AcmeNew, Requests(uint64(m*1000), 10, 5, at, 10*time.Millisecond, "/pay")...))
		default:
			Consume(t, s, SpanBatch(t, AcmeOld, Requests(uint64(m*1000), 10, 1, at, 10*time.Millisecond, "/pay")...))
		}
	}
	c, err := s.CompareReleases(context.Background(), telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Current.Release != "1.0.0" || !c.Current.From.Equal(T0.Add(10*time.Minute)) || c.Current.Errors != 5 || c.Previous.Errors != 25 {
		t.Fatalf("after rolling back to 1.0.0: %+v", c)
	}
}

// A release switch a few seconds into a minute leaves the previous release a
// moment of that minute. Weighed against the current release's first minute,
// that moment holds a request or two, too few for a verdict until the next
// minute: the regression detector then waited up to a minute to flag a
// release that was clearly broken.
func testCompareJustAfterASwitchSeesThePreviousRelease(t *testing.T, open Opener) {
	s := open(t, Options{})
	for m := 0; m < 5; m++ {
		Consume(t, s, SpanBatch(t, AcmeOld, Requests(uint64(m*1000), 20, 0, T0.Add(time.Duration(m)*time.Minute), 10*time.Millisecond, "/pay")...))
	}
	switchAt := T0.Add(5*time.Minute + 2*time.Second)
	Consume(t, s, SpanBatch(t, AcmeOld, Requests(5000, 1, 0, T0.Add(5*time.Minute), 10*time.Millisecond, "/pay")...))
	Consume(t, s, SpanBatch(t, AcmeNew, Requests(6000, 30, 6, switchAt, 10*time.Millisecond, "/pay")...))
	c, err := s.CompareReleases(context.Background(), telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod"}, Window: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if c.Current.Release != "1.1.0" || c.Current.Requests != 30 || c.Current.Errors != 6 {
		t.Fatalf("current side %+v, want 1.1.0's 30 requests and 6 errors", c.Current)
	}
	if c.Previous.Release != "1.0.0" || c.Previous.Requests != 21 {
		t.Errorf("previous side %+v (%s–%s), want 1.0.0's last full minute and its moment of the switch's: 21 requests",
			c.Previous, c.Previous.From, c.Previous.To)
	}
}

func testTraceWithAParentCycleStillShowsEverySpan(t *testing.T, open Opener) {
	s := open(t, Options{})
	Consume(t, s, SpanBatch(t, AcmeOld,
		SpanSpec{Trace: 9, ID: 1, Name: "root", Kind: ptrace.SpanKindServer, At: T0, Dur: time.Second},
		SpanSpec{Trace: 9, ID: 2, Parent: 3, Name: "a", At: T0.Add(time.Millisecond), Dur: time.Millisecond},
		SpanSpec{Trace: 9, ID: 3, Parent: 2, Name: "b", At: T0.Add(2 * time.Millisecond), Dur: time.Millisecond}))
	tr, err := s.Trace(context.Background(), TraceHex(9))
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

func testTailMissesNothingWhileWritersCommitConcurrently(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan string, 1000)
	go func() {
		_ = s.TailLogs(ctx, telquery.LogQuery{}, func(l telquery.Log) error { seen <- l.Body; return nil })
	}()
	// The tail starts from the newest row when it begins; wait until it listens.
	probe := 0
	for listening := false; !listening; probe++ {
		Consume(t, s, LogBatch(t, AcmeOld, LogSpec{At: T0, Severity: plog.SeverityNumberInfo, Body: fmt.Sprintf("probe %d", probe)}))
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
				specs := make([]LogSpec, per)
				for i := range specs {
					specs[i] = LogSpec{At: T0, Severity: plog.SeverityNumberInfo, Body: fmt.Sprintf("g%d b%d r%d", g, b, i)}
				}
				if err := s.Consume(context.Background(), LogBatch(t, AcmeOld, specs...)); err != nil {
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

func testREDBoundsPointsAndRatesThePartialLastStep(t *testing.T, open Opener) {
	now := T0.Add(90 * time.Second)
	s := open(t, Options{Clock: clock.NewFake(now)})
	Consume(t, s, SpanBatch(t, AcmeOld, Requests(1, 60, 0, T0.Add(60*time.Second), time.Millisecond, "/pay")...))
	red, err := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: T0}, Step: time.Minute})
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
	if n := len(year.Series[0].Points); n > maxPoints || year.StepSec <= 60 {
		t.Fatalf("a year at 1m steps: %d points of %vs, want at most %d", n, year.StepSec, maxPoints)
	}
}

func testErrorRatesOfSeveralDeploymentsInOneQuery(t *testing.T, open Opener) {
	s := open(t, Options{})
	SendReleases(t, s)
	// The clock stands at T0+1h: the default window is the hour from T0.
	got, err := s.ErrorRates(context.Background(), telquery.ErrorRateQuery{Deployments: []string{"acme-prod", "nobody", "umbrella-dr"}})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Since.Equal(T0) || !got.Until.Equal(T0.Add(time.Hour)) || got.StepSec != 60 || len(got.Series) != 3 {
		t.Fatalf("window %s–%s step %v, %d series; want the hour from T0 by minute, 3 series", got.Since, got.Until, got.StepSec, len(got.Series))
	}
	acme, nobody, umb := got.Series[0], got.Series[1], got.Series[2]
	if acme.Deployment != "acme-prod" || nobody.Deployment != "nobody" || umb.Deployment != "umbrella-dr" {
		t.Fatalf("series not in the order asked: %s, %s, %s", acme.Deployment, nobody.Deployment, umb.Deployment)
	}
	for _, sr := range got.Series {
		if len(sr.Points) != 60 {
			t.Fatalf("%s: %d points; want one per minute of the hour", sr.Deployment, len(sr.Points))
		}
	}
	if acme.Requests != 1000 || acme.Errors != 60 || nobody.Requests != 0 || umb.Requests != 500 || umb.Errors != 0 {
		t.Fatalf("totals acme %d/%d nobody %d umbrella %d/%d; want 1000/60, 0, 500/0", acme.Requests, acme.Errors, nobody.Requests, umb.Requests, umb.Errors)
	}
	if p := acme.Points[0]; !p.Time.Equal(T0) || p.Requests != 100 || p.Errors != 2 || p.ErrorRate != 0.02 {
		t.Fatalf("acme minute 0 = %+v; want 100 requests, 2 errors, 2%%", p)
	}
	if p := acme.Points[7]; p.ErrorRate != 0.1 {
		t.Fatalf("acme minute 7 = %+v; want 10%% on 1.1.0", p)
	}
	if p := acme.Points[30]; p.Requests != 0 || p.ErrorRate != 0 {
		t.Fatalf("acme minute 30 = %+v; want a quiet minute", p)
	}

	// A narrower window, and the limits.
	got, err = s.ErrorRates(context.Background(), telquery.ErrorRateQuery{Deployments: []string{"acme-prod"}, Since: T0.Add(5 * time.Minute), Until: T0.Add(7 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if sr := got.Series[0]; len(sr.Points) != 2 || sr.Requests != 200 || sr.Errors != 20 {
		t.Fatalf("minutes 5-6: %+v; want 2 points, 200 requests, 20 errors", sr)
	}
	for _, q := range []telquery.ErrorRateQuery{{}, {Deployments: make([]string, telquery.MaxErrorRateDeployments+1)},
		{Deployments: []string{"acme-prod"}, Since: T0.Add(-48 * time.Hour)}} {
		if _, err := s.ErrorRates(context.Background(), q); !errors.Is(err, telquery.ErrInvalid) {
			t.Errorf("%d deployments since %s: err = %v; want ErrInvalid", len(q.Deployments), q.Since, err)
		}
	}
}

func testSpanEventsAreKeptInOrder(t *testing.T, open Opener) {
	s := open(t, Options{})
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	TagResource(rs.Resource(), AcmeNew)
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i, events := range [][]string{{"retry", "exception"}, nil} {
		sp := spans.AppendEmpty()
		sp.SetTraceID(TraceID(7))
		sp.SetSpanID(SpanID(uint64(i + 1)))
		sp.SetName("charge")
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(T0))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(T0.Add(time.Second)))
		for j, name := range events {
			e := sp.Events().AppendEmpty()
			e.SetName(name)
			e.SetTimestamp(pcommon.NewTimestampFromTime(T0.Add(time.Duration(j+1) * time.Millisecond)))
			e.Attributes().PutStr("exception.message", "card \xff declined")
			e.Attributes().PutInt("attempt", int64(j+1))
		}
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	Consume(t, s, consumer.Batch{Signal: otlp.Traces, DeploymentID: AcmeNew.ID, Received: T0, Records: td.SpanCount(), Data: b})

	tr, err := s.Trace(context.Background(), TraceHex(7))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Roots) != 2 {
		t.Fatalf("%d spans", len(tr.Roots))
	}
	ev := tr.Roots[0].Events
	if len(ev) != 2 || ev[0].Name != "retry" || ev[1].Name != "exception" || !ev[1].Time.Equal(T0.Add(2*time.Millisecond)) ||
		ev[1].Attributes["exception.message"] != "card \uFFFD declined" || ev[1].Attributes["attempt"] != float64(2) {
		t.Errorf("events %+v", ev)
	}
	if tr.Roots[1].Events != nil {
		t.Errorf("a span without events has %+v", tr.Roots[1].Events)
	}
}

func testRuntimeGivesTheNewestPointAndTheBaselineBeforeTheWindow(t *testing.T, open Opener) {
	s := open(t, Options{Clock: clock.NewFake(T0.Add(15 * time.Minute))})
	Consume(t, s, RuntimeRound(t, T0, 40, 100), RuntimeRound(t, T0.Add(4*time.Minute), 30, 150),
		RuntimeRound(t, T0.Add(6*time.Minute), 20, 170), RuntimeRound(t, T0.Add(9*time.Minute), 7, 230))

	// The default window is the last 10 minutes: from T0+5m.
	m, err := s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Since.Equal(T0.Add(5*time.Minute)) || len(m.Series) != 2 || m.Truncated {
		t.Fatalf("runtime: %+v", m)
	}
	req, depth := m.Series[0], m.Series[1]
	if req.Name != "periscope.ingress.requests" || req.Value != 230 || !req.HasBase || req.BaseValue != 150 ||
		req.Attrs["http.route"] != "/orders/{id}" || !req.Time.Equal(T0.Add(9*time.Minute)) {
		t.Errorf("requests series: %+v", req)
	}
	if depth.Name != "periscope.queue.depth" || depth.Value != 7 || depth.Kind != "gauge" || depth.Attrs["messaging.destination.name"] != "ORDERS" {
		t.Errorf("depth series: %+v", depth)
	}

	// A window with nothing in it answers no series, not stale ones.
	m, err = s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod", Since: T0.Add(10 * time.Minute)})
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

func testRuntimeGivesHistogramBucketsOfTheNewestPointAndTheBaseline(t *testing.T, open Opener) {
	s := open(t, Options{Clock: clock.NewFake(T0.Add(15 * time.Minute))})
	// The agent's attribute order changed between releases: the rounds in the
	// window send them reversed, and must still be one series.
	Consume(t, s, DurationRound(t, T0.Add(4*time.Minute), Buckets15(1, 40)),
		DurationRound(t, T0.Add(9*time.Minute), Buckets15(1, 90, 6, 10), "periscope.http.status_class", "http.route", "periscope.ingress.name"))

	m, err := s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Series) != 1 {
		t.Fatalf("series: %+v", m.Series)
	}
	d := m.Series[0]
	if d.Histogram == nil || !slices.Equal(d.Histogram.Bounds, SemconvBounds) || !slices.Equal(d.Histogram.Counts, Buckets15(1, 90, 6, 10)) {
		t.Errorf("newest buckets: %+v", d.Histogram)
	}
	if !d.HasBase || d.BaseHistogram == nil || !slices.Equal(d.BaseHistogram.Counts, Buckets15(1, 40)) {
		t.Errorf("baseline buckets: %+v", d.BaseHistogram)
	}
}

func testHistogramsWithoutReadableBucketsKeepCountAndSum(t *testing.T, open Opener) {
	s := open(t, Options{Clock: clock.NewFake(T0.Add(15 * time.Minute))})
	// Counts that do not match the bounds are stored without buckets.
	bad := DurationRound(t, T0.Add(9*time.Minute), []uint64{3, 4})
	Consume(t, s, bad)
	// An exponential histogram of the same name is stored (count and sum) and
	// answers no buckets rather than failing.
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	TagResource(rm.Resource(), Dep{"acme-prod", "acme", "1.1.0", "periscope-agent", ""})
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("http.server.request.duration")
	p := m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(T0.Add(9 * time.Minute)))
	p.SetCount(6)
	p.SetSum(0.6)
	p.SetScale(2)
	p.Positive().BucketCounts().FromRaw([]uint64{1, 2, 3})
	p.Attributes().PutStr("http.route", "/exp")
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	Consume(t, s, consumer.Batch{Signal: otlp.Metrics, DeploymentID: "acme-prod", Received: T0, Data: data})

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

func testREDFromRollupsMatchesRawRows(t *testing.T, open Opener) {
	s := open(t, Options{})
	SendReleases(t, s)
	q := telquery.REDQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: T0, Until: T0.Add(10 * time.Minute)}, GroupBy: telquery.ByRelease, Step: 5 * time.Minute}
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
		Within(t, "old p95", old.P95, 100, 0.1)
		Within(t, "new p99", cur.P99, 400, 0.1)
	}
	if raw.Series[1].Total.P95 != 400 {
		t.Errorf("raw p95 %v, want exactly 400", raw.Series[1].Total.P95)
	}

	byDep, err := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: T0, Until: T0.Add(10 * time.Minute), Function: "/pay"}, GroupBy: telquery.ByDeployment})
	if err != nil {
		t.Fatal(err)
	}
	if len(byDep.Series) != 2 || byDep.Series[1].Total.Requests != 500 || byDep.Series[1].Total.ErrorRate != 0 || byDep.StepSec != 60 {
		t.Fatalf("by deployment: %+v", byDep)
	}
}
