package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationFiles are the schema's versions: migrations/NNNN_what.sql, applied
// in order, each once. Never edit a released file: add a new one.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one version of the schema.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations are migrationFiles in version order, read once at package load;
// a misnamed or missing file is a build mistake the tests catch.
var migrations = mustMigrations(migrationFiles)

func mustMigrations(fsys fs.FS) []migration {
	ms, err := readMigrations(fsys)
	if err != nil {
		panic(err)
	}
	return ms
}

// readMigrations reads migrations/NNNN_*.sql, which must number 1, 2, 3, …
// with no gap.
func readMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for i, name := range names { // fs.Glob returns them sorted
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 {
			return nil, fmt.Errorf("migration %s: want the name %04d_<what>.sql", name, i+1)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	return out, nil
}

// migrateLockKey names the advisory lock replicas take to migrate: a constant
// of this package ("pmigrate" in ASCII), the same in every replica. It must
// differ from LeaderLockKey, which the leading replica holds for its whole
// life: a replica with migrations to apply (the first of a new version in a
// rolling upgrade) would otherwise wait until the old leader died. The
// leader's key is the one kept from earlier versions, so old and new replicas
// still agree on one leader during an upgrade. A replica of a version before
// this key, migrating at the very moment one of this version does, would not
// queue behind it: one of the two transactions then fails on
// schema_migrations' key, applies nothing, and that replica exits to be
// restarted.
const migrateLockKey int64 = 0x706d_6967_7261_7465

// migrate applies the migrations the database lacks, in one transaction holding
// a transaction-scoped advisory lock. Replicas starting together queue on the
// lock; each then reads the version the previous one left, so each migration
// runs once, and a replica that fails half-way leaves nothing applied (DDL is
// transactional in PostgreSQL). A database migrated by a newer Periscope is
// refused rather than used with a schema this binary does not know.
//
// A database already at this version is only read, so a manager starts on a
// read-only server (a standby during a failover) and waits there for writes.
func migrate(ctx context.Context, pool *pgxpool.Pool, migs []migration) error {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return err
	}
	if exists {
		var current int
		if err := pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		if current == len(migs) {
			return nil
		}
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL)`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		if current > len(migs) {
			return fmt.Errorf("the database is at schema version %d, newer than this Periscope knows (%d): upgrade this manager", current, len(migs))
		}
		for _, m := range migs[current:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())`,
				m.version, m.name); err != nil {
				return fmt.Errorf("record %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// MigrateFiles applies the migrations fsys holds (migrations/NNNN_<what>.sql,
// numbered from 1 with no gap) that the database lacks, exactly as Open applies
// the fleet store's: under the same advisory lock, each once, all pending ones
// in one transaction. The pool's search_path decides where they and their
// schema_migrations table go, so another store (the telemetry store) keeps its
// own versions in a schema of its own.
func MigrateFiles(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	migs, err := readMigrations(fsys)
	if err != nil {
		return err
	}
	return migrate(ctx, pool, migs)
}

// MigrateLockKey is the advisory lock key migrations are applied under; a store
// that prepares its schema before migrating takes it too.
const MigrateLockKey = migrateLockKey
