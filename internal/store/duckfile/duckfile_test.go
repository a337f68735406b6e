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

// TestOpenReplaysALogDuckDBCannotReplayDirectly checks that a write-ahead log
// holding an ALTER TABLE of a table with a nextval default, which DuckDB 1.5
// refuses to replay when the file is opened directly ("GetDefaultDatabase with
// no default database set"), is replayed and kept: a manager killed after a
// migration, or left so by an older release, starts with every commit.
func TestOpenReplaysALogDuckDBCannotReplayDirectly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, path, err := duckfile.Open(ctx, dir, "x.duckdb")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE SEQUENCE s`, `CREATE TABLE t (seq BIGINT DEFAULT nextval('s'), v INTEGER)`, `INSERT INTO t (v) VALUES (1)`, `CHECKPOINT`,
		`ALTER TABLE t ADD COLUMN note VARCHAR DEFAULT 'none'`, `INSERT INTO t (v, note) VALUES (2, 'after')`,
		// What a kill does: the commits stay in the log, not in the file.
		`PRAGMA disable_checkpoint_on_shutdown`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".wal"); err != nil {
		t.Fatalf("no write-ahead log left to replay: %v", err)
	}

	db, _, err = duckfile.Open(ctx, dir, "x.duckdb")
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	var got []string
	rows, err := db.QueryContext(ctx, `SELECT seq || ':' || v || ':' || note FROM t ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if strings.Join(got, " ") != "1:1:none 2:2:after" {
		t.Errorf("rows after reopening = %v, want 1:1:none 2:2:after", got)
	}
	// The sequence went on from the log, so new rows do not reuse a number.
	var seq int
	if err := db.QueryRowContext(ctx, `INSERT INTO t (v) VALUES (3) RETURNING seq`).Scan(&seq); err != nil || seq != 3 {
		t.Errorf("next seq = %d, %v; want 3", seq, err)
	}
}

// TestOpenExplainsALogItCannotReplay checks that a log that cannot be replayed
// either way is an error saying what to do, and that the file is left alone.
func TestOpenExplainsALogItCannotReplay(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, path, err := duckfile.Open(ctx, dir, "x.duckdb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A log whose every entry is damaged, after a valid header: DuckDB cannot
	// replay it and says so.
	other := filepath.Join(t.TempDir(), "other.duckdb")
	odb, _, err := duckfile.Open(ctx, filepath.Dir(other), "other.duckdb")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE SEQUENCE s`, `CREATE TABLE u (seq BIGINT DEFAULT nextval('s'))`, `CHECKPOINT`, `ALTER TABLE u ADD COLUMN x INTEGER`, `PRAGMA disable_checkpoint_on_shutdown`} {
		if _, err := odb.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	odb.Close()
	wal, err := os.ReadFile(other + ".wal")
	if err != nil {
		t.Fatal(err)
	}
	// other's log belongs to another file: DuckDB refuses it whichever way it opens.
	if err := os.WriteFile(path+".wal", wal, 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	db, _, err = duckfile.Open(ctx, dir, "x.duckdb")
	if err == nil {
		db.Close()
		t.Skip("DuckDB accepted another file's log; nothing to explain")
	}
	if !strings.Contains(err.Error(), "move "+path+".wal aside") {
		t.Errorf("error %q does not say what to do", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the failed recovery changed the database file")
	}
}
