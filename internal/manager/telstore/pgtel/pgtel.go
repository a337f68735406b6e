// Package pgtel is the manager's operational telemetry window on PostgreSQL,
// for managers that run as several replicas on one database: the same records,
// rollups and investigation answers as the embedded DuckDB store (package
// telstore, whose decoding and queries it shares), with the tables in a schema
// of their own beside the fleet store's.
//
// Writes. Batches are decoded by the caller's goroutine and queued; each of
// Settings.Writers goroutines takes every pending batch and stores them in one
// transaction: rows by COPY, the RED rollups of their entry spans summed into
// the per-minute rows by upserts, and each batch's agent-queue mark
// (consumer.Batch.Stream, First, Last) checked and advanced. The transactions
// of every writer of every replica run at once, taking the rows they lock
// (resources, marks, rollups) in one order so they never deadlock; so rows
// commit out of seq order. A log tail (seq > last) therefore reads only below
// a watermark no open writer can still fill in: before it numbers a log row, a
// transaction records a floor below all its rows, committed from another
// session, in log_writers, and a tail stops below the lowest floor of the
// transactions its snapshot sees running (see logWatermark); so it misses
// nothing, whatever order writers commit in. A batch is acknowledged (Consume returns nil)
// only once committed, and a replica dying mid-transaction leaves nothing of it:
// rows, rollups and mark go together, so a resend, to this replica or another,
// is stored once.
//
// Time. Every time-ordered table is range-partitioned by time
// (Settings.PartitionWidth); the writer creates the partitions its rows need,
// up to one width ahead of now, and retention drops the partitions older than
// MaxAge whole, then the oldest while the tables use more than MaxBytes.
package pgtel

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/store/postgres"
)

// migrationFiles are the telemetry schema's versions, applied like the fleet
// store's (postgres.MigrateFiles) but recorded in the telemetry schema. Never
// edit a released file: add a new one.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Defaults of Settings.
const (
	DefaultSchema         = "periscope_telemetry"
	DefaultPartitionWidth = 24 * time.Hour
	DefaultTailPoll       = time.Second
	DefaultCommitTimeout  = 30 * time.Second
)

// Settings configure a Store. The zero value gets the defaults.
type Settings struct {
	// Schema holds the telemetry tables (default periscope_telemetry, or
	// <search_path>_telemetry when the URL sets a search_path).
	Schema string
	// MaxAge drops records older than this (default 7 days).
	MaxAge time.Duration
	// MaxBytes bounds the telemetry tables' size on disk; the oldest partitions
	// go first (default 10 GiB).
	MaxBytes int64
	// RetainEvery is how often retention runs (default 30s). Negative runs no
	// retention loop, for a manager whose leader calls Retain instead; any
	// replica may run it, at once with others.
	RetainEvery time.Duration
	// PartitionWidth is the time range of one partition: a whole number of
	// hours that divides a day (default 24h). Narrower partitions let retention
	// drop data sooner at the cost of more tables.
	PartitionWidth time.Duration
	// MaxBatchRows bounds one group commit (default 65536 rows).
	MaxBatchRows int
	// Writers is how many transactions this Store writes at once (default 2);
	// they, and other replicas' writers, number and commit rows concurrently.
	Writers int
	// CommitTimeout bounds one group commit; a commit that times out is
	// refused, and its senders retry (default 30s).
	CommitTimeout time.Duration
	// TailPoll is how often a log tail looks for rows other replicas committed
	// (default 1s); this replica's commits wake it at once.
	TailPoll time.Duration
	// Clock drives retention, partitions and default query windows; nil means
	// the wall clock.
	Clock clock.Clock
	// Logger reports write and retention failures; nil means slog.Default().
	Logger *slog.Logger
	// Registerer gets the store's metrics; nil means none.
	Registerer prometheus.Registerer
}

func (s *Settings) defaults() error {
	if s.MaxAge <= 0 {
		s.MaxAge = telstore.DefaultMaxAge
	}
	if s.MaxBytes <= 0 {
		s.MaxBytes = telstore.DefaultMaxBytes
	}
	if s.RetainEvery == 0 {
		s.RetainEvery = telstore.DefaultRetainEvery
	}
	if s.PartitionWidth <= 0 {
		s.PartitionWidth = DefaultPartitionWidth
	}
	if s.PartitionWidth%time.Hour != 0 || (24*time.Hour)%s.PartitionWidth != 0 {
		return fmt.Errorf("partition width %s: want a whole number of hours that divides a day", s.PartitionWidth)
	}
	if s.MaxBatchRows <= 0 {
		s.MaxBatchRows = 1 << 16
	}
	if s.Writers <= 0 {
		s.Writers = 2
	}
	if s.CommitTimeout <= 0 {
		s.CommitTimeout = DefaultCommitTimeout
	}
	if s.TailPoll <= 0 {
		s.TailPoll = DefaultTailPoll
	}
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return nil
}

