package duckfile

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/periscope-dev/periscope/internal/testenv/crashtest"
)

// TestKilledCreateChild is the process TestKilledCreateOpensAgain kills: it
// creates a new database file in its directory and writes one row.
func TestKilledCreateChild(t *testing.T) {
	dir, ok := crashtest.Child()
	if !ok {
		t.Skip("runs only as the child of a crash test")
	}
	ctx := context.Background()
	crashtest.Report("opening")
	db, _, err := Open(ctx, dir, "new.duckdb")
	if err != nil {
		crashtest.Fail(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v INTEGER)"); err != nil {
		crashtest.Fail(err)
	}
	crashtest.Report("opened")
	crashtest.Hold()
}

// TestKilledCreateOpensAgain kills a process at stepped points while it creates
// a new database file: DuckDB writes a new file's headers in several steps, and
// a file cut among them was refused for good ("exists, but it is not a valid
// DuckDB database file"), so a manager killed in its first moments never
// started again. Every kill must leave a directory Open accepts.
func TestKilledCreateOpensAgain(t *testing.T) {
	kills := crashtest.Kills(t, 12)
	crashtest.Sweep(t, "TestKilledCreateChild", t.TempDir(), kills, func(dir string, lines []string, what string) {
		db, path, err := Open(context.Background(), dir, "new.duckdb")
		if err != nil {
			t.Fatalf("%s (the child said %q): reopen: %v", what, lines, err)
		}
		defer db.Close()
		if err := db.Ping(); err != nil {
			t.Fatalf("%s: %s: %v", what, path, err)
		}
	})
}

// TestFileCutShortWhileCreatedOpensAsNew gives Open what a kill leaves of a file
// DuckDB was creating: its first bytes, up to all but the last of its headers.
// Such a file holds no data, and was refused for good.
func TestFileCutShortWhileCreatedOpensAsNew(t *testing.T) {
	ctx := context.Background()
	whole := t.TempDir()
	db, path, err := Open(ctx, whole, "whole.duckdb")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 100, 4096, 8192, 3*4096 - 1} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "new.duckdb"), full[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		db, _, err := Open(ctx, dir, "new.duckdb")
		if err != nil {
			t.Fatalf("a file cut at %d bytes: %v", n, err)
		}
		if _, err := db.Exec("CREATE TABLE t (v INTEGER)"); err != nil {
			t.Errorf("a file cut at %d bytes, opened: %v", n, err)
		}
		db.Close()
		if _, err := os.Stat(filepath.Join(dir, "new.duckdb.incomplete")); err != nil {
			t.Errorf("a file cut at %d bytes is not kept aside: %v", n, err)
		}
	}
}
