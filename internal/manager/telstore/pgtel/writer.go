package pgtel

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// ingestLockKey is the advisory lock between writes and partition changes
// ("pgtel-in" in ASCII). Every replica's write transaction holds it shared, so
// writes run at once; a partition change or resource prune holds it alone
// (lockForDDL), so it never deadlocks with a write on the tables' locks.
const ingestLockKey int64 = 0x7067_74656c_2d696e

// logWatermark is the SQL expression a log tail reads below (see
// telstore.ReaderSettings.TailBelow): the lowest floor of the writers the
// statement's snapshot sees running, or the largest bigint when none is. A
// writer records its floor, committed, before it numbers any log row, and
// every row it numbers is above it (reserveLogSeq); so no row below the
// watermark can still commit, and a tail that never passes it misses nothing.
// A writer whose transaction ended (committed, rolled back, or its replica
// died) no longer holds the watermark back: its rows are visible or gone.
const logWatermark = `(SELECT coalesce(min(w.floor), 9223372036854775807) FROM log_writers w
	WHERE NOT pg_visible_in_snapshot(w.xid, pg_current_snapshot()))`

// pending is one batch waiting for its group commit.
type pending struct {
	b    consumer.Batch
	d    *telstore.Decoded
	rows int
	// res are the ids of d's resources, as resolve gave them.
	res  []int64
	done chan error
}

// Consume implements consumer.Sink: the batch is stored, with its rollups, when
// it returns nil; an error means nothing of it was stored. A batch whose
// stream mark says it was stored already (by this replica or another) returns
// nil, or consumer.AlreadyDelivered when only its first part was. The sender
// should retry any other error unless it is of consumer.KindUnstorable: the
// batch fails identically however often it comes.
func (s *Store) Consume(ctx context.Context, b consumer.Batch) error {
	d, err := telstore.Decode(b)
	if err != nil {
		s.m.Unstorable.Inc()
		return fmt.Errorf("telemetry store: %w: %w", consumer.Unstorable("the batch cannot be converted to rows"), err)
	}
	nl, ns, np := d.Counts()
	if nl+ns+np == 0 && b.Stream == "" {
		return nil
	}
	p := &pending{b: b, d: d, rows: nl + ns + np, done: make(chan error, 1)}
	if err := s.gate.Send(ctx, p); err != nil {
		return err
	}
	// Once queued the batch is committed or refused within one commit; giving up
	// here would tell the sender to resend a batch that may be stored anyway
	// (which its mark would catch, but only for batches with a stream).
	return <-p.done
}

// writer stores groups of batches.
type writer struct {
	s *Store

	// resMu guards res, the stored resources' ids by key, and marked, the
	// last_used mark this replica committed for each id (see markResources).
	resMu  sync.Mutex
	res    map[string]int64
	marked map[int64]time.Time

	// partMu guards parts, the partition start times known to exist.
	partMu sync.Mutex
	parts  map[int64]bool

	// beforeCommit, when set (by tests only), is called in each write
	// transaction once its rows, rollups and marks are written, before it
	// commits: a test holds a transaction open there.
	beforeCommit func()
}

func newWriter(s *Store) *writer {
	return &writer{s: s, res: map[string]int64{}, marked: map[int64]time.Time{}, parts: map[int64]bool{}}
}

// commit stores a group and answers each batch. When a batch makes the group
// fail for good, the batches are committed one by one, so only the ones at
// fault are refused.
func (w *writer) commit(ps []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.set.CommitTimeout)
	defer cancel()
	results, err := w.commitGroup(ctx, ps)
	if err != nil && len(ps) > 1 && consumer.KindOf(err) == consumer.KindUnstorable {
		w.s.log.Warn("a batch in a group commit cannot be stored; committing the group's batches one by one",
			"batches", len(ps), "error", err)
		for _, p := range ps {
			w.commit([]*pending{p})
		}
		return
	}
	if consumer.KindOf(err) == consumer.KindUnstorable {
		w.s.m.Unstorable.Inc()
	}
	for i, p := range ps {
		if err != nil {
			p.done <- err
		} else {
			p.done <- results[i]
		}
	}
	if err == nil {
		w.s.gate.NotifyCommit()
	}
}

