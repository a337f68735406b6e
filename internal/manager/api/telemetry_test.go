package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store"
)

// The telemetry routes are tested over a fake store: the real one is tested in
// internal/telstore and end to end in internal/e2e. The fake records what reaches
// it, so these tests see exactly what the API parsed.

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

const (
	viewerSecret = "psk_telemetry-viewer"
	traceID      = "4bf92f3577b34da6a3ce929d0e0e4736"
)

// keys knows one viewer token; the API's own authorization runs over it.
type keys struct{}

func (keys) Lookup(s string) (auth.APIToken, bool) {
	return auth.APIToken{ID: "v1", Name: "dash", Role: auth.RoleViewer}, s == viewerSecret
}
func (keys) Create(context.Context, auth.APIToken, string, auth.Role) (string, auth.APIToken, error) {
	return "", auth.APIToken{}, errors.New("not used")
}
func (keys) List() []auth.APIToken                               { return nil }
func (keys) Delete(context.Context, auth.APIToken, string) error { return errors.New("not used") }

// What the fake store answers: every field set, so a field the JSON loses shows.
var (
	cannedContext = telquery.Context{Deployment: "acme-prod", Customer: "acme", Cloud: "aws", Region: "us-east-1", Release: "1.8.0",
		Stack: "analytics", Service: "api", Function: "checkout", Container: "api-1", Replica: "r1"}
	cannedLogs = telquery.LogPage{Logs: []telquery.Log{{
		Time: t0.Add(-time.Second), Severity: 17, SeverityText: "ERROR", Body: "payment timed out",
		TraceID: traceID, SpanID: "00f067aa0ba902b7", Context: cannedContext,
		Attributes: map[string]any{"http.route": "/pay", "attempt": 2.0}, Resource: map[string]any{"service.name": "api"},
	}}, Next: "page2"}
	cannedChild = &telquery.Span{TraceID: traceID, SpanID: "b", ParentSpanID: "a", Name: "SELECT", Kind: "client",
		Start: t0.Add(time.Millisecond), DurationMS: 3, Status: "error", StatusMessage: "deadlock", Context: cannedContext,
		Attributes: map[string]any{"db.system": "postgresql"}, OffsetMS: 1}
	cannedRoot = &telquery.Span{TraceID: traceID, SpanID: "a", Name: "POST /pay", Kind: "server", Start: t0, DurationMS: 12.5,
		Status: "ok", Context: cannedContext, Attributes: map[string]any{}, Children: []*telquery.Span{cannedChild}}
	cannedTrace = telquery.Trace{TraceID: traceID, Start: t0, DurationMS: 12.5, SpanCount: 2, Errors: 1, Services: []string{"api"},
		Roots: []*telquery.Span{cannedRoot}}
	cannedSpans = telquery.SpanPage{Spans: []telquery.Span{*cannedRoot}, Next: "s2"}
	cannedStats = telquery.Stats{Requests: 120, Errors: 6, ErrorRate: 0.05, Rate: 2, P50: 10, P95: 40, P99: 90}
	cannedRED   = telquery.RED{Since: t0.Add(-time.Hour), Until: t0, StepSec: 60, GroupBy: "release", Series: []telquery.REDSeries{
		{Group: "1.8.0", Total: cannedStats, Points: []telquery.REDPoint{{Time: t0.Add(-time.Minute), Stats: cannedStats}}},
	}}
	cannedComparison = telquery.Comparison{Deployment: "acme-prod",
		Current:         telquery.ReleaseWindow{Release: "1.8.0", From: t0.Add(-time.Hour), To: t0, Stats: cannedStats},
		Previous:        telquery.ReleaseWindow{Release: "1.7.2", From: t0.Add(-2 * time.Hour), To: t0.Add(-time.Hour), Stats: telquery.Stats{Requests: 1}},
		ErrorRateChange: 0.05, P95Change: 40, P95Ratio: 2}
	cannedMetricNames = telquery.MetricNames{Metrics: []telquery.MetricInfo{{Name: "queue.depth", Kind: "gauge", Unit: "1", Points: 3, Last: t0}}}
	cannedMetric      = telquery.Metric{Name: "queue.depth", Unit: "1", Kind: "gauge", Agg: "max", StepSec: 120, GroupBy: "deployment",
		Series: []telquery.MetricSeries{{Group: "acme-prod", Points: []telquery.MetricPoint{{Time: t0, Value: 7}}}}}
	cannedErrorRates = telquery.ErrorRates{Since: t0.Add(-time.Hour), Until: t0, StepSec: 60, Series: []telquery.ErrorRateSeries{
		{Deployment: "acme-prod", Requests: 10, Errors: 5, Points: []telquery.ErrorRatePoint{{Time: t0.Add(-time.Minute), Requests: 10, Errors: 5, ErrorRate: 0.5}}},
	}}
	errBroken = errors.New("disk on fire")
)

