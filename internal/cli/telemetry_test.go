package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// The telemetry verbs are tested against a manager stand-in that records each
// request and answers fixed data: the test reads the request's parameters with
// the parser the real API uses, so it checks what the manager would see.

var now = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// standIn records requests and answers each telemetry endpoint.
type standIn struct {
	mu   sync.Mutex
	seen []*url.URL
	// tail is what /api/v1/logs/tail streams before it waits for the client to go.
	tail []telquery.Log
}

func (m *standIn) requests() []*url.URL {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*url.URL(nil), m.seen...)
}

func logRecord(body string, at time.Time) telquery.Log {
	return telquery.Log{Time: at, Severity: 17, SeverityText: "ERROR", Body: body,
		Context: telquery.Context{Deployment: "acme-prod", Release: "1.8.0", Service: "api", Function: "checkout"}}
}

func answers() map[string]any {
	child := &telquery.Span{TraceID: traceID, SpanID: "b", ParentSpanID: "a", Name: "SELECT orders", Status: "error", StatusMessage: "deadlock",
		DurationMS: 3, OffsetMS: 1.5, Context: telquery.Context{Service: "db"}}
	root := &telquery.Span{TraceID: traceID, SpanID: "a", Name: "POST /pay", Status: "ok", DurationMS: 12.5, Start: now,
		Context: telquery.Context{Deployment: "acme-prod", Release: "1.8.0", Service: "api", Function: "checkout"}, Children: []*telquery.Span{child}}
	st := telquery.Stats{Requests: 120, Errors: 6, ErrorRate: 0.05, Rate: 2, P50: 10, P95: 40, P99: 90}
	return map[string]any{
		"/api/v1/logs": telquery.LogPage{Logs: []telquery.Log{logRecord("second: payment timed out", now.Add(-time.Second)),
			logRecord("first: retrying", now.Add(-2*time.Second))}, Next: "page2"},
		"/api/v1/spans": telquery.SpanPage{Spans: []telquery.Span{*root}},
		"/api/v1/traces/" + traceID: telquery.Trace{TraceID: traceID, Start: now, DurationMS: 12.5, SpanCount: 2, Errors: 1, Services: []string{"api", "db"},
			Roots: []*telquery.Span{root}},
		"/api/v1/red": telquery.RED{Since: now.Add(-time.Hour), Until: now, StepSec: 60, GroupBy: "release",
			Series: []telquery.REDSeries{{Group: "1.8.0", Total: st, Points: []telquery.REDPoint{{Time: now.Add(-time.Minute), Stats: st}}}}},
		"/api/v1/releases/compare": telquery.Comparison{Deployment: "acme-prod",
			Current:         telquery.ReleaseWindow{Release: "1.8.0", From: now.Add(-time.Hour), To: now, Stats: st},
			Previous:        telquery.ReleaseWindow{Release: "1.7.2", From: now.Add(-2 * time.Hour), To: now.Add(-time.Hour), Stats: telquery.Stats{Requests: 100, P95: 20}},
			ErrorRateChange: 0.05, P95Change: 20, P95Ratio: 2},
		"/api/v1/deployments/acme-prod/runtime": runtimeview.Build("acme-prod", fleet.Health{Components: map[string]fleet.ComponentHealth{
			"worker/0": {Status: "crash-loop", Restarts: 4, LastError: "exit status 3: db connection refused"}}},
			telquery.RuntimeMetrics{Since: now.Add(-10 * time.Minute), Until: now, Series: []telquery.RuntimeSeries{
				{Name: "periscope.ingress.requests", Value: 30, HasBase: true, BaseValue: 10,
					Attrs: map[string]any{"periscope.ingress.name": "shop", "http.route": "/orders/{id}", "periscope.http.status_class": "5xx"}},
				{Name: "http.server.request.duration", Kind: "histogram", Count: 20, Sum: 3.5,
					Histogram: &telquery.Histogram{Bounds: []float64{0.1, 0.25}, Counts: []uint64{0, 20, 0}},
					Attrs:     map[string]any{"periscope.ingress.name": "shop", "http.route": "/orders/{id}", "periscope.http.status_class": "5xx"}},
				{Name: "periscope.ingress.requests", Value: 5,
					Attrs: map[string]any{"periscope.ingress.name": "shop", "http.route": "/health", "periscope.http.status_class": "2xx"}},
				{Name: "periscope.queue.consumer.pending", Value: 300,
					Attrs: map[string]any{"messaging.system": "nats", "messaging.destination.name": "ORDERS", "messaging.consumer.group.name": "billing"}},
				{Name: "system.filesystem.usage", Value: 600, Attrs: map[string]any{"periscope.source.name": "filesystem/data",
					"periscope.filesystem.path": "/var/lib/app", "system.filesystem.mountpoint": "/var", "system.filesystem.state": "used"}},
			}}),
		"/api/v1/metrics/series": telquery.Metric{Name: "queue.depth", Unit: "1", Kind: "gauge", Agg: "max", StepSec: 120, GroupBy: "deployment",
			Series: []telquery.MetricSeries{{Group: "acme-prod", Points: []telquery.MetricPoint{{Time: now, Value: 7}}}}},
	}
}