// ErrClosed is returned by Consume after Close.
var ErrClosed = telstore.ErrClosed

// Store is the PostgreSQL telemetry store. Use Open; it is safe for concurrent
// use, and any number of Stores (in any number of processes) may share a
// database.
type Store struct {
	// Reader answers the investigation queries, with the embedded store's code.
	*telstore.Reader
	pool *pgxpool.Pool
	db   *sql.DB
	set  Settings
	log  *slog.Logger
	m    *metrics
	w    *writer

	gate   *telstore.Gate[*pending]
	wg     sync.WaitGroup
	closed sync.Once
}

// Open connects to the database url names (a postgres:// URL, as the fleet
// store takes), creates the telemetry schema and applies its pending
// migrations, and starts the writers and the retention loop. Errors never
// repeat the URL, which may hold a password.
func Open(ctx context.Context, rawURL string, set Settings) (*Store, error) {
	if err := set.defaults(); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, errors.New("open PostgreSQL telemetry store: the storage URL is not a valid PostgreSQL connection URL")
	}
	if set.Schema == "" {
		set.Schema = DefaultSchema
		if sp := cfg.ConnConfig.RuntimeParams["search_path"]; sp != "" {
			set.Schema = strings.Trim(strings.TrimSpace(strings.Split(sp, ",")[0]), `"`) + "_telemetry"
		}
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = set.Schema
	// The writers' transactions and the second connection each takes to
	// record its log numbers' floor, a tail or two and the queries of a
	// dashboard.
	cfg.MaxConns = max(cfg.MaxConns, 2*int32(set.Writers)+6)
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL telemetry store at %s: %w", where, err)
	}
	if err := prepare(ctx, pool, set.Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate PostgreSQL telemetry store at %s: %w", where, err)
	}
	s := &Store{pool: pool, db: stdlib.OpenDBFromPool(pool), set: set, log: set.Logger, m: newMetrics(set.Registerer),
		gate: telstore.NewGate[*pending](64)}
	s.Reader = telstore.NewReader(s.db, telstore.Postgres, telstore.ReaderSettings{Clock: set.Clock, Committed: s.gate.Committed,
		Stop: s.gate.Stopped(), Poll: set.TailPoll, TailBelow: logWatermark})
	s.w = newWriter(s)
	if err := s.w.loadPartitions(ctx); err != nil {
		s.db.Close()
		pool.Close()
		return nil, fmt.Errorf("open PostgreSQL telemetry store at %s: %w", where, err)
	}
	s.wg.Add(set.Writers)
	for range set.Writers {
		go func() {
			defer s.wg.Done()
			s.gate.Serve(s.w.commit, func(p *pending) int { return p.rows }, set.MaxBatchRows)
		}()
	}
	if set.RetainEvery < 0 {
		return s, nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		telstore.RunEvery(s.gate.Stopped(), set.RetainEvery, 10*time.Minute, func(ctx context.Context) {
			if err := s.Retain(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("telemetry retention failed; will retry", "error", err)
			}
		})
	}()
	return s, nil
}

// prepare creates the schema and applies the migrations. Replicas starting
// together queue on the migration lock; CREATE SCHEMA IF NOT EXISTS alone
// would race.
func prepare(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.MigrateLockKey); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
			return err
		})
		if err != nil {
			return fmt.Errorf("create schema %s: %w", schema, err)
		}
	}
	return postgres.MigrateFiles(ctx, pool, migrationFiles)
}

// Close stops accepting batches, commits what is queued, and closes the
// connections.
func (s *Store) Close() error {
	s.closed.Do(func() {
		s.gate.Close()
		s.wg.Wait()
		s.db.Close()
		s.pool.Close()
	})
	return nil
}

// Flush returns once every acknowledged batch's rollups are visible, which
// they are at once: a batch's rollups commit with its rows.
func (s *Store) Flush(ctx context.Context) error {
	select {
	case <-s.gate.Stopped():
		return ErrClosed
	default:
	}
	return ctx.Err()
}

type metrics struct {
	*telstore.CommitMetrics
	duplicates prometheus.Counter
	dropped    *prometheus.CounterVec
	// prunedResources counts the resources retention deleted.
	prunedResources prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		CommitMetrics: telstore.NewCommitMetrics(),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_telstore_duplicate_batches_total",
			Help: "Batches (or their first part) found stored already, by this replica or another, and not stored again."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_telstore_retention_dropped_partitions_total",
			Help: "Partitions dropped by retention, by reason (age or size)."}, []string{"reason"}),
		prunedResources: prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_telstore_retention_pruned_resources_total",
			Help: "Resources (a deployment, release, service and replica's context) deleted by retention once no kept record used them."}),
	}
	if reg != nil {
		reg.MustRegister(append(m.Collectors(), m.duplicates, m.dropped, m.prunedResources)...)
	}
	return m
}
