package telquery_test

import (
	"errors"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

var now = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// full sets every filter field, so a round trip that drops one fails.
var full = telquery.Filter{
	Deployment: "acme-prod", Customer: "acme", Cloud: "aws", Region: "us-east-1", Release: "1.8.0",
	Stack: "analytics", Service: "api", Function: "checkout",
	Since: now.Add(-90 * time.Minute), Until: now.Add(-500 * time.Millisecond),
}

// noTimes is f without its time range: a comparison takes a window instead.
func noTimes(f telquery.Filter) telquery.Filter {
	f.Since, f.Until = time.Time{}, time.Time{}
	return f
}

// TestValuesRoundTrip checks that every query survives Values then Parse, which is
// the path from the API client to the server.
func TestValuesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		q     interface{ Values() url.Values }
		parse func(url.Values) (any, error)
	}{
		{"empty logs", telquery.LogQuery{}, func(v url.Values) (any, error) { return telquery.ParseLogQuery(v, now) }},
		{"logs", telquery.LogQuery{Filter: full, MinSeverity: 17, Contains: "timeout", Attrs: map[string]string{"http.route": "/pay", "user": "a=b"},
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Limit: 50, Cursor: "c1"},
			func(v url.Values) (any, error) { return telquery.ParseLogQuery(v, now) }},
		{"spans", telquery.SpanQuery{Filter: full, Name: "GET /pay", ErrorsOnly: true, MinDuration: 250 * time.Millisecond, RootsOnly: true, Limit: 10, Cursor: "c2"},
			func(v url.Values) (any, error) { return telquery.ParseSpanQuery(v, now) }},
		{"red", telquery.REDQuery{Filter: full, Step: 5 * time.Minute, GroupBy: telquery.ByRelease, Raw: true},
			func(v url.Values) (any, error) { return telquery.ParseREDQuery(v, now) }},
		{"compare", telquery.CompareQuery{Filter: noTimes(full), Window: 30 * time.Minute, Against: "1.7.2"},
			func(v url.Values) (any, error) { return telquery.ParseCompareQuery(v, now) }},
		{"metric", telquery.MetricQuery{Filter: full, Name: "http.server.duration", GroupBy: "http.route", Step: 2 * time.Minute, Agg: telquery.AggMax},
			func(v url.Values) (any, error) { return telquery.ParseMetricQuery(v, now) }},
		{"error rates", telquery.ErrorRateQuery{Deployments: []string{"acme-prod", "globex"}, Since: full.Since, Until: full.Until},
			func(v url.Values) (any, error) { return telquery.ParseErrorRateQuery(v, now) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.q.Values()
			// Through the wire form, as a client sends it.
			v, err := url.ParseQuery(v.Encode())
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.parse(v)
			if err != nil {
				t.Fatalf("parse %s: %v", v.Encode(), err)
			}
			if !reflect.DeepEqual(got, tc.q) {
				t.Fatalf("round trip of %s:\n got %+v\nwant %+v", v.Encode(), got, tc.q)
			}
		})
	}
}

func TestParseRelativeAndNamed(t *testing.T) {
	v := url.Values{"since": {"1h"}, "min_severity": {"error"}, "attr": {"k=v", "x="}, "trace_id": {"4BF92F3577B34DA6A3CE929D0E0E4736"}}
	q, err := telquery.ParseLogQuery(v, now)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Since.Equal(now.Add(-time.Hour)) || !q.Until.IsZero() || q.MinSeverity != 17 ||
		!reflect.DeepEqual(q.Attrs, map[string]string{"k": "v", "x": ""}) || q.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("parsed %+v", q)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    url.Values
		fn   func(url.Values, time.Time) error
	}{
		{"since", url.Values{"since": {"yesterday"}}, logs},
		{"until before since", url.Values{"since": {"1h"}, "until": {"2h"}}, logs},
		{"severity", url.Values{"min_severity": {"loud"}}, logs},
		{"attr without =", url.Values{"attr": {"k"}}, logs},
		{"limit", url.Values{"limit": {"0"}}, logs},
		{"errors", url.Values{"errors": {"maybe"}}, spans},
		{"min_duration", url.Values{"min_duration": {"-5s"}}, spans},
		{"group_by", url.Values{"group_by": {"colour"}}, red},
		{"step", url.Values{"step": {"often"}}, red},
		{"window", url.Values{"window": {"1 hour"}}, compare},
		{"compare since", url.Values{"since": {"1h"}}, compare},
		{"bad trace_id", url.Values{"trace_id": {"xyz"}}, logs},
		{"metric name", url.Values{}, metric},
		{"agg", url.Values{"name": {"m"}, "agg": {"median"}}, metric},
		{"no deployment", url.Values{}, errorRates},
		{"empty deployment", url.Values{"deployment": {""}}, errorRates},
		{"error rates over a day", url.Values{"deployment": {"a"}, "since": {"25h"}}, errorRates},
		{"error rates until before since", url.Values{"deployment": {"a"}, "since": {"1h"}, "until": {"2h"}}, errorRates},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.fn(tc.v, now); !errors.Is(err, telquery.ErrInvalid) {
				t.Fatalf("%s: got %v, want ErrInvalid", tc.v.Encode(), err)
			}
		})
	}
}

func logs(v url.Values, n time.Time) error   { _, err := telquery.ParseLogQuery(v, n); return err }
func spans(v url.Values, n time.Time) error  { _, err := telquery.ParseSpanQuery(v, n); return err }
func red(v url.Values, n time.Time) error    { _, err := telquery.ParseREDQuery(v, n); return err }
func metric(v url.Values, n time.Time) error { _, err := telquery.ParseMetricQuery(v, n); return err }
func errorRates(v url.Values, n time.Time) error {
	_, err := telquery.ParseErrorRateQuery(v, n)
	return err
}
func compare(v url.Values, n time.Time) error {
	_, err := telquery.ParseCompareQuery(v, n)
	return err
}

func TestCheckTraceID(t *testing.T) {
	if id, err := telquery.CheckTraceID("4BF92F3577B34DA6A3CE929D0E0E4736"); err != nil || id != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("got %q, %v", id, err)
	}
	for _, bad := range []string{"", "4bf92f3577b34da6", "4bf92f3577b34da6a3ce929d0e0e473g", "4bf92f3577b34da6a3ce929d0e0e47360"} {
		if _, err := telquery.CheckTraceID(bad); !errors.Is(err, telquery.ErrInvalid) {
			t.Errorf("%q: got %v, want ErrInvalid", bad, err)
		}
	}
}
