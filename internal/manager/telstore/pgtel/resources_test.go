package pgtel

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telstoretest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// storedReleases lists the releases of the stored resources of deployment dep.
func storedReleases(t *testing.T, s *Store, dep string) string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT release FROM resources WHERE deployment = $1 ORDER BY release`, dep)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, ",")
}

// logContexts maps each stored record's body to its release, read through
// the join with its resource, as every query reads it.
func logContexts(t *testing.T, s *Store) map[string]string {
	t.Helper()
	page, err := s.Logs(context.Background(), telquery.LogQuery{Limit: 1000, Filter: telquery.Filter{Since: t0.Add(-time.Hour), Until: t0.Add(48 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range page.Logs {
		out[l.Body] = l.Context.Release
	}
	return out
}

// hourlyReplicas opens two replicas on a fresh database with hourly
// partitions, a 3h window and no retention loop (the tests call Retain).
func hourlyReplicas(t *testing.T) (*clock.Fake, *Store, *Store) {
	url := testenv.PostgresDatabase(t)
	clk := clock.NewFake(t0)
	set := Settings{Clock: clk, PartitionWidth: time.Hour, MaxAge: 3 * time.Hour, RetainEvery: -1}
	return clk, open(t, url, set), open(t, url, set)
}

// TestRetentionPrunesResourcesNoRecordUses: once retention has deleted every
// record of a release, its resource goes too, while a resource a kept record
// uses stays; a replica that still knows the pruned resource's id stores its
// next record under the resource stored again, found by queries.
func TestRetentionPrunesResourcesNoRecordUses(t *testing.T) {
	clk, a, b := hourlyReplicas(t)
	ctx := context.Background()
	log := func(s *Store, d telstoretest.Dep, at time.Time, body string) {
		t.Helper()
		telstoretest.Consume(t, s, telstoretest.LogBatch(t, d, telstoretest.LogSpec{At: at, Severity: plog.SeverityNumberInfo, Body: body}))
	}
	log(a, telstoretest.AcmeOld, t0, "old on a")
	log(b, telstoretest.AcmeOld, t0, "old on b") // b now knows the resource's id too
	log(a, telstoretest.AcmeNew, t0.Add(2*time.Hour), "new")
	if got := storedReleases(t, a, "acme-prod"); got != "1.0.0,1.1.0" {
		t.Fatalf("resources before retention: %q", got)
	}
	// Release 1.0.0's records (hour 0) are older than MaxAge; 1.1.0's are not.
	clk.Set(t0.Add(4*time.Hour + 30*time.Minute))
	if err := a.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storedReleases(t, a, "acme-prod"); got != "1.1.0" {
		t.Fatalf("resources after retention: %q, want 1.1.0 only", got)
	}
	if got := logContexts(t, a); len(got) != 1 || got["new"] != "1.1.0" {
		t.Fatalf("records after retention: %v", got)
	}
	// Both replicas still hold the pruned id in memory.
	log(b, telstoretest.AcmeOld, clk.Now(), "back on b")
	log(a, telstoretest.AcmeOld, clk.Now(), "back on a")
	if got := storedReleases(t, a, "acme-prod"); got != "1.0.0,1.1.0" {
		t.Fatalf("resources after 1.0.0 is back: %q, want one of each", got)
	}
	got := logContexts(t, b)
	if got["back on b"] != "1.0.0" || got["back on a"] != "1.0.0" || got["new"] != "1.1.0" || len(got) != 3 {
		t.Fatalf("records after 1.0.0 is back: %v; want each with its release", got)
	}
}

// TestPruningRacingWritersLosesNothing: retention prunes a resource on one
// replica while another, which knows its id, stores a fresh record of it;
// whichever goes first, the record is stored and found with its context.
func TestPruningRacingWritersLosesNothing(t *testing.T) {
	clk, a, b := hourlyReplicas(t)
	ctx := context.Background()
	for i := range 15 {
		d := telstoretest.AcmeOld
		d.ID = fmt.Sprintf("dep-%02d", i)
		// Round i's resource was last used 4h before "now", so it is prunable
		// when the race starts, and b knows its id. Each round is an hour on,
		// so earlier rounds' records age out as they should.
		now := t0.Add(time.Duration(i+4) * time.Hour)
		clk.Set(now.Add(-4 * time.Hour))
		telstoretest.Consume(t, b, telstoretest.LogBatch(t, d, telstoretest.LogSpec{At: clk.Now(), Severity: plog.SeverityNumberInfo, Body: "stale"}))
		clk.Set(now)
		var wg sync.WaitGroup
		var retainErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			retainErr = a.Retain(ctx)
		}()
		go func() {
			defer wg.Done()
			if err := b.Consume(ctx, telstoretest.LogBatch(t, d, telstoretest.LogSpec{At: now, Severity: plog.SeverityNumberInfo, Body: "fresh"})); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if retainErr != nil {
			t.Fatal(retainErr)
		}
		page, err := a.Logs(ctx, telquery.LogQuery{Limit: 10, Filter: telquery.Filter{Deployment: d.ID, Since: now, Until: now.Add(time.Minute)}})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Logs) != 1 || page.Logs[0].Body != "fresh" || page.Logs[0].Context.Release != d.Release {
			t.Fatalf("round %d: the fresh record of %s found as %+v; want it once, with its context", i, d.ID, page.Logs)
		}
	}
}

// TestAChangedPartitionWidthKeepsWhatTheOldPartitionsHold: after the width
// goes from a day to 6h, retention judges the day-wide partitions by their own
// end (keeping records younger than MaxAge), new partitions are made only
// where no old one lies, and once the old ones age out the new width applies.
func TestAChangedPartitionWidthKeepsWhatTheOldPartitionsHold(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	clk := clock.NewFake(t0) // 10:00
	day := open(t, url, Settings{Clock: clk, PartitionWidth: 24 * time.Hour, MaxAge: 12 * time.Hour, RetainEvery: -1})
	six := open(t, url, Settings{Clock: clk, PartitionWidth: 6 * time.Hour, MaxAge: 12 * time.Hour, RetainEvery: -1})
	ctx := context.Background()
	log := func(s *Store, body string) {
		t.Helper()
		telstoretest.Consume(t, s, telstoretest.LogBatch(t, telstoretest.AcmeOld, telstoretest.LogSpec{At: clk.Now(), Severity: plog.SeverityNumberInfo, Body: body}))
	}
	widths := func() map[string]time.Duration {
		t.Helper()
		parts, err := six.w.partitions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]time.Duration{}
		for _, p := range parts {
			out[p.start.Format("01-02T15")] = p.end.Sub(p.start)
		}
		return out
	}
	log(day, "by the day store")
	log(six, "by the 6h store")
	if got := widths(); len(got) != 2 || got["11-24T00"] != 24*time.Hour || got["11-25T00"] != 24*time.Hour {
		t.Fatalf("partitions after both wrote: %v; want today's and tomorrow's, a day each", got)
	}
	// 20:00: the cut (08:00) is past 6h after today's start, not past its end.
	clk.Set(t0.Add(10 * time.Hour))
	if err := six.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countLogs(t, six); got["by the day store"] != 1 || got["by the 6h store"] != 1 {
		t.Fatalf("records after retention at 20:00: %v; want both (they are 10h old, MaxAge is 12h)", got)
	}
	// Two days on, the day-wide partitions have aged out, and the new width applies.
	clk.Set(t0.Add(51 * time.Hour)) // 11-26 13:00
	if err := six.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	log(six, "later")
	got := widths()
	if got["11-24T00"] != 0 || got["11-25T00"] != 0 || got["11-26T12"] != 6*time.Hour {
		t.Fatalf("partitions two days on: %v; want the day-wide ones gone and 11-26T12 six hours wide", got)
	}
	if logs := countLogs(t, six); len(logs) != 1 || logs["later"] != 1 {
		t.Fatalf("records two days on: %v; want only the new one", logs)
	}
}