// commitGroup stores a group of batches in one transaction and returns each
// batch's answer: nil, or consumer.AlreadyDelivered for one its stream mark
// covers in part.
func (w *writer) commitGroup(ctx context.Context, ps []*pending) ([]error, error) {
	start := time.Now()
	var results []error
	var n [3]int
	var err error
	// A resource retention pruned after this replica resolved it is resolved
	// again; a prune happens once per retention run, so a second miss in a row
	// is already unlikely, and the senders retry past a third. A transaction
	// PostgreSQL ended to break a deadlock is tried again the same way.
	for range maxResolves {
		err = w.resolve(ctx, ps)
		if err == nil {
			w.ensurePartitions(ctx, ps)
		}
		var marks map[int64]time.Time
		// The floor of a transaction's log numbers is recorded on a second
		// connection, taken before the transaction holds the shared ingest
		// lock: waiting for a pool connection while holding it could queue
		// every writer of every replica behind a partition change.
		var side *pgxpool.Conn
		if err == nil && hasLogs(ps) {
			side, err = w.s.pool.Acquire(ctx)
		}
		if err == nil {
			err = pgx.BeginFunc(ctx, w.s.pool, func(tx pgx.Tx) error {
				// Writers of every replica run at once; each takes the row
				// locks it needs (resources, marks, rollups) in one order, so
				// they never deadlock on them.
				if err := w.reserveLogSeq(ctx, tx, side, ps); err != nil {
					return err
				}
				var err error
				if marks, err = w.markResources(ctx, tx, ps); err != nil {
					return err
				}
				if results, n, err = w.store(ctx, tx, ps); err != nil {
					return err
				}
				if w.beforeCommit != nil {
					w.beforeCommit()
				}
				return nil
			})
		}
		if side != nil {
			side.Release()
		}
		if err == nil {
			w.marksCommitted(marks)
		}
		if !errors.Is(err, errPruned) && !deadlocked(err) {
			break
		}
	}
	if err != nil {
		w.s.m.Failures.Inc()
		if unstorable(err) {
			err = fmt.Errorf("telemetry store: %w: %w", consumer.Unstorable("the store refuses this batch for good"), err)
			if len(ps) == 1 {
				w.s.log.Error("could not store a batch, and never will; refusing it for good", "error", err)
			}
		} else {
			w.s.log.Error("could not store telemetry; the senders will retry", "batches", len(ps), "error", err)
			err = fmt.Errorf("telemetry store: %w", err)
		}
		return nil, err
	}
	for i, t := range []string{"logs", "spans", "metric_points"} {
		w.s.m.Rows.WithLabelValues(t).Add(float64(n[i]))
	}
	w.s.m.Commits.Inc()
	w.s.m.CommitSec.Observe(time.Since(start).Seconds())
	return results, nil
}

