package pgtel

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telstoretest"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// planNode is the part of an EXPLAIN (FORMAT JSON) node the test reads.
type planNode struct {
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Loops    float64    `json:"Actual Loops"`
	Removed  float64    `json:"Rows Removed by Filter"`
	Plans    []planNode `json:"Plans"`
}

// rowsRead is how many rows the plan's scans of table's partitions read
// (returned or filtered out).
func (n planNode) rowsRead(table string) float64 {
	var sum float64
	if strings.HasPrefix(n.Relation, table+"_") {
		sum += (n.Rows + n.Removed) * n.Loops
	}
	for _, c := range n.Plans {
		sum += c.rowsRead(table)
	}
	return sum
}

// explainingReader is a Reader on one connection of s's database that has
// auto_explain send each query's executed plan back as a notice, so a test
// sees the plans of the queries the store itself builds.
func explainingReader(t *testing.T, url string, s *Store) (*telstore.Reader, func() []planNode) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = s.set.Schema
	var mu sync.Mutex
	var plans []planNode
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		_, js, ok := strings.Cut(n.Message, "plan:\n")
		if !ok {
			return
		}
		var p struct{ Plan planNode }
		if err := json.Unmarshal([]byte(js), &p); err != nil {
			t.Errorf("auto_explain plan: %v\n%s", err, js)
			return
		}
		mu.Lock()
		plans = append(plans, p.Plan)
		mu.Unlock()
	}
	db := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;
			SET auto_explain.log_format = json; SET client_min_messages = log`)
		return err
	}))
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	r := telstore.NewReader(db, telstore.Postgres, telstore.ReaderSettings{Clock: s.set.Clock})
	return r, func() []planNode {
		mu.Lock()
		defer mu.Unlock()
		out := plans
		plans = nil
		return out
	}
}

// TestASearchOfOneDeploymentReadsOnlyItsRows: a log page or a raw RED of one
// deployment, in a fleet of 200, reads that deployment's rows and not the
// window's. Without indexes leading with the resource, PostgreSQL walked
// every row of the hour newest first and tested each against the deployment,
// which took seconds with a million rows in the hour (issue 22,
// docs/benchmarks.md).
func TestASearchOfOneDeploymentReadsOnlyItsRows(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	clk := clock.NewFake(t0.Add(time.Hour))
	s := open(t, url, Settings{Clock: clk, RetainEvery: -1})
	const others, perOther, quietRows, quietSpans = 199, 100, 30, 10
	// Every other deployment's records match the searches, so a plan that
	// tests the window's rows one by one has to read them all. Sent at once,
	// so the writers commit them in a few groups rather than 400 commits.
	var batches []consumer.Batch
	for d := range others {
		dep := telstoretest.Dep{ID: fmt.Sprintf("other-%03d", d), Customer: "other", Release: "1.0.0", Service: "api"}
		specs := make([]telstoretest.LogSpec, perOther)
		for i := range specs {
			specs[i] = telstoretest.LogSpec{At: t0.Add(time.Duration(i) * time.Hour / perOther), Severity: plog.SeverityNumberWarn,
				Body: fmt.Sprintf("upstream timeout %d", i)}
		}
		spans := telstoretest.Requests(uint64(1+d*perOther), perOther, 1, t0.Add(time.Duration(d)*time.Hour/others), time.Millisecond, "/pay")
		batches = append(batches, telstoretest.LogBatch(t, dep, specs...), telstoretest.SpanBatch(t, dep, spans...))
	}
	errs := make(chan error, len(batches))
	for _, b := range batches {
		go func() { errs <- s.Consume(context.Background(), b) }()
	}
	for range batches {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	quiet := telstoretest.Dep{ID: "quiet-prod", Customer: "quiet", Release: "1.0.0", Service: "api"}
	specs := make([]telstoretest.LogSpec, quietRows)
	for i := range specs {
		specs[i] = telstoretest.LogSpec{At: t0.Add(time.Duration(i) * time.Minute), Severity: plog.SeverityNumberInfo, Body: fmt.Sprintf("served %d", i)}
	}
	specs[7] = telstoretest.LogSpec{At: t0.Add(7 * time.Minute), Severity: plog.SeverityNumberError, Body: "read Timeout on replica"}
	telstoretest.Consume(t, s, telstoretest.LogBatch(t, quiet, specs...),
		telstoretest.SpanBatch(t, quiet, telstoretest.Requests(1_000_000, quietSpans, 2, t0.Add(30*time.Minute), time.Millisecond, "/pay")...))
	// Autovacuum analyzes a running window's partitions; a test's are too new.
	if _, err := s.pool.Exec(context.Background(), "ANALYZE log_rows, span_rows, resources"); err != nil {
		t.Fatal(err)
	}

	r, plans := explainingReader(t, url, s)
	// read is how many rows of table the queries since the last call read.
	read := func(what, table string) float64 {
		t.Helper()
		ps := plans()
		if len(ps) == 0 {
			t.Fatalf("%s: auto_explain sent no plan", what)
		}
		var n float64
		for _, p := range ps {
			n += p.rowsRead(table)
		}
		return n
	}
	hour := telquery.Filter{Deployment: quiet.ID, Since: t0, Until: t0.Add(time.Hour)}
	for _, q := range []struct {
		name string
		q    telquery.LogQuery
	}{
		{"contains", telquery.LogQuery{Filter: hour, Contains: "timeout"}},
		{"severity", telquery.LogQuery{Filter: hour, MinSeverity: int(plog.SeverityNumberWarn)}},
	} {
		page, err := r.Logs(context.Background(), q.q)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		if len(page.Logs) != 1 || page.Logs[0].Body != "read Timeout on replica" || page.Logs[0].Context.Deployment != quiet.ID {
			t.Fatalf("%s: got %+v, want the quiet deployment's one timeout", q.name, page.Logs)
		}
		if n := read(q.name, "log_rows"); n > 4*quietRows {
			t.Errorf("%s: the search read %.0f log rows for a deployment with %d, of %d in the hour", q.name, n, quietRows, others*perOther+quietRows)
		}
	}
	red, err := r.RED(context.Background(), telquery.REDQuery{Filter: hour, Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(red.Series) != 1 || red.Series[0].Total.Requests != quietSpans || red.Series[0].Total.Errors != 2 {
		t.Fatalf("raw RED: got %+v, want %d requests and 2 errors", red.Series, quietSpans)
	}
	// Two queries (the steps, the totals), each reading the deployment's spans.
	if n := read("raw RED", "span_rows"); n > 2*4*quietSpans {
		t.Errorf("raw RED read %.0f spans for a deployment with %d, of %d in the hour", n, quietSpans, others*perOther+quietSpans)
	}
}