// fakeTelemetry answers fixed data and records every query it is given.
type fakeTelemetry struct {
	mu      sync.Mutex
	queries []any
	// fail, when set, is every query's answer.
	fail error
	// tail feeds TailLogs; tailEnded receives what TailLogs returned.
	tail      chan telquery.Log
	tailEnded chan error
}

func newFake() *fakeTelemetry {
	return &fakeTelemetry{tail: make(chan telquery.Log), tailEnded: make(chan error, 1)}
}

func (f *fakeTelemetry) record(q any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	return f.fail
}

// asked returns the queries received so far.
func (f *fakeTelemetry) asked() []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]any(nil), f.queries...)
}

func (f *fakeTelemetry) Logs(_ context.Context, q telquery.LogQuery) (telquery.LogPage, error) {
	return cannedLogs, f.record(q)
}

func (f *fakeTelemetry) TailLogs(ctx context.Context, q telquery.LogQuery, fn func(telquery.Log) error) error {
	err := f.record(q)
	for err == nil {
		select {
		case <-ctx.Done():
			f.tailEnded <- nil
			return nil
		case l := <-f.tail:
			err = fn(l)
		}
	}
	f.tailEnded <- err
	return err
}

func (f *fakeTelemetry) Spans(_ context.Context, q telquery.SpanQuery) (telquery.SpanPage, error) {
	return cannedSpans, f.record(q)
}

func (f *fakeTelemetry) Trace(_ context.Context, id string) (telquery.Trace, error) {
	if err := f.record(id); err != nil {
		return telquery.Trace{}, err
	}
	if id != traceID {
		return telquery.Trace{}, fmt.Errorf("trace %s: %w", id, store.ErrNotFound)
	}
	return cannedTrace, nil
}

func (f *fakeTelemetry) RED(_ context.Context, q telquery.REDQuery) (telquery.RED, error) {
	return cannedRED, f.record(q)
}

func (f *fakeTelemetry) CompareReleases(_ context.Context, q telquery.CompareQuery) (telquery.Comparison, error) {
	return cannedComparison, f.record(q)
}

func (f *fakeTelemetry) Metric(_ context.Context, q telquery.MetricQuery) (telquery.Metric, error) {
	return cannedMetric, f.record(q)
}

func (f *fakeTelemetry) ErrorRates(_ context.Context, q telquery.ErrorRateQuery) (telquery.ErrorRates, error) {
	return cannedErrorRates, f.record(q)
}

func (f *fakeTelemetry) MetricNames(_ context.Context, q telquery.MetricNamesQuery) (telquery.MetricNames, error) {
	return cannedMetricNames, f.record(q)
}

