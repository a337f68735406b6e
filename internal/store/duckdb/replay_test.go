package duckdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/periscope-dev/periscope/internal/store/duckfile"
)

// TestMigrationLeftInTheLogOpens commits every pending migration from each
// earlier schema version and copies the file and its write-ahead log before
// the checkpoint that follows, whole and cut short, which is what a process
// killed in that window or while writing the commit leaves. Each copy must open
// at the latest version with the earlier data: the kill sweep hits these
// windows only by chance, and a log cut short in a migration left the file
// refused for good.
func TestMigrationLeftInTheLogOpens(t *testing.T) {
	ctx := context.Background()
	for from := 1; from < len(migrations)-1; from++ {
		t.Run(fmt.Sprintf("from version %d", from), func(t *testing.T) {
			dir := t.TempDir()
			buildVersion(t, dir, from)
			db, _, err := duckfile.Open(ctx, dir, FileName)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for v := from + 1; v < len(migrations); v++ {
				if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
					t.Fatalf("migration %d: %v", v, err)
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, now())`, v); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, FileName+".wal")); err != nil {
				t.Fatalf("the commit left no write-ahead log to replay: %v", err)
			}
			file, err := os.ReadFile(filepath.Join(dir, FileName))
			if err != nil {
				t.Fatal(err)
			}
			wal, err := os.ReadFile(filepath.Join(dir, FileName+".wal"))
			if err != nil {
				t.Fatal(err)
			}
			// The whole log, and logs cut short while the commit was written.
			for _, n := range []int{len(wal), len(wal) * 3 / 4, len(wal) / 2, 4096, 100} {
				killed := t.TempDir()
				if err := os.WriteFile(filepath.Join(killed, FileName), file, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(killed, FileName+".wal"), wal[:min(n, len(wal))], 0o600); err != nil {
					t.Fatal(err)
				}
				checkAfterKill(t, killed, from, nil, fmt.Sprintf("committed, not checkpointed, log cut at %d of %d bytes", n, len(wal)))
			}
		})
	}
}