func (m *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.seen = append(m.seen, r.URL)
	m.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer psk_cli-test" {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthenticated","message":"no"}}`))
		return
	}
	if r.URL.Path == "/api/v1/logs/tail" {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, l := range m.tail {
			enc.Encode(l)
		}
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		return
	}
	a, ok := answers()[r.URL.Path]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"code":"not_found","message":"no such thing"}}`))
		return
	}
	json.NewEncoder(w).Encode(a)
}

// command is the periscope command set to run args against m, the clock at now.
func command(t *testing.T, m *standIn, args ...string) (root *cobra.Command, stdout, stderr *bytes.Buffer) {
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	// No CLI config file or environment of the machine running the test.
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("PERISCOPE_MANAGER", "")
	t.Setenv("PERISCOPE_TOKEN", "")
	root = newRoot(clock.NewFake(now))
	stdout, stderr = &bytes.Buffer{}, &bytes.Buffer{}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(append(args, "--manager", srv.URL, "--token", "psk_cli-test"))
	return root, stdout, stderr
}

// run executes the periscope command with args against m, the clock at now.
func run(t *testing.T, m *standIn, args ...string) (stdout, stderr *bytes.Buffer, err error) {
	root, stdout, stderr := command(t, m, args...)
	return stdout, stderr, root.Execute()
}