// reserveLogSeq takes the ingest lock shared in tx and, when the group has
// log records, records tx's floor for log tails (logWatermark): a log_seq
// value taken before any of tx's rows are numbered, with tx's id, written and
// committed by another session before this returns, so a tail that can see
// any row numbered after it sees the floor too. One row per writing session
// (its backend pid), overwritten by the session's next transaction: live
// sessions never share a pid, and a row left by a session that died names a
// transaction that ended.
func (w *writer) reserveLogSeq(ctx context.Context, tx pgx.Tx, side *pgxpool.Conn, ps []*pending) error {
	if side == nil || !hasLogs(ps) {
		_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, ingestLockKey)
		return err
	}
	var pid int32
	var xid string
	var floor int64
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid(), pg_current_xact_id()::text, nextval('log_seq')
		FROM (SELECT pg_advisory_xact_lock_shared($1)) l`, ingestLockKey).Scan(&pid, &xid, &floor); err != nil {
		return fmt.Errorf("reserve log numbers: %w", err)
	}
	// log_writers is unlogged, so this commit waits for no disk flush.
	if _, err := side.Exec(ctx, `INSERT INTO log_writers (pid, xid, floor) VALUES ($1, $2::xid8, $3)
		ON CONFLICT (pid) DO UPDATE SET xid = excluded.xid, floor = excluded.floor`, pid, xid, floor); err != nil {
		return fmt.Errorf("reserve log numbers: %w", err)
	}
	return nil
}

// hasLogs reports whether the group holds log records, whose numbers a
// transaction must reserve.
func hasLogs(ps []*pending) bool {
	for _, p := range ps {
		if nl, _, _ := p.d.Counts(); nl > 0 {
			return true
		}
	}
	return false
}

// store writes the group inside tx: it reads and locks the streams' marks, and
// stores the batches they do not cover.
func (w *writer) store(ctx context.Context, tx pgx.Tx, ps []*pending) ([]error, [3]int, error) {
	var n [3]int
	marks, err := lockMarks(ctx, tx, ps)
	if err != nil {
		return nil, n, err
	}
	results := make([]error, len(ps))
	keep := make([]*pending, 0, len(ps))
	advanced := map[string]int64{}
	for i, p := range ps {
		if p.b.Stream == "" {
			keep = append(keep, p)
			continue
		}
		mark, first, last := marks[p.b.Stream], clampSeq(p.b.First), clampSeq(p.b.Last)
		switch {
		case last <= mark:
			w.s.m.duplicates.Inc()
		case first <= mark:
			w.s.m.duplicates.Inc()
			results[i] = consumer.AlreadyDelivered(fmt.Sprintf("the telemetry store holds this queue up to %d already", mark), uint64(mark))
		default:
			keep = append(keep, p)
			marks[p.b.Stream], advanced[p.b.Stream] = last, last
		}
	}
	if n, err = copyRows(ctx, tx, keep); err != nil {
		return nil, n, err
	}
	r := telstore.NewRollup()
	for _, p := range keep {
		r.Add(p.d)
	}
	if err := upsertRollups(ctx, tx, r.Rows()); err != nil {
		return nil, n, err
	}
	if len(advanced) > 0 {
		streams, seqs := make([]string, 0, len(advanced)), make([]int64, 0, len(advanced))
		for st, v := range advanced {
			streams, seqs = append(streams, st), append(seqs, v)
		}
		if _, err := tx.Exec(ctx, `UPDATE stream_marks m SET last_seq = v.last_seq
			FROM unnest($1::text[], $2::bigint[]) AS v(stream, last_seq) WHERE m.stream = v.stream`, streams, seqs); err != nil {
			return nil, n, fmt.Errorf("advance stream marks: %w", err)
		}
	}
	return results, n, nil
}

// clampSeq is a queue sequence number as the bigint column holds it.
func clampSeq(v uint64) int64 { return int64(min(v, math.MaxInt64)) }

// lockMarks reads and locks the marks of the group's streams, creating the
// missing ones at 0.
func lockMarks(ctx context.Context, tx pgx.Tx, ps []*pending) (map[string]int64, error) {
	var streams []string
	for _, p := range ps {
		if p.b.Stream != "" {
			streams = append(streams, p.b.Stream)
		}
	}
	marks := map[string]int64{}
	if len(streams) == 0 {
		return marks, nil
	}
	slices.Sort(streams)
	streams = slices.Compact(streams)
	if _, err := tx.Exec(ctx, `INSERT INTO stream_marks (stream, last_seq) SELECT unnest($1::text[]), 0 ON CONFLICT DO NOTHING`, streams); err != nil {
		return nil, fmt.Errorf("create stream marks: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT stream, last_seq FROM stream_marks WHERE stream = ANY($1) ORDER BY stream FOR UPDATE`, streams)
	if err != nil {
		return nil, fmt.Errorf("lock stream marks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var v int64
		if err := rows.Scan(&st, &v); err != nil {
			return nil, err
		}
		marks[st] = v
	}
	return marks, rows.Err()
}