// serve runs the API over tel with the clock at t0. A nil tel is a nil pointer in
// the interface, as a manager without a store passes it: the API must see none.
func serve(t *testing.T, tel *fakeTelemetry) string {
	a := api.New(nil, keys{}, nil).WithTelemetry(tel, clock.NewFake(t0))
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestTelemetryParametersReachTheStoreParsed(t *testing.T) {
	ctx := context.Background()
	fake := newFake()
	c := apiclient.New(serve(t, fake), viewerSecret)
	f := telquery.Filter{Deployment: "acme-prod", Release: "1.8.0", Since: t0.Add(-time.Hour)}
	for _, tc := range []struct {
		path      string
		wantQuery any
		out, want any
	}{
		{"/api/v1/logs?deployment=acme-prod&release=1.8.0&since=1h&min_severity=error&attr=http.route=/pay&attr=user=a%3Db&contains=Timed&limit=5&cursor=c1",
			telquery.LogQuery{Filter: f, MinSeverity: 17, Attrs: map[string]string{"http.route": "/pay", "user": "a=b"}, Contains: "Timed", Limit: 5, Cursor: "c1"},
			&telquery.LogPage{}, &cannedLogs},
		{"/api/v1/logs?trace_id=4BF92F3577B34DA6A3CE929D0E0E4736&until=2026-11-24T09:30:00Z",
			telquery.LogQuery{Filter: telquery.Filter{Until: t0.Add(-30 * time.Minute)}, TraceID: traceID},
			&telquery.LogPage{}, &cannedLogs},
		{"/api/v1/spans?deployment=acme-prod&release=1.8.0&since=1h&errors=true&min_duration=250ms&roots=1&name=POST+%2Fpay",
			telquery.SpanQuery{Filter: f, ErrorsOnly: true, MinDuration: 250 * time.Millisecond, RootsOnly: true, Name: "POST /pay"},
			&telquery.SpanPage{}, &cannedSpans},
		{"/api/v1/traces/" + strings.ToUpper(traceID), traceID, &telquery.Trace{}, &cannedTrace},
		{"/api/v1/red?deployment=acme-prod&release=1.8.0&since=1h&group_by=release&step=5m&raw=true",
			telquery.REDQuery{Filter: f, GroupBy: telquery.ByRelease, Step: 5 * time.Minute, Raw: true},
			&telquery.RED{}, &cannedRED},
		{"/api/v1/releases/compare?deployment=acme-prod&window=30m",
			telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod"}, Window: 30 * time.Minute},
			&telquery.Comparison{}, &cannedComparison},
		{"/api/v1/metrics/series?name=queue.depth&group_by=deployment&agg=max&step=2m&service=api",
			telquery.MetricQuery{Filter: telquery.Filter{Service: "api"}, Name: "queue.depth", GroupBy: "deployment", Agg: "max", Step: 2 * time.Minute},
			&telquery.Metric{}, &cannedMetric},
		{"/api/v1/error-rates?deployment=acme-prod&deployment=globex&since=1h",
			telquery.ErrorRateQuery{Deployments: []string{"acme-prod", "globex"}, Since: t0.Add(-time.Hour)},
			&telquery.ErrorRates{}, &cannedErrorRates},
		{"/api/v1/metrics/names?deployment=acme-prod&release=1.8.0&since=1h",
			telquery.MetricNamesQuery{Filter: f}, &telquery.MetricNames{}, &cannedMetricNames},
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := len(fake.asked())
			if err := c.Do(ctx, "GET", tc.path, nil, tc.out); err != nil {
				t.Fatal(err)
			}
			asked := fake.asked()
			if len(asked) != before+1 || !reflect.DeepEqual(asked[before], tc.wantQuery) {
				t.Fatalf("store was asked %#v\nwant %#v", asked[before:], tc.wantQuery)
			}
			if !reflect.DeepEqual(tc.out, tc.want) {
				t.Fatalf("answer %+v\nwant %+v", tc.out, tc.want)
			}
		})
	}
}

// TestTelemetryClient checks the Go client's methods: each query reaches the store
// as it was given, and each answer comes back whole.
func TestTelemetryClient(t *testing.T) {
	ctx := context.Background()
	fake := newFake()
	c := apiclient.New(serve(t, fake), viewerSecret)
	f := telquery.Filter{Deployment: "acme-prod", Customer: "acme", Cloud: "aws", Region: "us-east-1", Release: "1.8.0",
		Stack: "analytics", Service: "api", Function: "checkout", Since: t0.Add(-2 * time.Hour), Until: t0.Add(-time.Hour)}
	check := func(name string, q, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		asked := fake.asked()
		if last := asked[len(asked)-1]; !reflect.DeepEqual(last, q) {
			t.Errorf("%s: store was asked %#v\nwant %#v", name, last, q)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: answer %+v\nwant %+v", name, got, want)
		}
	}
	lq := telquery.LogQuery{Filter: f, MinSeverity: 13, Contains: "pay", Attrs: map[string]string{"a": "1", "b": "2"}, TraceID: traceID, Limit: 20, Cursor: "x"}
	lp, err := c.Logs(ctx, lq)
	check("Logs", lq, lp, cannedLogs, err)
	sq := telquery.SpanQuery{Filter: f, Name: "GET /", ErrorsOnly: true, MinDuration: time.Second, RootsOnly: true, Limit: 3, Cursor: "y"}
	sp, err := c.Spans(ctx, sq)
	check("Spans", sq, sp, cannedSpans, err)
	tr, err := c.Trace(ctx, traceID)
	check("Trace", traceID, tr, cannedTrace, err)
	rq := telquery.REDQuery{Filter: f, Step: 10 * time.Minute, GroupBy: telquery.ByDeployment, Raw: true}
	rd, err := c.RED(ctx, rq)
	check("RED", rq, rd, cannedRED, err)
	cq := telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod", Stack: "analytics"}, Window: 45 * time.Minute}
	cmp, err := c.CompareReleases(ctx, cq)
	check("CompareReleases", cq, cmp, cannedComparison, err)
	mq := telquery.MetricQuery{Filter: f, Name: "queue.depth", GroupBy: "deployment", Step: time.Minute, Agg: "last"}
	m, err := c.Metric(ctx, mq)
	check("Metric", mq, m, cannedMetric, err)
}