func TestTelemetryFlagsBecomeQueries(t *testing.T) {
	logs := func(v url.Values) (any, error) { return telquery.ParseLogQuery(v, now) }
	spans := func(v url.Values) (any, error) { return telquery.ParseSpanQuery(v, now) }
	red := func(v url.Values) (any, error) { return telquery.ParseREDQuery(v, now) }
	cmp := func(v url.Values) (any, error) { return telquery.ParseCompareQuery(v, now) }
	metric := func(v url.Values) (any, error) { return telquery.ParseMetricQuery(v, now) }
	hour := telquery.Filter{Since: now.Add(-time.Hour)}
	for _, tc := range []struct {
		args  []string
		path  string
		parse func(url.Values) (any, error)
		want  any
		// out must appear in the table output.
		out []string
	}{
		{[]string{"logs"}, "/api/v1/logs", logs, telquery.LogQuery{Filter: hour},
			[]string{"TIME", "DEPLOYMENT", "RELEASE", "SERVICE", "FUNCTION", "SEVERITY", "BODY", "acme-prod", "checkout", "ERROR", "second: payment timed out"}},
		{[]string{"logs", "--deployment", "acme-prod", "--customer", "acme", "--cloud", "aws", "--region", "us-east-1", "--release", "1.8.0",
			"--stack", "shop", "--service", "api", "--function", "checkout", "--since", "30m", "--until", "2026-11-24T09:55:00Z",
			"--severity", "error", "--contains", "timed out", "--attr", "http.route=/pay", "--attr", "user=a=b", "--trace-id", strings.ToUpper(traceID),
			"--limit", "5", "--cursor", "c1"},
			"/api/v1/logs", logs, telquery.LogQuery{
				Filter: telquery.Filter{Deployment: "acme-prod", Customer: "acme", Cloud: "aws", Region: "us-east-1", Release: "1.8.0", Stack: "shop",
					Service: "api", Function: "checkout", Since: now.Add(-30 * time.Minute), Until: now.Add(-5 * time.Minute)},
				MinSeverity: 17, Contains: "timed out", Attrs: map[string]string{"http.route": "/pay", "user": "a=b"}, TraceID: traceID, Limit: 5, Cursor: "c1"},
			nil},
		{[]string{"logs", "--severity", "13"}, "/api/v1/logs", logs, telquery.LogQuery{Filter: hour, MinSeverity: 13}, nil},
		// A cursor bounds its page: no window computed from a later now.
		{[]string{"logs", "--cursor", "c3"}, "/api/v1/logs", logs, telquery.LogQuery{Cursor: "c3"}, nil},
		// --until alone: the manager takes the hour before it, not before now.
		{[]string{"red", "--until", "2h"}, "/api/v1/red", red, telquery.REDQuery{Filter: telquery.Filter{Until: now.Add(-2 * time.Hour)}}, nil},
		{[]string{"traces", "--deployment", "acme-prod", "--release", "1.8.0", "--name", "POST /pay", "--errors", "--min-duration", "250ms", "--roots",
			"--limit", "10", "--cursor", "c2", "--since", "2h"},
			"/api/v1/spans", spans, telquery.SpanQuery{Filter: telquery.Filter{Deployment: "acme-prod", Release: "1.8.0", Since: now.Add(-2 * time.Hour)},
				Name: "POST /pay", ErrorsOnly: true, MinDuration: 250 * time.Millisecond, RootsOnly: true, Limit: 10, Cursor: "c2"},
			[]string{"TIME", "TRACE", "SPAN NAME", "DURATION", "STATUS", traceID, "POST /pay", "12.5ms", "ok"}},
		{[]string{"trace", strings.ToUpper(traceID)}, "/api/v1/traces/" + traceID, nil, nil,
			[]string{"2 spans, 1 with errors", "services api, db", "POST /pay", "+0ms", "\n  SELECT orders", "+1.5ms", "3ms", "error: deadlock"}},
		{[]string{"red", "--release", "1.8.0", "--group-by", "release", "--step", "5m", "--raw"},
			"/api/v1/red", red, telquery.REDQuery{Filter: telquery.Filter{Release: "1.8.0", Since: now.Add(-time.Hour)}, GroupBy: "release", Step: 5 * time.Minute, Raw: true},
			[]string{"TIME", "GROUP", "REQUESTS", "ERROR%", "P99", "1.8.0", "120", "5.00%", "2.00/s", "10ms", "40ms", "90ms", "total"}},
		{[]string{"compare", "--deployment", "acme-prod", "--window", "30m"},
			"/api/v1/releases/compare", cmp, telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod"}, Window: 30 * time.Minute},
			[]string{"current", "previous", "1.8.0", "1.7.2", "error rate +5.00 points, p95 +20ms (x2.00)"}},
		{[]string{"metrics", "queue.depth", "--service", "api", "--group-by", "deployment", "--step", "2m", "--agg", "max"},
			"/api/v1/metrics/series", metric, telquery.MetricQuery{Filter: telquery.Filter{Service: "api", Since: now.Add(-time.Hour)},
				Name: "queue.depth", GroupBy: "deployment", Step: 2 * time.Minute, Agg: "max"},
			[]string{"queue.depth (gauge, unit 1): max per 2m0s", "VALUE", "acme-prod", "7"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			m := &standIn{}
			out, _, err := run(t, m, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			reqs := m.requests()
			if len(reqs) != 1 || reqs[0].Path != tc.path {
				t.Fatalf("requests %v, want one to %s", reqs, tc.path)
			}
			if tc.parse != nil {
				got, err := tc.parse(reqs[0].Query())
				if err != nil {
					t.Fatalf("the manager cannot read %s: %v", reqs[0].RawQuery, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("the manager reads\n%#v\nwant\n%#v", got, tc.want)
				}
			}
			for _, s := range tc.out {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestTelemetryJSONOutput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		path string
		into any
	}{
		{[]string{"logs"}, "/api/v1/logs", &telquery.LogPage{}},
		{[]string{"traces"}, "/api/v1/spans", &telquery.SpanPage{}},
		{[]string{"trace", traceID}, "/api/v1/traces/" + traceID, &telquery.Trace{}},
		{[]string{"red"}, "/api/v1/red", &telquery.RED{}},
		{[]string{"compare"}, "/api/v1/releases/compare", &telquery.Comparison{}},
		{[]string{"metrics", "m"}, "/api/v1/metrics/series", &telquery.Metric{}},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			out, _, err := run(t, &standIn{}, append(tc.args, "-o", "json")...)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out.Bytes(), tc.into); err != nil {
				t.Fatalf("output is not one JSON value: %v\n%s", err, out)
			}
			want, _ := json.Marshal(answers()[tc.path])
			got, _ := json.Marshal(tc.into)
			if !bytes.Equal(got, want) {
				t.Fatalf("printed %s\nwant %s", got, want)
			}
		})
	}
}

func TestLogsPagingHint(t *testing.T) {
	out, errOut, err := run(t, &standIn{}, "logs", "--deployment", "acme-prod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "--cursor page2") || strings.Contains(out.String(), "page2") {
		t.Fatalf("the hint belongs on stderr only; stdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

func TestTelemetryFlagErrorsSendNothing(t *testing.T) {
	for _, args := range [][]string{
		{"logs", "--severity", "loud"},
		{"logs", "--attr", "novalue"},
		{"logs", "--since", "yesterday"},
		{"logs", "--limit", "-3"},
		{"logs", "--since", "1h", "--until", "2h"},
		{"traces", "--min-duration", "slow"},
		{"trace", "not-a-trace-id"},
		{"red", "--group-by", "colour"},
		{"red", "--step", "often"},
		{"compare", "--window", "1 hour"},
		{"metrics", "m", "--agg", "median"},
		{"logs", "-f", "--cursor", "c1"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			m := &standIn{}
			_, _, err := run(t, m, args...)
			if err == nil {
				t.Fatal("accepted")
			}
			if n := len(m.requests()); n != 0 {
				t.Fatalf("sent %d requests with bad flags", n)
			}
			// Values the parsers refuse say so the way the API does.
			if args[1] != "-f" && !errors.Is(err, telquery.ErrInvalid) {
				t.Fatalf("error %v does not wrap telquery.ErrInvalid", err)
			}
		})
	}
}

func TestLogsFollow(t *testing.T) {
	for _, output := range []string{"table", "json"} {
		t.Run(output, func(t *testing.T) {
			m := &standIn{tail: []telquery.Log{logRecord("third: recovered", now)}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			root, _, _ := command(t, m, "logs", "--deployment", "acme-prod", "-f", "-o", output)
			// The test reads what the command prints while it runs.
			pr, pw := io.Pipe()
			root.SetOut(pw)
			done := make(chan error, 1)
			go func() {
				err := root.ExecuteContext(ctx)
				pw.Close()
				done <- err
			}()
			var text string
			lines := bufio.NewScanner(pr)
			for !strings.Contains(text, "third") && lines.Scan() {
				text += lines.Text() + "\n"
			}
			if !strings.Contains(text, "third") {
				t.Fatalf("follow ended before the tailed record: %v\n%s", <-done, text)
			}
			// Ctrl-C: the command ends without an error.
			cancel()
			go io.Copy(io.Discard, pr)
			if err := <-done; err != nil {
				t.Fatalf("follow ended with %v", err)
			}
			first, second, third := strings.Index(text, "first"), strings.Index(text, "second"), strings.Index(text, "third")
			if first < 0 || !(first < second && second < third) {
				t.Fatalf("want the page oldest first, then the tail:\n%s", text)
			}
			if output == "json" {
				for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
					var l telquery.Log
					if err := json.Unmarshal([]byte(line), &l); err != nil || l.Context.Deployment != "acme-prod" {
						t.Fatalf("line %q is not one log record: %v", line, err)
					}
				}
			} else if strings.Count(text, "TIME") != 1 {
				t.Fatalf("want one header:\n%s", text)
			}
			reqs := m.requests()
			if len(reqs) != 2 || reqs[1].Path != "/api/v1/logs/tail" || reqs[1].Query().Get("deployment") != "acme-prod" {
				t.Fatalf("requests %v, want the page then the tail of acme-prod", reqs)
			}
		})
	}
}