// copySource feeds COPY one table's rows of several batches.
type copySource struct {
	ps     []*pending
	count  func(*telstore.Decoded) int
	values func(d *telstore.Decoded, dst []any, i int) []any
	// fix adjusts a row's values to the column types (see fixValues).
	fix func([]any)
	// json are the indexes of the JSON columns.
	json   []int
	p, i   int
	row    []any
	copied int
}

func (c *copySource) Next() bool {
	for c.p < len(c.ps) {
		if c.i < c.count(c.ps[c.p].d) {
			c.row = c.values(c.ps[c.p].d, c.row[:0], c.i)
			fixValues(c.row, c.json)
			if c.fix != nil {
				c.fix(c.row)
			}
			c.i++
			c.copied++
			return true
		}
		c.p, c.i = c.p+1, 0
	}
	return false
}

func (c *copySource) Values() ([]any, error) { return c.row, nil }
func (c *copySource) Err() error             { return nil }

// fixValues makes values PostgreSQL takes: text cannot hold a NUL byte (which
// DuckDB and OTLP allow), so each becomes U+FFFD, as invalid UTF-8 does; nor
// can jsonb, which queries cast the JSON columns (at indexes json) to, hold an
// escaped one.
func fixValues(row []any, json []int) {
	for i, v := range row {
		if s, ok := v.(string); ok && strings.IndexByte(s, 0) >= 0 {
			row[i] = strings.ReplaceAll(s, "\x00", "\uFFFD")
		}
	}
	for _, i := range json {
		if s, ok := row[i].(string); ok && strings.Contains(s, `\u0000`) {
			row[i] = strings.ReplaceAll(s, `\u0000`, `\ufffd`)
		}
	}
}

// jsonColumns are the indexes of cols' JSON columns.
func jsonColumns(cols []string) []int {
	var out []int
	for i, c := range cols {
		if c == "attrs" || c == "events" || c == "resource" {
			out = append(out, i)
		}
	}
	return out
}

// countIndex is where PointValues puts count.
var countIndex = slices.Index(telstore.PointColumns, "count")

// copyRows copies the batches' logs, spans and metric points.
func copyRows(ctx context.Context, tx pgx.Tx, ps []*pending) ([3]int, error) {
	var n [3]int
	tables := []struct {
		name   string
		cols   []string
		count  func(*telstore.Decoded) int
		values func(d *telstore.Decoded, dst []any, i int) []any
		fix    func([]any)
	}{
		{"log_rows", telstore.LogColumns, func(d *telstore.Decoded) int { l, _, _ := d.Counts(); return l }, (*telstore.Decoded).LogValues, nil},
		{"span_rows", telstore.SpanColumns, func(d *telstore.Decoded) int { _, s, _ := d.Counts(); return s }, (*telstore.Decoded).SpanValues, nil},
		{"metric_point_rows", telstore.PointColumns, func(d *telstore.Decoded) int { _, _, p := d.Counts(); return p }, (*telstore.Decoded).PointValues,
			func(row []any) {
				// A count past bigint (only a hostile sender's) is kept at its maximum.
				if c, ok := row[countIndex].(uint64); ok {
					row[countIndex] = int64(min(c, math.MaxInt64))
				}
			}},
	}
	for i, t := range tables {
		total := 0
		for _, p := range ps {
			total += t.count(p.d)
		}
		if total == 0 {
			continue
		}
		src := &copySource{ps: ps, count: t.count, values: t.values, fix: t.fix, json: jsonColumns(t.cols), row: make([]any, 0, len(t.cols))}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, t.cols, src); err != nil {
			return n, fmt.Errorf("copy %s: %w", t.name, err)
		}
		n[i] = src.copied
	}
	return n, nil
}

