package telstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

// Dialect is the SQL engine a Reader queries. The investigation queries are one
// piece of code for both stores; the few spellings that differ between DuckDB
// and PostgreSQL (placeholders, arg_max, quantiles, JSON lookups) come from here.
type Dialect int

// The dialects a Reader speaks.
const (
	// DuckDB is the embedded store's engine.
	DuckDB Dialect = iota
	// Postgres is PostgreSQL (internal/manager/telstore/pgtel), through pgx's
	// database/sql driver.
	Postgres
)

// Reader answers the investigation queries (logs, spans, traces, RED,
// comparisons, error rates, metrics, runtime) from a database holding the
// store's layout: the views logs, spans and metric_points, the tables
// log_rows and resources, and the rollups red_minute and red_hist. The
// DuckDB Store embeds one; the PostgreSQL store builds one with NewReader.
type Reader struct {
	db    *sql.DB
	d     Dialect
	clock clock.Clock
	// signal returns a channel closed at the next local commit, waking tails.
	signal func() <-chan struct{}
	// stop is closed when the store closes, ending tails.
	stop <-chan struct{}
	// poll, when positive, also wakes tails this often, for rows other
	// processes commit (PostgreSQL replicas).
	poll time.Duration
	// tailBelow, when set, bounds what log tails read (ReaderSettings.TailBelow).
	tailBelow string
}

// ReaderSettings configure NewReader.
type ReaderSettings struct {
	// Clock fills default query windows; nil means the wall clock.
	Clock clock.Clock
	// Committed returns a channel closed at the next commit of this process.
	Committed func() <-chan struct{}
	// Stop is closed when the store closes.
	Stop <-chan struct{}
	// Poll, when positive, makes log tails also look for new rows this often:
	// other processes' commits do not wake them.
	Poll time.Duration
	// TailBelow, when set, is an SQL expression of the seq log tails read
	// below, and start below: for a store whose writers commit rows out of
	// seq order, the lowest seq an open writer may still commit, evaluated in
	// the statement's snapshot. Empty means rows commit in seq order.
	TailBelow string
}

// NewReader returns a Reader over db in dialect d.
func NewReader(db *sql.DB, d Dialect, set ReaderSettings) *Reader {
	return &Reader{db: db, d: d, clock: clock.Or(set.Clock), signal: set.Committed, stop: set.Stop, poll: set.Poll,
		tailBelow: set.TailBelow}
}

// bind rewrites ? placeholders as PostgreSQL's $1, $2, …; the store's queries
// hold no ? other than placeholders.
func (s *Reader) bind(q string) string {
	if s.d != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func (s *Reader) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.bind(q), args...)
}

func (s *Reader) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.bind(q), args...)
}

// firstLogSeq reads the log seq a tail starts after. PostgreSQL's log_rows
// has no btree on seq (a BRIN index serves the tail's range scans), so its
// sequence answers, lowered below TailBelow: a row an open writer numbered
// commits after the tail began, so the tail shows it. TailBelow is read in a
// statement of its own, after the sequence: a writer it misses records its
// floor after that statement began, so numbers its rows past the value read.
func (s *Reader) firstLogSeq(ctx context.Context) (int64, error) {
	var last int64
	q := "SELECT coalesce(max(seq), 0) FROM log_rows"
	if s.d == Postgres {
		q = "SELECT coalesce(pg_sequence_last_value('log_seq'), 0)"
	}
	if err := s.queryRow(ctx, q).Scan(&last); err != nil {
		return 0, err
	}
	if s.tailBelow == "" {
		return last, nil
	}
	err := s.queryRow(ctx, "SELECT least(?, "+s.tailBelow+" - 1)", last).Scan(&last)
	return last, err
}

// epoch is the Unix time in seconds of a timestamp column, as a float64.
// PostgreSQL's extract returns numeric, whose arithmetic made a fleet-wide
// rollup RED a third slower than date_part's double precision.
func (s *Reader) epoch(col string) string {
	if s.d == Postgres {
		return "date_part('epoch', " + col + ")"
	}
	return "epoch(" + col + ")"
}

// double casts to a float64 column.
func (s *Reader) double() string {
	if s.d == Postgres {
		return "::double precision"
	}
	return "::DOUBLE"
}

// quantile is the continuous q-quantile of col over a group.
func (s *Reader) quantile(col, q string) string {
	if s.d == Postgres {
		return "percentile_cont(" + q + ") WITHIN GROUP (ORDER BY " + col + ")"
	}
	return "quantile_cont(" + col + ", " + q + ")"
}

// argMax is expr of the row with the greatest order (a column list), among the
// group's rows filter keeps ("" for all).
func (s *Reader) argMax(expr, order, filter string) string {
	f := ""
	if filter != "" {
		f = " FILTER (WHERE " + filter + ")"
	}
	if s.d == Postgres {
		by := strings.ReplaceAll(order, ",", " DESC,") + " DESC"
		return "(array_agg(" + expr + " ORDER BY " + by + ")" + f + ")[1]"
	}
	if strings.Contains(order, ",") {
		order = "(" + order + ")"
	}
	return "arg_max(" + expr + ", " + order + ")" + f
}

// contains tests whether the text column holds a ? argument.
func (s *Reader) contains(col string) string {
	if s.d == Postgres {
		return "strpos(" + col + ", ?) > 0"
	}
	return "contains(" + col + ", ?)"
}

// jsonGet is the string at a ? key argument (see jsonKey) of a JSON text column.
func (s *Reader) jsonGet(col string) string {
	if s.d == Postgres {
		return "(" + col + "::jsonb ->> ?)"
	}
	return "json_extract_string(" + col + ", ?)"
}

// jsonKey is the argument jsonGet takes for an attribute key: DuckDB's JSON
// path, quoted so a dotted key is one key; PostgreSQL's ->> takes the key.
func (s *Reader) jsonKey(k string) any {
	if s.d == Postgres {
		return k
	}
	return jsonPath(k)
}
