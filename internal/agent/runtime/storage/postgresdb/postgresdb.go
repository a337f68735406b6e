// Package postgresdb is the storage source for PostgreSQL: the size of one
// database and of its largest tables, with the planner's row estimates. It is a
// package of its own because it links pgx (pure Go, no cgo), which only the
// agents that build postgres sources need to compile against.
package postgresdb

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage"
	"github.com/periscope-dev/periscope/internal/config"
)

// postgres reads the size of one database and of its largest tables.
type postgres struct {
	storage.Base
	conn      *pgx.ConnConfig
	maxTables int
}

// New builds the source of the postgres Config c, with credentials from env
// (os.Environ form); it validates c and starts nothing.
func New(c config.StorageSource, env []string) (runtime.Source, error) {
	if err := storage.Check(c, storage.KindPostgres); err != nil {
		return nil, err
	}
	return newSource(c, env)
}

func newSource(c storage.Config, env []string) (*postgres, error) {
	conn, err := pgx.ParseConfig(c.URL)
	if err != nil {
		// pgx's error may quote the URL, and the URL may hold a password.
		return nil, fmt.Errorf("postgres/%s.url: is not a valid postgres:// URL", c.Name)
	}
	user, pass := c.Credentials(env)
	if user != "" {
		conn.User = user
	}
	if pass != "" {
		conn.Password = pass
	}
	// Only catalogue reads: a mistyped URL pointing at the vendor's database
	// with an owner's role still cannot change anything through this source.
	conn.RuntimeParams["default_transaction_read_only"] = "on"
	conn.RuntimeParams["application_name"] = "periscope-agent"
	n := c.MaxTables
	if n == 0 {
		n = storage.DefaultMaxTables
	}
	return &postgres{Base: storage.NewBase(c), conn: conn, maxTables: n}, nil
}

// largestTables lists ordinary tables and materialised views of user schemas
// by total size (heap, indexes and TOAST), with the planner's row estimate
// (reltuples, -1 for a table never vacuumed or analysed). Sizing a relation
// stats its files, so the cost grows with the number of tables; the context's
// deadline bounds it.
const largestTables = `
SELECT n.nspname, c.relname, pg_total_relation_size(c.oid), c.reltuples::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY 3 DESC, 1, 2
LIMIT $1`

// Collect appends periscope.postgresql.database.size and, for the largest
// tables, periscope.postgresql.table.size and periscope.postgresql.table.rows.
func (p *postgres) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	defer storage.DropEmpty(ms, ms.Len())
	conn, err := pgx.ConnectConfig(ctx, p.conn.Copy())
	if err != nil {
		return p.Errorf("connect: %w", err)
	}
	// Past the deadline, Close drops the socket without the polite goodbye.
	defer conn.Close(ctx)

	var db string
	var size int64
	if err := conn.QueryRow(ctx, `SELECT current_database(), pg_database_size(current_database())`).Scan(&db, &size); err != nil {
		return p.Errorf("database size: %w", err)
	}
	db = storage.Clip(db, storage.MaxAttrLen)
	runtime.Point(runtime.Gauge(ms, "periscope.postgresql.database.size", "By", "Disk space the database uses (pg_database_size)."),
		now, size, "db.namespace", db, storage.AttrSource, p.Name())

	rows, err := conn.Query(ctx, largestTables, p.maxTables)
	if err != nil {
		return p.Errorf("largest tables: %w", err)
	}
	sizes := runtime.Gauge(ms, "periscope.postgresql.table.size", "By", "Disk space of one of the largest tables, with its indexes and TOAST (pg_total_relation_size).")
	counts := runtime.Gauge(ms, "periscope.postgresql.table.rows", "{row}", "The planner's estimate of a table's rows (pg_class.reltuples), as of its last VACUUM or ANALYZE.")
	var schema, table string
	var tsize, estimate int64
	_, err = pgx.ForEachRow(rows, []any{&schema, &table, &tsize, &estimate}, func() error {
		kv := []string{"db.namespace", db, "db.collection.name", storage.Clip(schema+"."+table, storage.MaxAttrLen), storage.AttrSource, p.Name()}
		runtime.Point(sizes, now, tsize, kv...)
		if estimate >= 0 {
			runtime.Point(counts, now, estimate, kv...)
		}
		return nil
	})
	if err != nil {
		return p.Errorf("largest tables: %w", err)
	}
	return nil
}
