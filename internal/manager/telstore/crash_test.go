package telstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/store/duckfile"
	"github.com/periscope-dev/periscope/internal/testenv/crashtest"
)

// TestKilledStoreChild is the process TestKilledStoreOpensWithEveryAcknowledgedBatch
// kills: it opens (and so migrates) the store in its directory, then stores log
// batches, reporting each acknowledged one.
func TestKilledStoreChild(t *testing.T) {
	dir, ok := crashtest.Child()
	if !ok {
		t.Skip("runs only as the child of a crash test")
	}
	ctx := context.Background()
	crashtest.Report("opening")
	s, err := Open(ctx, dir, Settings{})
	if err != nil {
		crashtest.Fail(err)
	}
	crashtest.Report("opened")
	for i := range 5000 {
		body := fmt.Sprintf("batch-%d", i)
		b := logBatch(t, acmeNew, logSpec{At: time.Now(), Severity: plog.SeverityNumberInfo, Body: body})
		if err := s.Consume(ctx, b); err != nil {
			crashtest.Fail(err)
		}
		crashtest.Report("ack", body)
	}
	crashtest.Hold()
}

// TestKilledStoreOpensWithEveryAcknowledgedBatch kills a process at stepped
// points of its first start on a new file and of an upgrade from every earlier
// schema version, through the migration, its checkpoint and the first batches,
// and checks each time that the store opens at the latest version with the
// earlier records and every batch the process acknowledged.
func TestKilledStoreOpensWithEveryAcknowledgedBatch(t *testing.T) {
	kills := crashtest.Kills(t, 7)
	for from := range len(migrations) - 1 {
		t.Run(fmt.Sprintf("from version %d", from), func(t *testing.T) {
			pristine := t.TempDir()
			if from > 0 {
				buildVersion(t, pristine, from)
			}
			crashtest.Sweep(t, "TestKilledStoreChild", pristine, kills, func(dir string, lines []string, what string) {
				checkAfterKill(t, dir, from, lines, what)
			})
		})
	}
}

func checkAfterKill(t *testing.T, dir string, from int, lines []string, what string) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, dir, Settings{})
	if err != nil {
		t.Fatalf("%s: reopen: %v", what, err)
	}
	defer s.Close()
	var version int
	if err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version); err != nil || version != len(migrations)-1 {
		t.Fatalf("%s: schema version %d (%v), want %d", what, version, err, len(migrations)-1)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT body FROM logs`)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		have["ack "+b] = true
	}
	rows.Close()
	if from > 0 && !have["ack paid"] {
		t.Fatalf("%s: the records of schema version %d are gone", what, from)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "failed") {
			t.Fatalf("%s: the child failed: %s", what, l)
		}
		if strings.HasPrefix(l, "ack ") && !have[l] {
			t.Fatalf("%s: acknowledged %q is gone", what, l)
		}
	}
}

// buildVersion makes dir's store a file at schema version v, as a release that
// stopped there left it, with one log record.
func buildVersion(t *testing.T, dir string, v int) {
	t.Helper()
	ctx := context.Background()
	db, _, err := duckfile.Open(ctx, dir, FileName)
	if err != nil {
		t.Fatal(err)
	}
	qs := []string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`, fmt.Sprintf(`INSERT INTO schema_version VALUES (%d)`, v)}
	qs = append(qs, migrations[1:v+1]...)
	switch v {
	case 1:
		qs = append(qs, `INSERT INTO logs VALUES (1, TIMESTAMP '2026-11-24 10:00:00', 'acme-prod', 'acme', 'aws', 'eu-west-1', '1.0.0', 'shop',
			'checkout', 'pay', 'app', 'pod-1', 9, 'INFO', 'paid', NULL, NULL, NULL, NULL, NULL)`)
	case 2:
		qs = append(qs, `INSERT INTO resources VALUES (1, 'acme-prod', 'acme', 'aws', 'eu-west-1', '1.0.0', 'shop', 'checkout', 'app', 'pod-1', NULL)`,
			`INSERT INTO log_rows VALUES (1, TIMESTAMP '2026-11-24 10:00:00', 1, 'pay', 9, 'INFO', 'paid', NULL, NULL, NULL, NULL)`,
			`INSERT INTO span_rows VALUES (1, TIMESTAMP '2026-11-24 10:00:00', 1000000, 1, 2, 3, NULL, 'POST /pay', 2, 0, NULL, true, 1, 'pay', NULL)`)
	case 3:
		// Version 3 adds a histogram point, which has no buckets before version 4.
		qs = append(qs, `INSERT INTO resources VALUES (1, 'acme-prod', 'acme', 'aws', 'eu-west-1', '1.0.0', 'shop', 'checkout', 'app', 'pod-1', NULL)`,
			`INSERT INTO log_rows VALUES (1, TIMESTAMP '2026-11-24 10:00:00', 1, 'pay', 9, 'INFO', 'paid', NULL, NULL, NULL, NULL)`,
			`INSERT INTO span_rows VALUES (1, TIMESTAMP '2026-11-24 10:00:00', 1000000, 1, 2, 3, NULL, 'POST /pay', 2, 0, NULL, true, 1, 'pay', NULL, NULL)`,
			`INSERT INTO metric_point_rows VALUES (1, TIMESTAMP '2026-11-24 10:00:00', 'http.server.request.duration', 'histogram', 's', 2,
				0.02, 50, 1.0, 1, '', '{"http.route":"/pay","periscope.ingress.name":"shop"}')`)
	default:
		t.Fatalf("no records for schema version %d: add them here", v)
	}
	for _, q := range qs {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("build schema version %d: %s: %v", v, q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
