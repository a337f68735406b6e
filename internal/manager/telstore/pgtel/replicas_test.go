package pgtel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telstoretest"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/testenv"
)

var t0 = telstoretest.T0

// streamed is a batch of n log records from queue stream, numbered first…first+n-1.
func streamed(t *testing.T, stream string, first uint64, n int) consumer.Batch {
	specs := make([]telstoretest.LogSpec, n)
	for i := range specs {
		specs[i] = telstoretest.LogSpec{At: t0, Severity: plog.SeverityNumberInfo, Body: fmt.Sprintf("%s #%d", stream, first+uint64(i))}
	}
	b := telstoretest.LogBatch(t, telstoretest.AcmeOld, specs...)
	b.Stream, b.First, b.Last = stream, first, first+uint64(n)-1
	return b
}

func countLogs(t *testing.T, s *Store) map[string]int {
	t.Helper()
	page, err := s.Logs(context.Background(), telquery.LogQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range page.Logs {
		out[l.Body]++
	}
	return out
}

// TestAResendToAnotherReplicaIsStoredOnce: an agent that resends a batch to
// another replica after a failover, whole or overlapping what was stored,
// stores nothing twice.
func TestAResendToAnotherReplicaIsStoredOnce(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	clk := clock.NewFake(t0.Add(time.Hour))
	a, b := open(t, url, Settings{Clock: clk}), open(t, url, Settings{Clock: clk})
	ctx := context.Background()
	if err := a.Consume(ctx, streamed(t, "acme-prod/logs/1", 1, 3)); err != nil {
		t.Fatal(err)
	}
	// The same batch again, on the other replica: acknowledged, not stored.
	if err := b.Consume(ctx, streamed(t, "acme-prod/logs/1", 1, 3)); err != nil {
		t.Fatalf("a whole resend: %v, want nil", err)
	}
	// Overlapping: the agent is told to resend from 4 on.
	err := b.Consume(ctx, streamed(t, "acme-prod/logs/1", 2, 4))
	var ce *consumer.Error
	if !errors.As(err, &ce) || ce.Kind != consumer.KindAlreadyDelivered || ce.Delivered != 3 {
		t.Fatalf("an overlapping resend: %v, want already delivered up to 3", err)
	}
	if err := b.Consume(ctx, streamed(t, "acme-prod/logs/1", 4, 2)); err != nil {
		t.Fatal(err)
	}
	// Another queue, and a batch without identity, are their own.
	if err := a.Consume(ctx, streamed(t, "acme-prod/logs/2", 1, 1)); err != nil {
		t.Fatal(err)
	}
	anon := streamed(t, "", 1, 1)
	anon.First, anon.Last = 0, 0
	for range 2 {
		if err := b.Consume(ctx, anon); err != nil {
			t.Fatal(err)
		}
	}
	got := countLogs(t, a)
	for i := 1; i <= 5; i++ {
		if n := got[fmt.Sprintf("acme-prod/logs/1 #%d", i)]; n != 1 {
			t.Errorf("record %d of queue 1 stored %d times, want once", i, n)
		}
	}
	if got["acme-prod/logs/2 #1"] != 1 || got[" #1"] != 2 || len(got) != 7 {
		t.Errorf("stored %v; want queue 2's record once and the batch without id twice", got)
	}
}

// TestReplicasRacingTheSameBatchesStoreEachOnce: two replicas take the same
// batches at once (an agent failing over mid-send); every record and every
// request in the rollups counts once.
func TestReplicasRacingTheSameBatchesStoreEachOnce(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	clk := clock.NewFake(t0.Add(time.Hour))
	replicas := []*Store{open(t, url, Settings{Clock: clk}), open(t, url, Settings{Clock: clk})}
	const batches, per = 40, 5
	var wg sync.WaitGroup
	for _, s := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range batches {
				b := telstoretest.SpanBatch(t, telstoretest.AcmeOld, telstoretest.Requests(uint64(i*per+1), per, 1, t0, time.Millisecond, "/pay")...)
				b.Stream, b.First, b.Last = "acme-prod/traces/1", uint64(i*per+1), uint64(i*per+per)
				if err := s.Consume(context.Background(), b); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	red, err := replicas[1].RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: t0, Until: t0.Add(time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := replicas[0].RED(context.Background(), telquery.REDQuery{Filter: telquery.Filter{Since: t0, Until: t0.Add(time.Minute)}, Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	for what, r := range map[string]telquery.RED{"rollups": red, "raw spans": raw} {
		if len(r.Series) != 1 || r.Series[0].Total.Requests != batches*per || r.Series[0].Total.Errors != batches {
			t.Errorf("%s: %+v; want %d requests and %d errors, each once", what, r.Series, batches*per, batches)
		}
	}
}

// TestReplicasStartTogether: several replicas opening an empty database at
// once each find it migrated once.
func TestReplicasStartTogether(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), url, Settings{})
			if err == nil {
				err = s.Consume(context.Background(), telstoretest.LogBatch(t, telstoretest.AcmeOld,
					telstoretest.LogSpec{At: time.Now(), Severity: plog.SeverityNumberInfo, Body: "hello"}))
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

// TestRetentionDropsWholePartitions: partitions wholly older than MaxAge go,
// and over MaxBytes the oldest go, never the current one.
func TestRetentionDropsWholePartitions(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	clk := clock.NewFake(t0)
	s := open(t, url, Settings{Clock: clk, PartitionWidth: time.Hour, MaxAge: 3 * time.Hour})
	ctx := context.Background()
	for h := range 3 {
		clk.Set(t0.Add(time.Duration(h) * time.Hour))
		telstoretest.Consume(t, s, telstoretest.LogBatch(t, telstoretest.AcmeOld,
			telstoretest.LogSpec{At: clk.Now(), Severity: plog.SeverityNumberInfo, Body: fmt.Sprintf("hour %d", h)}))
	}
	exists := func(h int) bool {
		var ok bool
		if err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, partName("log_rows", t0.Add(time.Duration(h)*time.Hour))).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !exists(0) || !exists(2) || !exists(3) {
		t.Fatal("the writer did not create the hours' partitions and the next one")
	}
	// Hour 0 ends 4h before now: older than MaxAge as a whole.
	clk.Set(t0.Add(4*time.Hour + 30*time.Minute))
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(0) || !exists(1) {
		t.Fatal("retention by age: want hour 0's partition dropped and hour 1's kept")
	}
	if got := countLogs(t, s); len(got) != 1 || got["hour 2"] != 1 {
		t.Fatalf("after retention by age: %v; want hour 2 only (hour 1 is older than 3h)", got)
	}
	// Over a size no table fits: everything but the current partition goes.
	s.set.MaxBytes = 1
	telstoretest.Consume(t, s, telstoretest.LogBatch(t, telstoretest.AcmeOld,
		telstoretest.LogSpec{At: clk.Now(), Severity: plog.SeverityNumberInfo, Body: "hour 4"}))
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(1) || exists(2) || !exists(4) {
		t.Fatal("retention by size: want every partition before the current one dropped")
	}
	if got := countLogs(t, s); len(got) != 1 || got["hour 4"] != 1 {
		t.Fatalf("after retention by size: %v; want hour 4 only", got)
	}
}

// TestRecordsStampedAheadMoveIntoTheirPartition: a record from days ahead
// waits in the default partition, and moves into its own partition once the
// writer creates it, found by queries throughout.
func TestRecordsStampedAheadMoveIntoTheirPartition(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	clk := clock.NewFake(t0)
	s := open(t, url, Settings{Clock: clk})
	ctx := context.Background()
	ahead := t0.Add(72 * time.Hour)
	telstoretest.Consume(t, s, telstoretest.LogBatch(t, telstoretest.AcmeOld,
		telstoretest.LogSpec{At: ahead, Severity: plog.SeverityNumberInfo, Body: "from the future"}))
	inDefault := func() int {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM log_rows_default`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := inDefault(); n != 1 {
		t.Fatalf("%d records in the default partition, want the one from 3 days ahead", n)
	}
	clk.Set(ahead)
	telstoretest.Consume(t, s, telstoretest.LogBatch(t, telstoretest.AcmeOld,
		telstoretest.LogSpec{At: ahead, Severity: plog.SeverityNumberInfo, Body: "now"}))
	if n := inDefault(); n != 0 {
		t.Fatalf("%d records left in the default partition once theirs exists, want 0", n)
	}
	if got := countLogs(t, s); got["from the future"] != 1 || got["now"] != 1 {
		t.Fatalf("records %v", got)
	}
}

// TestBatchesThatCanNeverBeStoredAreRefusedForGood: an undecodable batch is
// unstorable; text PostgreSQL cannot hold (a NUL byte) is kept with U+FFFD.
func TestBatchesThatCanNeverBeStoredAreRefusedForGood(t *testing.T) {
	s := open(t, testenv.PostgresDatabase(t), Settings{Clock: clock.NewFake(t0.Add(time.Hour))})
	ctx := context.Background()
	err := s.Consume(ctx, consumer.Batch{Signal: otlp.Logs, DeploymentID: "acme-prod", Received: t0, Data: []byte{0xff, 0xff, 0xff}})
	if consumer.KindOf(err) != consumer.KindUnstorable {
		t.Fatalf("an undecodable batch: %v, want unstorable", err)
	}
	nul := telstoretest.LogBatch(t, telstoretest.Dep{ID: "acme-prod", Customer: "ac\x00me", Release: "1.0.0", Service: "checkout"},
		telstoretest.LogSpec{At: t0, Severity: plog.SeverityNumberInfo, Body: "a\x00b", Attrs: map[string]string{"k": "v\x00"}})
	if err := s.Consume(ctx, nul); err != nil {
		t.Fatalf("a batch with NUL bytes: %v", err)
	}
	page, err := s.Logs(ctx, telquery.LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Logs) != 1 || page.Logs[0].Body != "a\uFFFDb" || page.Logs[0].Context.Customer != "ac\uFFFDme" {
		t.Fatalf("stored %+v", page.Logs)
	}
	// Attribute filters read the JSON, which must not hold an escaped NUL either.
	page, err = s.Logs(ctx, telquery.LogQuery{Attrs: map[string]string{"k": "v\uFFFD"}})
	if err != nil || len(page.Logs) != 1 {
		t.Fatalf("filtered on the attribute that held a NUL: %+v, %v", page.Logs, err)
	}
}

// TestAFailureMidWriteLeavesNothingOfTheBatch: a write that fails after its
// rows and rollups went in (here the last step, advancing the mark, fails as
// a replica dying there would leave it) stores nothing, so the agent's resend
// counts once in the rows and in the rollups.
func TestAFailureMidWriteLeavesNothingOfTheBatch(t *testing.T) {
	s := open(t, testenv.PostgresDatabase(t), Settings{Clock: clock.NewFake(t0.Add(time.Hour))})
	ctx := context.Background()
	for _, q := range []string{
		`CREATE FUNCTION die() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'replica died'; END $$ LANGUAGE plpgsql`,
		`CREATE TRIGGER die BEFORE UPDATE ON stream_marks FOR EACH ROW EXECUTE FUNCTION die()`,
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	b := telstoretest.SpanBatch(t, telstoretest.AcmeOld, telstoretest.Requests(1, 10, 2, t0, time.Millisecond, "/pay")...)
	b.Stream, b.First, b.Last = "acme-prod/traces/1", 1, 10
	if err := s.Consume(ctx, b); consumer.KindOf(err) != consumer.KindUnavailable {
		t.Fatalf("a write that failed at its end: %v, want a retryable error", err)
	}
	if _, err := s.pool.Exec(ctx, `DROP TRIGGER die ON stream_marks`); err != nil {
		t.Fatal(err)
	}
	if err := s.Consume(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.Consume(ctx, b); err != nil {
		t.Fatalf("a second resend: %v", err)
	}
	red, err := s.RED(ctx, telquery.REDQuery{Filter: telquery.Filter{Since: t0, Until: t0.Add(time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.Spans(ctx, telquery.SpanQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(red.Series) != 1 || red.Series[0].Total.Requests != 10 || red.Series[0].Total.Errors != 2 || len(page.Spans) != 10 {
		t.Fatalf("rollups %+v and %d spans; want 10 requests, 2 errors and 10 spans", red.Series, len(page.Spans))
	}
}