func TestTelemetryErrors(t *testing.T) {
	ctx := context.Background()
	fake := newFake()
	base := serve(t, fake)
	without := serve(t, nil)
	broken := newFake()
	broken.fail = errBroken
	brokenBase := serve(t, broken)
	for _, tc := range []struct {
		name, base, token, path string
		status                  int
		code                    string
	}{
		{"no token", base, "", "/api/v1/logs", 401, "unauthenticated"},
		{"unknown token", base, "psk_nope", "/api/v1/red", 401, "unauthenticated"},
		{"bad since", base, viewerSecret, "/api/v1/logs?since=yesterday", 400, "invalid"},
		{"until before since", base, viewerSecret, "/api/v1/spans?since=1h&until=2h", 400, "invalid"},
		{"bad severity", base, viewerSecret, "/api/v1/logs?min_severity=loud", 400, "invalid"},
		{"attr without value", base, viewerSecret, "/api/v1/logs?attr=k", 400, "invalid"},
		{"bad limit", base, viewerSecret, "/api/v1/spans?limit=-1", 400, "invalid"},
		{"bad errors flag", base, viewerSecret, "/api/v1/spans?errors=maybe", 400, "invalid"},
		{"bad min_duration", base, viewerSecret, "/api/v1/spans?min_duration=long", 400, "invalid"},
		{"bad group_by", base, viewerSecret, "/api/v1/red?group_by=colour", 400, "invalid"},
		{"bad window", base, viewerSecret, "/api/v1/releases/compare?window=forever", 400, "invalid"},
		{"metric without name", base, viewerSecret, "/api/v1/metrics/series", 400, "invalid"},
		{"bad agg", base, viewerSecret, "/api/v1/metrics/series?name=m&agg=median", 400, "invalid"},
		{"error rates of no deployment", base, viewerSecret, "/api/v1/error-rates", 400, "invalid"},
		{"error rates over two days", base, viewerSecret, "/api/v1/error-rates?deployment=a&since=48h", 400, "invalid"},
		{"bad tail parameter", base, viewerSecret, "/api/v1/logs/tail?min_severity=loud", 400, "invalid"},
		{"short trace id", base, viewerSecret, "/api/v1/traces/abc", 400, "invalid"},
		{"trace id not hex", base, viewerSecret, "/api/v1/traces/zzf92f3577b34da6a3ce929d0e0e4736", 400, "invalid"},
		{"unknown trace", base, viewerSecret, "/api/v1/traces/00000000000000000000000000000001", 404, "not_found"},
		{"store failure is not leaked", brokenBase, viewerSecret, "/api/v1/red", 500, "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := len(fake.asked())
			err := apiclient.New(tc.base, tc.token).Do(ctx, "GET", tc.path, nil, nil)
			var ae *apiclient.Error
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code || ae.Message == "" {
				t.Fatalf("want %d %s with a message, got %v", tc.status, tc.code, err)
			}
			if strings.Contains(ae.Message, errBroken.Error()) {
				t.Fatalf("store error text reached the client: %q", ae.Message)
			}
			// Only a well-formed request may reach the store.
			if n := len(fake.asked()) - asked; tc.status != 404 && n != 0 {
				t.Fatalf("a refused request reached the store (%d queries)", n)
			}
		})
	}
	telemetry := map[string]bool{"/api/v1/logs": true, "/api/v1/logs/tail": true, "/api/v1/spans": true, "/api/v1/traces/{id}": true,
		"/api/v1/red": true, "/api/v1/releases/compare": true, "/api/v1/metrics/series": true, "/api/v1/error-rates": true}
	for _, r := range api.New(nil, nil, nil).Routes() {
		if !telemetry[r.Path] {
			continue
		}
		delete(telemetry, r.Path)
		if r.Method != "GET" || r.Role != auth.RoleViewer {
			t.Errorf("%s %s needs %q, want GET for viewers", r.Method, r.Path, r.Role)
		}
		path := strings.Replace(r.Path, "{id}", traceID, 1) + "?name=m&deployment=d"
		err := apiclient.New(without, viewerSecret).Do(ctx, r.Method, path, nil, nil)
		var ae *apiclient.Error
		if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "unavailable" {
			t.Errorf("%s %s without a store: want 503 unavailable, got %v", r.Method, path, err)
		}
	}
	if len(telemetry) > 0 {
		t.Errorf("not served: %v", telemetry)
	}
}