// upsertRollups adds the group's RED figures to the per-minute rows.
func upsertRollups(ctx context.Context, tx pgx.Tx, rows []telstore.RollupRow) error {
	if len(rows) == 0 {
		return nil
	}
	// Every writer upserts its rows in this one order, so two writers whose
	// groups share minutes and contexts wait for each other, never deadlock.
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b telstore.RollupRow) int {
		if c := a.Minute.Compare(b.Minute); c != 0 {
			return c
		}
		return slices.Compare(a.Context[:], b.Context[:])
	})
	nc := len(telstore.RollupColumns)
	minutes := make([]time.Time, 0, len(rows))
	ctxs := make([][]string, nc)
	var req, errs []int64
	var dur []float64
	var hMin []time.Time
	hCtx := make([][]string, nc)
	var hBucket []int16
	var hN []int64
	for _, r := range rows {
		minutes, req, errs, dur = append(minutes, r.Minute), append(req, r.Requests), append(errs, r.Errors), append(dur, r.DurationNS)
		for c := range nc {
			ctxs[c] = append(ctxs[c], r.Context[c])
		}
		for j, b := range r.Buckets {
			hMin, hBucket, hN = append(hMin, r.Minute), append(hBucket, int16(b)), append(hN, r.Counts[j])
			for c := range nc {
				hCtx[c] = append(hCtx[c], r.Context[c])
			}
		}
	}
	cols := strings.Join(telstore.RollupColumns, ", ")
	unnest := func(extra string) string {
		var b strings.Builder
		b.WriteString("unnest($1::timestamptz[]")
		for c := range nc {
			fmt.Fprintf(&b, ", $%d::text[]", c+2)
		}
		return b.String() + extra + ")"
	}
	args := []any{minutes}
	for _, c := range ctxs {
		args = append(args, c)
	}
	args = append(args, req, errs, dur)
	q := fmt.Sprintf(`INSERT INTO red_minute (minute, %s, requests, errors, duration_ns) SELECT * FROM %s
		ON CONFLICT (minute, %s) DO UPDATE SET requests = red_minute.requests + excluded.requests,
		errors = red_minute.errors + excluded.errors, duration_ns = red_minute.duration_ns + excluded.duration_ns`,
		cols, unnest(fmt.Sprintf(", $%d::bigint[], $%d::bigint[], $%d::double precision[]", nc+2, nc+3, nc+4)), cols)
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("write RED rollups: %w", err)
	}
	args = []any{hMin}
	for _, c := range hCtx {
		args = append(args, c)
	}
	args = append(args, hBucket, hN)
	q = fmt.Sprintf(`INSERT INTO red_hist (minute, %s, bucket, n) SELECT * FROM %s
		ON CONFLICT (minute, %s, bucket) DO UPDATE SET n = red_hist.n + excluded.n`,
		cols, unnest(fmt.Sprintf(", $%d::smallint[], $%d::bigint[]", nc+2, nc+3)), cols)
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("write latency rollups: %w", err)
	}
	return nil
}

// maxResolves bounds the times one group commit resolves its resources and
// tries its transaction.
const maxResolves = 3

// errPruned is a group's write finding that retention deleted a resource the
// writer knew; the writer forgets every id it knew and resolves again.
var errPruned = errors.New("a resource was pruned meanwhile")

// markStep is the precision of a resource's last_used mark: a mark is a row
// time truncated to it. It is fixed, not the partition width, so that a
// changed width never makes an old mark claim less than it did.
const markStep = time.Hour

