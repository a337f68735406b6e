package telstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store/duckfile"
)

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

// TestRollupsWrittenAtCloseSurviveAReopen: rollups accumulated but not yet
// written when the store closes are written by Close.
func TestRollupsWrittenAtCloseSurviveAReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Settings{RollupEvery: time.Hour})
	sendReleases(t, s)
	s.Close()
	s = open(t, dir, Settings{})
	red, err := s.RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: t0, Until: t0.Add(10 * time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := red.Series[0].Total; got.Requests != 1500 || got.Errors != 60 {
		t.Fatalf("after a reopen: %d requests, %d errors; want 1500, 60", got.Requests, got.Errors)
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

func TestRetentionBySizeKeepsTheNewest(t *testing.T) {
	const limit = 3 << 20
	clk := clock.NewFake(t0)
	s := open(t, t.TempDir(), Settings{Clock: clk, MaxBytes: limit, RetainEvery: time.Hour})
	var used []int64
	for b := 0; b < 40; b++ {
		at := t0.Add(time.Duration(b) * time.Minute)
		specs := make([]logSpec, 5000)
		for i := range specs {
			specs[i] = logSpec{At: at.Add(time.Duration(i) * time.Millisecond), Severity: plog.SeverityNumberInfo,
				Body: fmt.Sprintf("batch %d record %d %x", b, i, uint64(i)*0x9e3779b97f4a7c15)}
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

func TestSizeRetentionIgnoresOutlierTimestamps(t *testing.T) {
	const limit = 2 << 20
	s := open(t, t.TempDir(), Settings{Clock: clock.NewFake(t0.Add(time.Hour)), MaxBytes: limit, RetainEvery: time.Hour})
	consume(t, s, logBatch(t, acmeOld, logSpec{At: t0.AddDate(5, 0, 0), Severity: plog.SeverityNumberInfo, Body: "from the future"}),
		spanBatch(t, acmeOld, spanSpec{Trace: 1, ID: 1, Name: "epoch", At: time.Unix(0, 0), Dur: time.Millisecond}))
	for b := 0; b < 20; b++ {
		specs := make([]logSpec, 5000)
		for i := range specs {
			specs[i] = logSpec{At: t0.Add(time.Duration(b)*time.Minute + time.Duration(i)*time.Millisecond), Severity: plog.SeverityNumberInfo,
				Body: fmt.Sprintf("batch %d record %d %x", b, i, uint64(i)*0x9e3779b97f4a7c15)}
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
		logBatch(t, acmeOld, logSpec{At: t0, Severity: plog.SeverityNumberInfo, Body: "old release"}),
		logBatch(t, acmeNew, logSpec{At: clk.Now().Add(-time.Minute), Severity: plog.SeverityNumberInfo, Body: "new release"}))
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
	consume(t, s, logBatch(t, acmeOld, logSpec{At: clk.Now(), Severity: plog.SeverityNumberWarn, Body: "rolled back"}))
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
	consume(t, s, logBatch(t, dep{ID: "umbrella-dr", Customer: "umbrella", Release: "1.0.0", Service: "checkout"},
		logSpec{At: t0.Add(5 * time.Minute), Severity: plog.SeverityNumberInfo, Body: "after upgrade"}))
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
