package auditlog_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/auditlog"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

const day = 24 * time.Hour

// A year's retention removes what is older than a year on the fake clock's
// today, and, a few days later, what has aged past it since.
func TestSweepRemovesWhatIsPastRetention(t *testing.T) {
	ctx := context.Background()
	st, err := duckdb.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	clk := clock.NewFake(now)
	var entries []store.AuditEntry
	for _, age := range []time.Duration{400 * day, 366 * day, 364 * day, time.Hour} {
		entries = append(entries, store.AuditEntry{At: now.Add(-age), Actor: "ops", Action: store.ActionTokenCreate, Reason: age.String()})
	}
	if err := st.AppendAudit(ctx, entries); err != nil {
		t.Fatal(err)
	}
	sw, err := auditlog.New(st, auditlog.Settings{Retention: 365 * day, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	left := func() []string {
		got, _, err := st.ListAudit(ctx, store.AuditFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range got {
			out = append(out, e.Reason)
		}
		return out
	}
	if n, err := sw.Sweep(ctx); err != nil || n != 2 {
		t.Fatalf("first sweep removed %d, %v; want the 2 entries older than a year", n, err)
	}
	if got := left(); len(got) != 2 || got[0] != time.Hour.String() || got[1] != (364*day).String() {
		t.Errorf("after the first sweep %v remain, want the entries 1h and 364 days old", got)
	}
	clk.Advance(2 * day)
	if n, err := sw.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep two days later removed %d, %v; want the entry that turned 366 days old", n, err)
	}
	if got := left(); len(got) != 1 {
		t.Errorf("after the second sweep %v remain, want only the recent entry", got)
	}
	if _, err := auditlog.New(st, auditlog.Settings{}); err == nil {
		t.Error("a sweeper without a retention was accepted")
	}
}

// pruneLog records the cutoffs the sweep asks for.
type pruneLog struct {
	store.Audit
	mu      sync.Mutex
	cutoffs []time.Time
}

func (p *pruneLog) PruneAudit(_ context.Context, before time.Time) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutoffs = append(p.cutoffs, before)
	return 0, nil
}

func (p *pruneLog) seen() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.cutoffs...)
}

// The sweep runs at Start and then every hour, each time with the cutoff the
// injected clock says, and never after Shutdown.
func TestSweepRunsAtStartAndHourlyUntilShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &pruneLog{}
		now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
		clk := clock.NewFake(now)
		sw, err := auditlog.New(p, auditlog.Settings{Retention: 30 * day, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.Shutdown(t.Context()); err != nil {
			t.Fatalf("Shutdown before Start: %v", err)
		}
		if err := sw.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := sw.Start(t.Context()); err == nil {
			t.Error("a second Start succeeded")
		}
		synctest.Wait()
		if got := p.seen(); len(got) != 1 || !got[0].Equal(now.Add(-30*day)) {
			t.Fatalf("at Start the sweep asked for %v, want one cutoff 30 days before the clock", got)
		}
		clk.Advance(2 * time.Hour)
		time.Sleep(2*time.Hour + time.Second) // fake time inside the bubble
		synctest.Wait()
		got := p.seen()
		if len(got) != 3 || !got[2].Equal(now.Add(2*time.Hour-30*day)) {
			t.Errorf("after two hours the sweep asked for %v, want 3 cutoffs, the last 30 days before the clock's now", got)
		}
		if err := sw.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Hour)
		synctest.Wait()
		if n := len(p.seen()); n != 3 {
			t.Errorf("%d sweeps after Shutdown, want none", n-3)
		}
	})
}
