// Package duckfile opens the manager's embedded DuckDB database files. The fleet
// store (store/duckdb) and the telemetry store (manager/telstore) each keep a
// file of their own in the manager's data directory and open it here, so
// neither links the other. It imports the DuckDB driver and nothing of the
// project.
//
// Crash safety. DuckDB writes every commit to a write-ahead log (name.wal) and
// folds it into the file at checkpoints; a process killed in between replays the
// log at the next open. DuckDB 1.5 cannot replay every log it writes when the
// file is opened directly: an ALTER TABLE on a table whose column defaults call a
// function (nextval, random) binds those defaults during replay, before the file
// is the connection's default database, and the open fails with "Calling
// DatabaseManager::GetDefaultDatabase with no default database set". The same
// log replays when the file is attached to an in-memory database, which is
// already the default. Open does that when a direct open fails to replay the
// log, checkpoints the replayed log into the file, and opens the file again, so
// nothing committed is lost. A log cut short while a commit was written (a kill
// in the middle of it) fails a direct open the same way when the cut commit
// holds such a change, although the attachment replays it as what it is,
// nothing committed; a checkpoint with nothing to write leaves it in place, so
// the recovery writes and removes a table of its own first. Migrate applies schema changes in one transaction
// and checkpoints at once, so the log seldom holds schema changes at all.
package duckfile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" database/sql driver
)

// Open opens (creating it and dataDir if needed) the DuckDB file name in
// dataDir. It returns the file's path for the caller's error messages, also
// when opening fails. The connection is tried before Open returns, so a file
// that cannot be opened (locked by another process, not a database) is an
// error here rather than at the first query. A write-ahead log that a direct
// open cannot replay is replayed through an attachment first (see the package
// documentation).
func Open(ctx context.Context, dataDir, name string) (*sql.DB, string, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create data directory %s: %w", dataDir, err)
	}
	path := filepath.Join(dataDir, name)
	if err := create(ctx, path); err != nil {
		return nil, path, err
	}
	db, err := open(ctx, path)
	if err != nil && isReplayFailure(err) {
		err = brief{err}
		if rerr := Recover(ctx, path); rerr != nil {
			return nil, path, fmt.Errorf("open %s: its write-ahead log cannot be replayed (%w), not even through an attachment (%w); "+
				"the file holds everything up to its last checkpoint: to start with that, losing the writes since, stop the manager, "+
				"move %s.wal aside (keep it for a bug report) and start again", path, err, rerr, path)
		}
		db, err = open(ctx, path)
	}
	if err != nil {
		return nil, path, fmt.Errorf("open %s: %w", path, err)
	}
	return db, path, nil
}

// create makes a new, empty database file at path if there is none, atomically:
// DuckDB writes a new file's headers in several steps, and a process killed
// among them leaves a file DuckDB refuses for good ("exists, but it is not a
// valid DuckDB database file"). The file is made under a temporary name,
// closed (which writes its headers), synced and renamed into place, so path is
// either absent or a whole database; a temporary file a crash left behind is
// discarded.
//
// A file shorter than DuckDB's three headers, with no log beside it, that is
// all zeros or has DuckDB's magic number where it belongs, can hold no data: it is what a kill left of a file being created directly (as releases
// before this one did). It is moved aside (name.incomplete) and made anew.
func create(ctx context.Context, path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Mode().IsRegular() && fi.Size() < headersBytes && !exists(path+".wal") && partialHeaders(path):
		if err := os.Rename(path, path+".incomplete"); err != nil {
			return fmt.Errorf("move aside %s, cut short while it was created: %w", path, err)
		}
	case err == nil || !errors.Is(err, fs.ErrNotExist):
		return nil // exists, or Open's own error says what is wrong with it
	}
	tmp := path + ".creating"
	for _, stale := range []string{tmp, tmp + ".wal"} {
		if err := os.Remove(stale); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s, left by an interrupted start: %w", stale, err)
		}
	}
	db, err := open(ctx, tmp)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := syncPath(tmp); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := syncPath(filepath.Dir(path)); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// headersBytes is the size of a DuckDB file's main header and its two database
