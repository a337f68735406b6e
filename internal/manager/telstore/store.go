// Package telstore is the manager's operational telemetry window: logs, spans and
// metric points of every deployment in an embedded DuckDB file, with the deployment
// context as real columns, per-minute RED rollups written at ingest, retention by
// age and size, and the investigation queries of internal/telquery.
//
// The deployment context of a record is its resource's: every distinct resource
// is stored once, in the resources table (deployment, customer, cloud, region,
// release, stack, service, container, replica and the remaining attributes), and
// the raw rows (log_rows, span_rows, metric_point_rows) carry its id and their
// own function. The views logs, spans and metric_points join the two back into
// one row per record; queries filter on a resource's context with a semi-join
// on the id, which DuckDB applies while scanning.
//
// Writes are group-committed: each of two appending connections takes every
// pending batch, appends it with DuckDB's Appender in one transaction, and
// commits in the order its rows were numbered; a batch is acknowledged (Consume
// returns) only once committed. Queries run on other connections and never block
// ingest: DuckDB's MVCC lets readers see the last commit while writers append.
//
// The store has its own file (telemetry.duckdb) beside the fleet store's, so
// high-volume appends, deletes and checkpoints never contend with fleet writes,
// and the telemetry window can be dropped without touching fleet state.
package telstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/store/duckfile"
)

// FileName is the database file inside the data directory.
const FileName = "telemetry.duckdb"

// Defaults of Settings.
const (
	DefaultMaxAge      = 7 * 24 * time.Hour
	DefaultMaxBytes    = 10 << 30
	DefaultRollupEvery = time.Second
	DefaultRetainEvery = 30 * time.Second
)

// Settings configure a Store. The zero value gets the defaults.
type Settings struct {
	// MaxAge drops records older than this (default 7 days).
	MaxAge time.Duration
	// MaxBytes bounds the database's used size; the oldest records go first
	// (default 10 GiB).
	MaxBytes int64
	// RetainEvery is how often retention runs (default 30s).
	RetainEvery time.Duration
	// RollupEvery is how often accumulated rollups are written (default 1s), so
	// RED answers lag ingest by at most this. A crash in between loses nothing:
	// rollups of spans not yet rolled up are rebuilt from the raw rows at the next
	// Open.
	RollupEvery time.Duration
	// MaxBatchRows bounds one group commit (default 65536 rows).
	MaxBatchRows int
	// Writers is how many connections append at once (default 2); their commits
	// still go one at a time, in order.
	Writers int
	// Threads bounds DuckDB's worker threads (default: DuckDB's, one per core).
	Threads int
	// MemoryLimit bounds DuckDB's buffer memory, e.g. "1GB" (default: DuckDB's).
	MemoryLimit string
	// CheckpointThreshold is how much write-ahead log DuckDB gathers before it
	// folds it into the file (default 256MB). DuckDB's own 16MB made ingest
	// checkpoint every ~77,000 log rows at about a second each, whatever their
	// number; a larger log costs a longer replay after a crash.
	CheckpointThreshold string
	// Clock drives retention and default query windows; nil means the wall clock.
	Clock clock.Clock
	// Logger reports write and retention failures; nil means slog.Default().
	Logger *slog.Logger
	// Registerer gets the store's metrics; nil means none.
	Registerer prometheus.Registerer
}

func (s *Settings) defaults() {
	if s.MaxAge <= 0 {
		s.MaxAge = DefaultMaxAge
	}
	if s.MaxBytes <= 0 {
		s.MaxBytes = DefaultMaxBytes
	}
	if s.RetainEvery <= 0 {
		s.RetainEvery = DefaultRetainEvery
	}
	if s.RollupEvery <= 0 {
		s.RollupEvery = DefaultRollupEvery
	}
	if s.Writers <= 0 {
		s.Writers = 2
	}
	if s.MaxBatchRows <= 0 {
		s.MaxBatchRows = 1 << 16
	}
	if s.CheckpointThreshold == "" {
		s.CheckpointThreshold = "256MB"
	}
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
}

// ErrClosed is returned by Consume after Close.
var ErrClosed = errors.New("telemetry store closed")

