package duckfile_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/store/duckfile"
)

// TestOpenCreatesAndReopens checks that Open makes the data directory and the
// file, and that what is written is there when the file is opened again.
func TestOpenCreatesAndReopens(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data", "manager")
	db, path, err := duckfile.Open(ctx, dir, "x.duckdb")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "x.duckdb"); path != want {
		t.Errorf("path = %q, want %q", path, want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, %v; want it created with mode 0700", fi, err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, _, err = duckfile.Open(ctx, dir, "x.duckdb")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRowContext(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("after reopening: v = %d, %v; want 42", v, err)
	}
}

// TestOpenFailsAtOnce checks that a file that is not a database is refused by
// Open, naming the path, not at the first query.
func TestOpenFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.duckdb"), []byte(strings.Repeat("not a database\n", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	db, path, err := duckfile.Open(context.Background(), dir, "bad.duckdb")
	if err == nil {
		db.Close()
		t.Fatal("Open of a file that is not a database succeeded")
	}
	if path != filepath.Join(dir, "bad.duckdb") || !strings.Contains(err.Error(), path) {
		t.Errorf("path %q, err %v; want the path, and named in the error", path, err)
	}
}