// headers (4 KiB each), written when the file is created; data comes after.
const headersBytes = 3 * 4096

// partialHeaders tells whether the file at path starts as a DuckDB file does
// (its checksum, then the magic number "DUCK"), or is zeros as far as it goes:
// a file of something else is left for Open to refuse.
func partialHeaders(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	if len(b) > 8 && strings.HasPrefix("DUCK", string(b[8:min(len(b), 12)])) {
		return true
	}
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

// exists tells whether there is a file at path.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// syncPath flushes the file or directory at path to disk.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func open(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("duckdb", path)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// isReplayFailure tells whether err is DuckDB refusing to open a file because
// it could not replay its write-ahead log. DuckDB reports it as an internal
// error with no type of its own, so the message is all there is to go by.
func isReplayFailure(err error) bool {
	return strings.Contains(err.Error(), "Failure while replaying WAL")
}

// Recover replays the write-ahead log of the DuckDB file at path by attaching
// the file to an in-memory database, and checkpoints it into the file, which
// leaves no log behind. The file must not be open elsewhere. A table is created
// and dropped before the checkpoint because DuckDB skips a checkpoint with no
// changes, which would leave a log whose last commit was cut short.
func Recover(ctx context.Context, path string) error {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return fmt.Errorf("open an in-memory database: %w", err)
	}
	defer db.Close()
	// ATTACH, CHECKPOINT and DETACH must run on one connection: the attachment is
	// the database's, but a pool could close the connection in between.
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open an in-memory database: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "ATTACH '"+quote(path)+"' AS periscope_recovery"); err != nil {
		return fmt.Errorf("attach %s: %w", path, err)
	}
	for _, q := range []string{"CREATE TABLE periscope_recovery.periscope_recovery_mark (v INTEGER)", "DROP TABLE periscope_recovery.periscope_recovery_mark"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("write to %s: %w", path, err)
		}
	}
	_, cerr := conn.ExecContext(ctx, "CHECKPOINT periscope_recovery")
	_, derr := conn.ExecContext(ctx, "DETACH periscope_recovery")
	if err := errors.Join(cerr, derr); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}

// Migrate brings db's schema to len(migrations)-1, migrations[0] being unused:
// it reads the version with current, and runs every pending migration and
// setVersion in one transaction, then checkpoints. A process killed before the
// commit leaves the schema as it was; one killed after it leaves the
// migration in the write-ahead log, which Open replays. The checkpoint folds
// the schema change into the file before anything else is written, so that
// window is as short as it can be.
//
// current runs inside the transaction and returns 0 for a new file; it may
// create the version table. setVersion records that version v was applied; it
// is called once for each, in order.
func Migrate(ctx context.Context, db *sql.DB, migrations []string,
	current func(*sql.Tx) (int, error), setVersion func(tx *sql.Tx, v int) error) error {
	latest := len(migrations) - 1
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	v, err := current(tx)
	if err != nil {
		return fmt.Errorf("read the schema version: %w", err)
	}
	if v > latest {
		return fmt.Errorf("the file has schema version %d, newer than this binary knows (%d): upgrade periscope", v, latest)
	}
	if v == latest {
		return tx.Commit()
	}
	for i := v + 1; i <= latest; i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i, err)
		}
		if err := setVersion(tx, i); err != nil {
			return fmt.Errorf("record schema version %d: %w", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migrations %d to %d: %w", v+1, latest, err)
	}
	if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint after migrating to schema version %d: %w", latest, err)
	}
	return nil
}

// brief shortens a DuckDB internal error to its message: the stack trace it
// carries says nothing to an operator.
type brief struct{ err error }

func (b brief) Error() string {
	msg, _, _ := strings.Cut(b.err.Error(), "\nThis error signals an assertion failure")
	msg, _, _ = strings.Cut(msg, "\n\nStack Trace")
	return msg
}

func (b brief) Unwrap() error { return b.err }

// quote escapes s for a single-quoted SQL literal.
func quote(s string) string { return strings.ReplaceAll(s, "'", "''") }