// Store is the DuckDB telemetry store. Use Open; it is safe for concurrent use.
type Store struct {
	// Reader answers the queries; Store's own db and stop are the same.
	*Reader
	db  *sql.DB
	w   *writer
	set Settings
	log *slog.Logger
	m   *metrics

	gate   *Gate[*pending]
	flush  chan chan error
	stop   <-chan struct{}
	wg     sync.WaitGroup
	closed sync.Once

	closeErr error
}

// Open opens (creating if needed) the store in dataDir, rebuilds rollups a crash
// left unwritten, and starts the writer and retention loops.
func Open(ctx context.Context, dataDir string, set Settings) (*Store, error) {
	set.defaults()
	db, path, err := duckfile.Open(ctx, dataDir, FileName)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, set: set, log: set.Logger, m: newMetrics(set.Registerer),
		gate: NewGate[*pending](64), flush: make(chan chan error)}
	s.stop = s.gate.Stopped()
	s.Reader = NewReader(db, DuckDB, ReaderSettings{Clock: set.Clock, Committed: s.gate.Committed, Stop: s.stop})
	if err := s.configure(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("configure %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	w, err := newWriter(ctx, s)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.w = w
	s.wg.Add(2)
	go func() { defer s.wg.Done(); w.run() }()
	go func() { defer s.wg.Done(); s.retainLoop() }()
	return s, nil
}

func (s *Store) configure(ctx context.Context) error {
	if s.set.Threads > 0 {
		if _, err := s.db.ExecContext(ctx, fmt.Sprintf("SET threads = %d", s.set.Threads)); err != nil {
			return err
		}
	}
	if _, err := s.db.ExecContext(ctx, "SET checkpoint_threshold = '"+sqlString(s.set.CheckpointThreshold)+"'"); err != nil {
		return err
	}
	if s.set.MemoryLimit != "" {
		if _, err := s.db.ExecContext(ctx, "SET memory_limit = '"+sqlString(s.set.MemoryLimit)+"'"); err != nil {
			return err
		}
	}
	return nil
}

// Close stops accepting batches, commits what is pending (including rollups), and
// closes the file.
func (s *Store) Close() error {
	s.closed.Do(func() {
		s.gate.Close()
		s.wg.Wait()
		_, _ = s.db.Exec("CHECKPOINT")
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Flush writes the rollups accumulated so far, so RED and comparisons see every
// batch Consume has acknowledged.
func (s *Store) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case s.flush <- done:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// migrations are applied in order, each once, all pending ones in one
// transaction followed by a checkpoint (duckfile.Migrate). Never edit a
// released entry.
//
// Layout choices, for ingest, disk and scan speed: each distinct resource (its
// deployment context columns and other attributes) is a row of resources, and
// raw rows refer to it by id, read through views that join it back (migration
// 2); trace and span ids are 64-bit integers,
// their bits as signed numbers because database/sql cannot pass unsigned ones
// with the high bit set (a trace lookup compares two numbers per row instead of
// strings); seq is a
// per-table ascending number that breaks timestamp ties for cursors and lets a
// tail ask for "everything after"; attributes are JSON text.
var migrations = []string{
	1: `
CREATE TABLE logs (
	seq           BIGINT NOT NULL,
	ts            TIMESTAMP NOT NULL,
	deployment    VARCHAR NOT NULL,
	customer      VARCHAR NOT NULL,
	cloud         VARCHAR NOT NULL,
	region        VARCHAR NOT NULL,
	release       VARCHAR NOT NULL,
	stack         VARCHAR NOT NULL,
	service       VARCHAR NOT NULL,
	function      VARCHAR NOT NULL,
	container     VARCHAR NOT NULL,
	replica       VARCHAR NOT NULL,
	severity      UTINYINT NOT NULL,
	severity_text VARCHAR NOT NULL,
	body          VARCHAR NOT NULL,
	trace_hi      BIGINT,
	trace_lo      BIGINT,
	span_id       BIGINT,
	attrs         VARCHAR,
	resource      VARCHAR
);
CREATE TABLE spans (
	seq            BIGINT NOT NULL,
	start          TIMESTAMP NOT NULL,
	duration_ns    BIGINT NOT NULL,
	trace_hi       BIGINT NOT NULL,
	trace_lo       BIGINT NOT NULL,
	span_id        BIGINT NOT NULL,
	parent_span_id BIGINT,
	name           VARCHAR NOT NULL,
	kind           UTINYINT NOT NULL,
	status         UTINYINT NOT NULL,
	status_message VARCHAR,
	entry          BOOLEAN NOT NULL,
	deployment     VARCHAR NOT NULL,
	customer       VARCHAR NOT NULL,
	cloud          VARCHAR NOT NULL,
	region         VARCHAR NOT NULL,
	release        VARCHAR NOT NULL,
	stack          VARCHAR NOT NULL,
	service        VARCHAR NOT NULL,
	function       VARCHAR NOT NULL,
	container      VARCHAR NOT NULL,
	replica        VARCHAR NOT NULL,
	attrs          VARCHAR,
	resource       VARCHAR
);
CREATE TABLE metric_points (
	seq         BIGINT NOT NULL,
	ts          TIMESTAMP NOT NULL,
	name        VARCHAR NOT NULL,
	kind        VARCHAR NOT NULL,
	unit        VARCHAR NOT NULL,
	temporality UTINYINT NOT NULL,
	value       DOUBLE NOT NULL,
	count       UBIGINT,
	sum         DOUBLE,
	deployment  VARCHAR NOT NULL,
	customer    VARCHAR NOT NULL,
	cloud       VARCHAR NOT NULL,
	region      VARCHAR NOT NULL,
	release     VARCHAR NOT NULL,
	stack       VARCHAR NOT NULL,
	service     VARCHAR NOT NULL,
	function    VARCHAR NOT NULL,
	container   VARCHAR NOT NULL,
	replica     VARCHAR NOT NULL,
	attrs       VARCHAR,
	resource    VARCHAR
);
CREATE TABLE red_minute (
	minute      TIMESTAMP NOT NULL,
	deployment  VARCHAR NOT NULL,
	customer    VARCHAR NOT NULL,
	cloud       VARCHAR NOT NULL,
	region      VARCHAR NOT NULL,
	release     VARCHAR NOT NULL,
	stack       VARCHAR NOT NULL,
	service     VARCHAR NOT NULL,
	function    VARCHAR NOT NULL,
	requests    BIGINT NOT NULL,
	errors      BIGINT NOT NULL,
	duration_ns DOUBLE NOT NULL
);
CREATE TABLE red_hist (
	minute     TIMESTAMP NOT NULL,
	deployment VARCHAR NOT NULL,
	customer   VARCHAR NOT NULL,
	cloud      VARCHAR NOT NULL,
	region     VARCHAR NOT NULL,
	release    VARCHAR NOT NULL,
	stack      VARCHAR NOT NULL,
	service    VARCHAR NOT NULL,
	function   VARCHAR NOT NULL,
	bucket     UTINYINT NOT NULL,
	n          BIGINT NOT NULL
);
CREATE TABLE rollup_state (
	id       INTEGER PRIMARY KEY,
	span_seq BIGINT NOT NULL
);
INSERT INTO rollup_state VALUES (1, 0);`,
	// Resources stored once. A row used to carry its resource's nine context
	// strings and attribute JSON, and appending those cells was most of the cost
	// of ingest (one cgo crossing each, then the write-ahead log holding them
	// uncompressed); now it carries the resource's id. The views keep the
	// earlier tables' names and columns for every query.
	2: `
CREATE TABLE resources (
	id         BIGINT NOT NULL,
	deployment VARCHAR NOT NULL,
	customer   VARCHAR NOT NULL,
	cloud      VARCHAR NOT NULL,
	region     VARCHAR NOT NULL,
	release    VARCHAR NOT NULL,
	stack      VARCHAR NOT NULL,
	service    VARCHAR NOT NULL,
	container  VARCHAR NOT NULL,
	replica    VARCHAR NOT NULL,
	resource   VARCHAR
);
INSERT INTO resources SELECT row_number() OVER () AS id, * FROM (
	SELECT deployment, customer, cloud, region, release, stack, service, container, replica, resource FROM logs
	UNION SELECT deployment, customer, cloud, region, release, stack, service, container, replica, resource FROM spans
	UNION SELECT deployment, customer, cloud, region, release, stack, service, container, replica, resource FROM metric_points);
CREATE TABLE log_rows (
	seq           BIGINT NOT NULL,
	ts            TIMESTAMP NOT NULL,
	res           BIGINT NOT NULL,
	function      VARCHAR NOT NULL,
	severity      UTINYINT NOT NULL,
	severity_text VARCHAR NOT NULL,
	body          VARCHAR NOT NULL,
	trace_hi      BIGINT,
	trace_lo      BIGINT,
	span_id       BIGINT,
	attrs         VARCHAR
);
INSERT INTO log_rows SELECT l.seq, l.ts, r.id, l.function, l.severity, l.severity_text, l.body, l.trace_hi, l.trace_lo, l.span_id, l.attrs
	FROM logs l JOIN resources r ON ` + sameResource("l") + ` ORDER BY l.seq;
CREATE TABLE span_rows (
	seq            BIGINT NOT NULL,
	start          TIMESTAMP NOT NULL,
	duration_ns    BIGINT NOT NULL,
	trace_hi       BIGINT NOT NULL,
	trace_lo       BIGINT NOT NULL,
	span_id        BIGINT NOT NULL,
	parent_span_id BIGINT,
	name           VARCHAR NOT NULL,
	kind           UTINYINT NOT NULL,
	status         UTINYINT NOT NULL,
	status_message VARCHAR,
	entry          BOOLEAN NOT NULL,
	res            BIGINT NOT NULL,
	function       VARCHAR NOT NULL,
	attrs          VARCHAR
);
INSERT INTO span_rows SELECT s.seq, s.start, s.duration_ns, s.trace_hi, s.trace_lo, s.span_id, s.parent_span_id, s.name, s.kind,
	s.status, s.status_message, s.entry, r.id, s.function, s.attrs
	FROM spans s JOIN resources r ON ` + sameResource("s") + ` ORDER BY s.seq;
CREATE TABLE metric_point_rows (
	seq         BIGINT NOT NULL,
	ts          TIMESTAMP NOT NULL,
	name        VARCHAR NOT NULL,
	kind        VARCHAR NOT NULL,
	unit        VARCHAR NOT NULL,
	temporality UTINYINT NOT NULL,
	value       DOUBLE NOT NULL,
	count       UBIGINT,
	sum         DOUBLE,
	res         BIGINT NOT NULL,
	function    VARCHAR NOT NULL,
	attrs       VARCHAR
);
INSERT INTO metric_point_rows SELECT m.seq, m.ts, m.name, m.kind, m.unit, m.temporality, m.value, m.count, m.sum, r.id, m.function, m.attrs
	FROM metric_points m JOIN resources r ON ` + sameResource("m") + ` ORDER BY m.seq;
DROP TABLE logs;
DROP TABLE spans;
DROP TABLE metric_points;
CREATE VIEW logs AS SELECT l.seq, l.ts, l.res, r.deployment, r.customer, r.cloud, r.region, r.release, r.stack, r.service, l.function,
	r.container, r.replica, l.severity, l.severity_text, l.body, l.trace_hi, l.trace_lo, l.span_id, l.attrs, r.resource
	FROM log_rows l JOIN resources r ON l.res = r.id;
CREATE VIEW spans AS SELECT s.seq, s.start, s.res, s.duration_ns, s.trace_hi, s.trace_lo, s.span_id, s.parent_span_id, s.name, s.kind,
	s.status, s.status_message, s.entry, r.deployment, r.customer, r.cloud, r.region, r.release, r.stack, r.service, s.function,
	r.container, r.replica, s.attrs, r.resource
	FROM span_rows s JOIN resources r ON s.res = r.id;
CREATE VIEW metric_points AS SELECT m.seq, m.ts, m.res, m.name, m.kind, m.unit, m.temporality, m.value, m.count, m.sum,
	r.deployment, r.customer, r.cloud, r.region, r.release, r.stack, r.service, m.function, r.container, r.replica, m.attrs, r.resource
	FROM metric_point_rows m JOIN resources r ON m.res = r.id;`,
	// Span events (an exception and its stack, a retry), as a JSON array.
	3: `
DROP VIEW spans;
ALTER TABLE span_rows ADD COLUMN events VARCHAR;
CREATE VIEW spans AS SELECT s.seq, s.start, s.res, s.duration_ns, s.trace_hi, s.trace_lo, s.span_id, s.parent_span_id, s.name, s.kind,
	s.status, s.status_message, s.entry, r.deployment, r.customer, r.cloud, r.region, r.release, r.stack, r.service, s.function,
	r.container, r.replica, s.attrs, r.resource, s.events
	FROM span_rows s JOIN resources r ON s.res = r.id;`,
	// Explicit histogram buckets, for percentiles, in one text cell:
	// comma-separated bounds, '|', comma-separated counts (one more than
	// bounds), as OTLP carries them: "0.005,0.01,…,10|0,3,…,0". Text because
	// the Appender takes a list one boxed element at a time (histogram rounds
	// allocated 59% more with DOUBLE[] and UBIGINT[] columns); one cell because
	// it crosses cgo once per cell, a NULL included. Points stored before,
	// and points whose buckets cannot be read (exponential histograms,
	// summaries, malformed ones), have NULL here and keep their count and sum.
	4: `
DROP VIEW metric_points;
ALTER TABLE metric_point_rows ADD COLUMN buckets VARCHAR;
CREATE VIEW metric_points AS SELECT m.seq, m.ts, m.res, m.name, m.kind, m.unit, m.temporality, m.value, m.count, m.sum,
	r.deployment, r.customer, r.cloud, r.region, r.release, r.stack, r.service, m.function, r.container, r.replica, m.attrs, r.resource,
	m.buckets
	FROM metric_point_rows m JOIN resources r ON m.res = r.id;`,
}

// sameResource is the join condition of migration 2 between a row of an earlier
// table (alias t) and its resource r.
func sameResource(t string) string {
	var b strings.Builder
	for _, c := range resourceColumns {
		b.WriteString(t + "." + c + " IS NOT DISTINCT FROM r." + c + " AND ")
	}
	return b.String() + t + ".resource IS NOT DISTINCT FROM r.resource"
}

func migrate(ctx context.Context, db *sql.DB) error {
	return duckfile.Migrate(ctx, db, migrations, func(tx *sql.Tx) (int, error) {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
			return 0, err
		}
		var v int
		err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`)
		}
		return v, err
	}, func(tx *sql.Tx, v int) error {
		_, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v)
		return err
	})
}

// sqlString escapes a string for a SQL literal.
func sqlString(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// CommitMetrics are the metrics every telemetry store reports of its writes,
// under the same names whichever engine stores the rows.
type CommitMetrics struct {
	Rows       *prometheus.CounterVec
	Commits    prometheus.Counter
	CommitSec  prometheus.Histogram
	Failures   prometheus.Counter
	Unstorable prometheus.Counter
	// UsedBytes is the store's size as retention measures it.
	UsedBytes prometheus.Gauge
}

// NewCommitMetrics builds the metrics; Collectors lists them for registering.
func NewCommitMetrics() *CommitMetrics {
	return &CommitMetrics{
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_telstore_rows_total",
			Help: "Rows written to the telemetry store, by table."}, []string{"table"}),
		Commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_telstore_commits_total",
			Help: "Group commits of the telemetry store."}),
		CommitSec: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "periscope_telstore_commit_seconds",
			Help: "Time to append and commit one group of batches.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		Failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_telstore_commit_failures_total",
			Help: "Group commits that failed; their batches were refused and will be resent."}),
		Unstorable: prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_telstore_unstorable_batches_total",
			Help: "Batches refused for good: they fail identically however often they are resent."}),
		UsedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "periscope_telstore_used_bytes",
			Help: "Bytes the telemetry store's data uses, as retention measures it."}),
	}
}

// Collectors are the metrics, for a prometheus.Registerer.
func (m *CommitMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Rows, m.Commits, m.CommitSec, m.Failures, m.Unstorable, m.UsedBytes}
}

type metrics struct {
	*CommitMetrics
	retained *prometheus.CounterVec
	// fixedStrings, fixedRows and unstorable count poison (see writer.go).
	fixedStrings prometheus.Counter
	fixedRows    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		CommitMetrics: NewCommitMetrics(),
		retained: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_telstore_retention_deleted_rows_total",
			Help: "Rows deleted by retention, by table and reason (age or size)."}, []string{"table", "reason"}),
		fixedStrings: prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_telstore_invalid_utf8_strings_total",
			Help: "Stored strings that held invalid UTF-8, stored with each invalid sequence replaced by U+FFFD."}),
		fixedRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_telstore_invalid_utf8_rows_total",
			Help: "Stored rows with a string (theirs or their resource's) that held invalid UTF-8, by table."}, []string{"table"}),
	}
	if reg != nil {
		reg.MustRegister(append(m.Collectors(), m.retained, m.fixedStrings, m.fixedRows)...)
	}
	return m
}
