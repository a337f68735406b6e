package telstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// A record whose strings hold invalid UTF-8 (applications log file names and user
// input as they come) is stored with U+FFFD in their place, and counted, instead of
// failing the batch on every retry and holding up the deployment's telemetry.
func TestInvalidUTF8IsStoredWithReplacementCharacters(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := open(t, t.TempDir(), Settings{Registerer: reg})
	d := dep{ID: "acme-prod", Customer: "acme", Release: "1.0.0", Service: "check\xffout"}
	logs := logBatch(t, d, logSpec{At: t0, Body: "upload /tmp/r\xe9sum\xe9.pdf failed",
		Attrs: map[string]string{"file\xff": "r\xe9sum\xe9.pdf"}})
	spans := spanBatch(t, d, spanSpec{Trace: 1, ID: 1, Name: "GET /files/\xff", Kind: 2, At: t0, Dur: time.Millisecond})
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	tagResource(rm.Resource(), d)
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("uploads\xff")
	p := m.SetEmptyGauge().DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(t0))
	p.SetIntValue(3)
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	metrics := consumer.Batch{Signal: otlp.Metrics, DeploymentID: d.ID, Received: t0, Records: 1, Data: data}
	consume(t, s, logs, spans, metrics)

	var body, service, attrs string
	if err := s.db.QueryRow("SELECT body, service, attrs FROM logs").Scan(&body, &service, &attrs); err != nil {
		t.Fatal(err)
	}
	if body != "upload /tmp/r\uFFFDsum\uFFFD.pdf failed" || service != "check\uFFFDout" || attrs != "{\"file\uFFFD\":\"r\uFFFDsum\uFFFD.pdf\"}" {
		t.Errorf("stored body %q, service %q, attrs %q", body, service, attrs)
	}
	var name string
	if err := s.db.QueryRow("SELECT name FROM spans").Scan(&name); err != nil || name != "GET /files/\uFFFD" {
		t.Errorf("span name %q (%v)", name, err)
	}
	if err := s.db.QueryRow("SELECT name FROM metric_points").Scan(&name); err != nil || name != "uploads\uFFFD" {
		t.Errorf("metric name %q (%v)", name, err)
	}
	// service.name three times (one resource per batch), body, attribute key and
	// value, span name (its function too, counted once) and metric name.
	if got := testutil.ToFloat64(s.m.fixedStrings); got != 8 {
		t.Errorf("fixed strings %v, want 8", got)
	}
	for _, table := range tableNames {
		if got := testutil.ToFloat64(s.m.fixedRows.WithLabelValues(table)); got != 1 {
			t.Errorf("fixed %s rows %v, want 1", table, got)
		}
	}
}

// A batch the database refuses for good (here a string the Appender turns into
// NULL, as it did invalid UTF-8) is refused as unstorable, and the batches committed
// in the same group with it are stored all the same.
func TestAnUnstorableBatchIsRefusedAloneAndForGood(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	good := logBatch(t, acmeOld, logSpec{At: t0, Body: "fine"})
	later := logBatch(t, acmeOld, logSpec{At: t0.Add(time.Second), Body: "also fine"})
	var ps []*pending
	for i, b := range []consumer.Batch{good, logBatch(t, acmeOld, logSpec{At: t0, Body: "poison"}), later} {
		r, err := convert(b)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			r.logs[0].body = "\xff" // what convert no longer lets through
		}
		ps = append(ps, &pending{rows: r, done: make(chan error, 1)})
	}
	conn, err := s.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s.w.commit(context.Background(), conn, ps)
	for i, p := range ps {
		err := <-p.done
		if want := i == 1; (consumer.KindOf(err) == consumer.KindUnstorable) != want || (err != nil) != want {
			t.Errorf("batch %d: %v (kind %v), want unstorable: %v", i, err, consumer.KindOf(err), want)
		}
	}
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM logs WHERE body IN ('fine', 'also fine')").Scan(&n); err != nil || n != 2 {
		t.Errorf("%d good rows stored (%v), want 2", n, err)
	}
	if got := testutil.ToFloat64(s.m.Unstorable); got != 1 {
		t.Errorf("unstorable batches %v, want 1", got)
	}
}