func TestTailLogsStreamsUntilTheClientLeaves(t *testing.T) {
	fake := newFake()
	base := serve(t, fake)
	// Cancelling is the client going away; the deadline only bounds a broken test.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/logs/tail?deployment=acme-prod&min_severity=warn", nil)
	req.Header.Set("Authorization", "Bearer "+viewerSecret)
	// The answer's headers arrive before any record exists.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	for i := range 3 {
		sent := cannedLogs.Logs[0]
		sent.Body = fmt.Sprintf("record %d", i)
		fake.tail <- sent
		// Each record arrives on its own line while the stream stays open.
		if !lines.Scan() {
			t.Fatalf("stream ended before record %d: %v", i, lines.Err())
		}
		var got telquery.Log
		if err := json.Unmarshal(lines.Bytes(), &got); err != nil || !reflect.DeepEqual(got, sent) {
			t.Fatalf("line %q: got %+v, %v; want %+v", lines.Text(), got, err, sent)
		}
	}
	want := telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod"}, MinSeverity: 13}
	if asked := fake.asked(); len(asked) != 1 || !reflect.DeepEqual(asked[0], want) {
		t.Fatalf("store was asked %#v, want %#v", asked, want)
	}
	cancel()
	select {
	case err := <-fake.tailEnded:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("tail ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the store's tail still runs after the client left")
	}
}

func TestClientTailLogs(t *testing.T) {
	fake := newFake()
	c := apiclient.New(serve(t, fake), viewerSecret)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan telquery.Log)
	done := make(chan error, 1)
	go func() {
		done <- c.TailLogs(ctx, telquery.LogQuery{Filter: telquery.Filter{Release: "1.8.0"}, Contains: "pay"}, func(l telquery.Log) error {
			got <- l
			return nil
		})
	}()
	for i := range 2 {
		sent := cannedLogs.Logs[0]
		sent.Severity = 9 + i
		fake.tail <- sent
		if l := <-got; !reflect.DeepEqual(l, sent) {
			t.Fatalf("got %+v, want %+v", l, sent)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("TailLogs returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("TailLogs did not return after its context ended")
	}
	if err := <-fake.tailEnded; err != nil {
		t.Logf("store tail ended with %v", err)
	}

	// A tail the store ends says why, through the trailer.
	failing := newFake()
	failing.fail = fmt.Errorf("%w: trace id %q", telquery.ErrInvalid, "nope")
	err := apiclient.New(serve(t, failing), viewerSecret).TailLogs(context.Background(), telquery.LogQuery{}, func(telquery.Log) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `trace id "nope"`) {
		t.Fatalf("TailLogs = %v, want the store's reason", err)
	}
	broken := newFake()
	broken.fail = errBroken
	err = apiclient.New(serve(t, broken), viewerSecret).TailLogs(context.Background(), telquery.LogQuery{}, func(telquery.Log) error { return nil })
	if err == nil || strings.Contains(err.Error(), errBroken.Error()) || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("TailLogs = %v, want an internal error without the store's text", err)
	}
	// No token, no stream.
	var ae *apiclient.Error
	err = apiclient.New(serve(t, fake), "").TailLogs(context.Background(), telquery.LogQuery{}, func(telquery.Log) error { return nil })
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("TailLogs without a token = %v, want 401", err)
	}
}

// TestCloseEndsTails checks that a server's graceful shutdown is not held up by a
// log tail whose client never leaves, once Close is registered with it.
func TestCloseEndsTails(t *testing.T) {
	fake := newFake()
	a := api.New(nil, keys{}, nil).WithTelemetry(fake, nil)
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.RegisterOnShutdown(a.Close)
	srv.Start()
	defer srv.Close()
	c := apiclient.New(srv.URL, viewerSecret)
	done := make(chan error, 1)
	go func() {
		done <- c.TailLogs(context.Background(), telquery.LogQuery{}, func(telquery.Log) error { return nil })
	}()
	fake.tail <- cannedLogs.Logs[0] // the tail is running
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a tail open: %v", err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("TailLogs = %v, want the manager shutting down", err)
	}
	// A tail asked for after Close is refused rather than left open.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/logs/tail", nil)
	req.Header.Set("Authorization", "Bearer "+viewerSecret)
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"unavailable"`) {
		t.Fatalf("tail after Close: %d %s", rec.Code, rec.Body)
	}
}

func (f *fakeTelemetry) Runtime(_ context.Context, q telquery.RuntimeQuery) (telquery.RuntimeMetrics, error) {
	return telquery.RuntimeMetrics{Since: q.Since, Until: q.Until, Series: []telquery.RuntimeSeries{}}, f.record(q)
}