// markResources moves the last_used mark of every resource the group refers
// to up to the markStep start of the latest row time in its batches, in tx,
// which stores the rows. Retention deletes only resources whose mark is a
// whole step before its cutoff, so a kept row's resource is never deleted:
// the mark and the rows commit together, and the row lock the update takes
// orders it with retention's delete. An id whose row is gone was pruned since
// resolve (errPruned). A resource this replica marked at or past the group's
// time already needs no write: its stored mark is at least that.
func (w *writer) markResources(ctx context.Context, tx pgx.Tx, ps []*pending) (map[int64]time.Time, error) {
	want := map[int64]time.Time{}
	for _, p := range ps {
		var latest time.Time
		p.d.Times(func(t time.Time) {
			if t.After(latest) {
				latest = t
			}
		})
		if latest.IsZero() {
			continue
		}
		latest = latest.UTC().Truncate(markStep)
		for _, id := range p.res {
			if latest.After(want[id]) {
				want[id] = latest
			}
		}
	}
	w.resMu.Lock()
	for id, t := range want {
		if m, ok := w.marked[id]; ok && !m.Before(t) {
			delete(want, id)
		}
	}
	w.resMu.Unlock()
	if len(want) == 0 {
		return nil, nil
	}
	ids := slices.Sorted(maps.Keys(want))
	times := make([]time.Time, len(ids))
	for i, id := range ids {
		times[i] = want[id]
	}
	// The rows are locked in id order first, as every writer does, so writers
	// marking the same resources never deadlock.
	rows, err := tx.Query(ctx, `WITH locked AS (SELECT id FROM resources WHERE id = ANY($1) ORDER BY id FOR UPDATE)
		UPDATE resources r SET last_used = greatest(r.last_used, v.t)
		FROM unnest($1::bigint[], $2::timestamptz[]) AS v(id, t), locked WHERE r.id = v.id AND locked.id = v.id RETURNING r.id`, ids, times)
	if err != nil {
		return nil, fmt.Errorf("mark resources used: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("mark resources used: %w", err)
	}
	if len(found) < len(want) {
		w.resMu.Lock()
		clear(w.res)
		clear(w.marked)
		w.resMu.Unlock()
		return nil, errPruned
	}
	return want, nil
}

// marksCommitted records the marks of a committed group.
func (w *writer) marksCommitted(marks map[int64]time.Time) {
	w.resMu.Lock()
	defer w.resMu.Unlock()
	for id, t := range marks {
		if t.After(w.marked[id]) {
			w.marked[id] = t
		}
	}
}

// resolve gives every resource of the group its id, storing the ones no
// replica stored before in a transaction that commits before the group's rows
// do. New resources are rare (a new deployment, release or replica); most
// groups only look ids up in memory.
func (w *writer) resolve(ctx context.Context, ps []*pending) error {
	w.resMu.Lock()
	defer w.resMu.Unlock()
	type fresh struct {
		p   *pending
		i   int
		key string
	}
	var news []fresh
	for _, p := range ps {
		p.res = p.res[:0]
		for i := range p.d.Resources() {
			k := p.d.ResourceKey(i)
			if id, ok := w.res[k]; ok {
				p.d.SetResourceID(i, id)
				p.res = append(p.res, id)
				continue
			}
			news = append(news, fresh{p, i, k})
		}
	}
	if len(news) == 0 {
		return nil
	}
	cols := strings.Join(telstore.ResourceColumns, ", ")
	ph := make([]string, len(telstore.ResourceColumns))
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", i+2)
	}
	// Taking no lock: two replicas inserting the same key meet on its unique
	// index, and the second gets the first's id.
	q := `INSERT INTO resources (key, ` + cols + `) VALUES ($1, ` + strings.Join(ph, ", ") + `)
		ON CONFLICT (key) DO UPDATE SET key = excluded.key RETURNING id`
	got := map[string]int64{}
	err := pgx.BeginFunc(ctx, w.s.pool, func(tx pgx.Tx) error {
		for _, f := range news {
			id, ok := got[f.key]
			if !ok {
				sum := sha256.Sum256([]byte(f.key))
				vals := f.p.d.ResourceValues([]any{sum[:]}, f.i)
				fixValues(vals, jsonColumns(append([]string{"key"}, telstore.ResourceColumns...)))
				if err := tx.QueryRow(ctx, q, vals...).Scan(&id); err != nil {
					return fmt.Errorf("store resources: %w", err)
				}
				got[f.key] = id
			}
			f.p.d.SetResourceID(f.i, id)
			f.p.res = append(f.p.res, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Known once committed; a failed transaction leaves them unknown.
	for k, id := range got {
		w.res[k] = id
	}
	return nil
}

// deadlocked tells a transaction PostgreSQL ended to break a deadlock, which
// a write retries. Writers lock rows in one order, so only a lock taken
// outside them (an operator's statement, say) can cause one.
func deadlocked(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}

// unstorable tells an error that recurs whenever the same rows are stored (a
// value or constraint the server refuses) from one that may clear (a lost
// connection, a full disk, a read-only server), which the sender retries.
func unstorable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23") || pe.Code == "54000"
}