// Only failures that recur identically are unstorable: a closed connection or a
// cancelled context are retried.
func TestUnstorableTellsLastingFailuresFromPassingOnes(t *testing.T) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (s VARCHAR NOT NULL, n INTEGER CHECK (n > 0))"); err != nil {
		t.Fatal(err)
	}
	_, notNull := db.Exec("INSERT INTO t VALUES (NULL, 1)")
	_, check := db.Exec("INSERT INTO t VALUES ('a', 0)")
	_, conversion := db.Exec("INSERT INTO t VALUES ('a', 'x')")
	closed, _ := db.Conn(context.Background())
	closed.Close()
	_, connDone := closed.ExecContext(context.Background(), "SELECT 1")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"not null", notNull, true},
		{"check", check, true},
		{"conversion", conversion, true},
		{"appender flush", &duckdb.Error{Msg: "Failed to append: NOT NULL constraint failed: log_rows.body"}, true},
		{"driver value", errors.Join(errBadValue, errors.New("cannot cast")), true},
		{"out of memory", &duckdb.Error{Type: duckdb.ErrorTypeOutOfMemory, Msg: "Out of Memory Error: failed to allocate"}, false},
		{"io", &duckdb.Error{Type: duckdb.ErrorTypeIO, Msg: "IO Error: No space left on device"}, false},
		{"closed connection", connDone, false},
		{"closed store", ErrClosed, false},
		{"cancelled", context.Canceled, false},
	} {
		if tc.err == nil {
			t.Fatalf("%s: no error to classify", tc.name)
		}
		if got := unstorable(tc.err); got != tc.want {
			t.Errorf("%s: unstorable(%v) = %v, want %v", tc.name, strings.TrimSpace(tc.err.Error()), got, tc.want)
		}
	}
}

// Whatever bytes a batch holds, conversion either fails (refused as unstorable) or
// yields rows whose every string is valid UTF-8 and whose attributes are JSON, so
// the Appender never meets a value it would refuse on every retry.
func FuzzConvert(f *testing.F) {
	d := dep{ID: "acme-prod", Customer: "acme", Release: "1.0.0", Service: "check\xffout", Function: "f\xc3"}
	f.Add(uint8(otlp.Logs), logBatch(f, d, logSpec{At: t0, Body: "r\xe9sum\xe9", Attrs: map[string]string{"k\xff": "v\xfe"}}).Data)
	f.Add(uint8(otlp.Traces), spanBatch(f, d, spanSpec{Trace: 1, ID: 2, Name: "GET \xff", Kind: 2, At: t0, Route: "/r\xff"}).Data)
	f.Add(uint8(otlp.Metrics), []byte{0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff})
	f.Add(uint8(otlp.Logs), []byte{})
	f.Add(uint8(otlp.Metrics), durationRound(f, t0, buckets15(1, 90, 6, 10), "http.route", "periscope.ingress.name").Data)
	f.Fuzz(func(t *testing.T, sig uint8, data []byte) {
		sig = sig%3 + 1
		r, err := convert(consumer.Batch{Signal: otlp.Signal(sig), DeploymentID: "acme-prod", Received: t0, Data: data})
		if err != nil {
			return
		}
		check := func(what, s string) {
			if !utf8.ValidString(s) {
				t.Fatalf("%s %q is not valid UTF-8", what, s)
			}
		}
		checkJSON := func(what, s string) {
			check(what, s)
			if s != "" && !json.Valid([]byte(s)) {
				t.Fatalf("%s %q is not JSON", what, s)
			}
		}
		for _, res := range r.resources {
			for i, v := range res.ctx {
				check(ctxColumns[i], v)
			}
			checkJSON("resource", res.json)
		}
		for _, l := range r.logs {
			check("body", l.body)
			check("severity text", l.severityText)
			check("function", l.function)
			checkJSON("attrs", l.attrs)
		}
		for _, s := range r.spans {
			check("name", s.name)
			check("status message", s.statusMessage)
			check("function", s.function)
			checkJSON("attrs", s.attrs)
		}
		for _, p := range r.points {
			check("name", p.name)
			check("unit", p.unit)
			check("kind", p.kind)
			check("function", p.function)
			checkJSON("attrs", p.attrs)
			// Stored buckets read back as a valid histogram of the point's own.
			if p.buckets != "" {
				if h, ok := parseHistogram(p.buckets); !ok {
					t.Fatalf("buckets %q do not read back: %+v", p.buckets, h)
				}
			}
		}
	})
}
