package telstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// pending is one batch waiting for its group commit.
type pending struct {
	rows *rows
	done chan error
}

// Consume implements consumer.Sink: the batch is stored (and rolled up) when it
// returns nil. It waits for the group commit that includes the batch, so an
// acknowledged batch is on disk; an error means nothing of it was stored. The
// sender should retry, unless the error is of consumer.KindUnstorable: the batch
// fails identically however often it comes (it does not decode, or a constraint
// fails on it), and retrying it would hold up every batch behind it.
func (s *Store) Consume(ctx context.Context, b consumer.Batch) error {
	r, err := convert(b)
	if err != nil {
		s.m.Unstorable.Inc()
		return fmt.Errorf("telemetry store: %w: %w", consumer.Unstorable("the batch cannot be converted to rows"), err)
	}
	if r.count() == 0 {
		return nil
	}
	p := &pending{rows: r, done: make(chan error, 1)}
	if err := s.gate.Send(ctx, p); err != nil {
		return err
	}
	// Once queued the batch will be committed or refused within one commit, so
	// wait for that answer even if ctx ends: giving up here would tell the sender
	// to resend a batch that is stored anyway, and store it twice.
	return <-p.done
}

// writer appends batches on several connections at once and commits them in
// the order their rows were numbered. Appending (converting values into DuckDB
// vectors) is most of a write and runs in parallel; the commits, which write the
// log, go one at a time in seq order, so a reader never sees seq n+1 before n and
// a log tail asking for "everything after n" misses nothing.
type writer struct {
	s      *Store
	rollup *sql.Conn   // writes rollups, and reads at open
	conns  []*sql.Conn // one per appender

	// mu guards the seq reservations and the commit turn.
	mu   sync.Mutex
	seq  [3]int64      // last seq reserved in logs, spans, metric_points
	turn chan struct{} // closed when the latest reserved group has committed (or failed)

	// accMu guards the rollups accumulated since the last flush.
	accMu sync.Mutex
	acc   rollup
	// rolledSeq is the last span seq whose rollup is in acc or written.
	rolledSeq int64

	// resMu guards the stored resources: their ids by key, when each was last
	// used, and the last id given out.
	resMu   sync.Mutex
	res     map[string]*storedResource
	lastRes int64
}

// storedResource is a row of the resources table, as the writer knows it.
type storedResource struct {
	id   int64
	used time.Time // when a group last referred to it, so retention spares it
}

const (
	tLogs = iota
	tSpans
	tPoints
)

// tableNames name the tables in metrics and errors: the views queries read.
var tableNames = [3]string{"logs", "spans", "metric_points"}

// rowTables are the tables behind the views, where rows are appended.
var rowTables = [3]string{"log_rows", "span_rows", "metric_point_rows"}

func newWriter(ctx context.Context, s *Store) (*writer, error) {
	w := &writer{s: s, acc: rollup{}, turn: make(chan struct{}), res: map[string]*storedResource{}}
	close(w.turn)
	// A connection runs one transaction at a time, so rollups get their own.
	for range max(1, s.set.Writers) + 1 {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, conn)
	}
	w.rollup, w.conns = w.conns[0], w.conns[1:]
	for i, t := range rowTables {
		if err := w.rollup.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM "+t).Scan(&w.seq[i]); err != nil {
			w.close()
			return nil, fmt.Errorf("read last %s seq: %w", tableNames[i], err)
		}
	}
	if err := w.loadResources(ctx); err != nil {
		w.close()
		return nil, fmt.Errorf("read resources: %w", err)
	}
	// Retention may have deleted the newest-numbered spans; numbering must still
	// go on above what the rollups claim, or new spans would hide below it.
	var rolled int64
	if err := w.rollup.QueryRowContext(ctx, "SELECT span_seq FROM rollup_state WHERE id = 1").Scan(&rolled); err != nil {
		w.close()
		return nil, fmt.Errorf("read rollup position: %w", err)
	}
	w.seq[tSpans] = max(w.seq[tSpans], rolled)
	if err := w.recoverRollups(ctx); err != nil {
		w.close()
		return nil, fmt.Errorf("rebuild rollups: %w", err)
	}
	return w, nil
}

func (w *writer) close() {
	if w.rollup != nil {
		w.rollup.Close()
	}
	for _, c := range w.conns {
		c.Close()
	}
}

// recoverRollups rolls up the entry spans a crash left out of the rollups.
func (w *writer) recoverRollups(ctx context.Context) error {
	conn := w.rollup
	var from int64
	if err := conn.QueryRowContext(ctx, "SELECT span_seq FROM rollup_state WHERE id = 1").Scan(&from); err != nil {
		return err
	}
	w.rolledSeq = w.seq[tSpans]
	if from >= w.seq[tSpans] {
		return nil
	}
	rs, err := conn.QueryContext(ctx, `SELECT start, duration_ns, status, function, `+strings.Join(resourceColumns[:], ", ")+
		` FROM spans WHERE seq > ? AND entry`, from)
	if err != nil {
		return err
	}
	defer rs.Close()
	n := 0
	for rs.Next() {
		r := spanRow{res: &resource{}}
		dest := []any{&r.start, &r.durationNS, &r.status, &r.function}
		dest = append(dest, r.res.columns()...)
		if err := rs.Scan(dest...); err != nil {
			return err
		}
		r.entry = true
		w.acc.add(&r)
		n++
	}
	if err := rs.Err(); err != nil {
		return err
	}
	if err := w.flushRollup(ctx); err != nil {
		return err
	}
	w.s.log.Info("rebuilt rollups a crash left unwritten", "spans", n)
	return nil
}

// run starts one appender per connection and writes rollups every RollupEvery
// (and on Flush) until the store stops; then it commits what is queued and writes
// the last rollups.
func (w *writer) run() {
	defer w.close()
	ctx := context.Background()
	var workers sync.WaitGroup
	for _, conn := range w.conns {
		workers.Add(1)
		go func() {
			defer workers.Done()
			w.s.gate.Serve(func(ps []*pending) { w.commit(ctx, conn, ps) }, func(p *pending) int { return p.rows.count() }, w.s.set.MaxBatchRows)
		}()
	}
	t := time.NewTicker(w.s.set.RollupEvery)
	defer t.Stop()
	for {
		select {
		case done := <-w.s.flush:
			done <- w.flushRollup(ctx)
		case <-t.C:
			if err := w.flushRollup(ctx); err != nil {
				w.s.log.Error("could not write RED rollups; will retry", "error", err)
			}
		case <-w.s.stop:
			workers.Wait()
			if err := w.flushRollup(ctx); err != nil {
				w.s.log.Error("could not write RED rollups at close; they are rebuilt at the next start", "error", err)
			}
			return
		}
	}
}

// commit stores a group of batches in one transaction and answers each. When a
// batch makes the group fail for good, the batches are committed one by one, so
// only the ones at fault are refused.
func (w *writer) commit(ctx context.Context, conn *sql.Conn, ps []*pending) {
	err := w.commitGroup(ctx, conn, ps)
	if err != nil && len(ps) > 1 && consumer.KindOf(err) == consumer.KindUnstorable {
		w.s.log.Warn("a batch in a group commit cannot be stored; committing the group's batches one by one",
			"batches", len(ps), "error", err)
		for _, p := range ps {
			w.commit(ctx, conn, []*pending{p})
		}
		return
	}
	if consumer.KindOf(err) == consumer.KindUnstorable {
		w.s.m.Unstorable.Inc()
	}
	for _, p := range ps {
		p.done <- err
	}
	if err == nil {
		w.s.gate.NotifyCommit()
	}
}

// commitGroup stores a group of batches in one transaction, in its turn.
func (w *writer) commitGroup(ctx context.Context, conn *sql.Conn, ps []*pending) error {
	start := time.Now()
	var n [3]int64
	for _, p := range ps {
		n[tLogs], n[tSpans], n[tPoints] = n[tLogs]+int64(len(p.rows.logs)), n[tSpans]+int64(len(p.rows.spans)), n[tPoints]+int64(len(p.rows.points))
	}
	// Reserve this group's numbers and its place in the commit order.
	w.mu.Lock()
	first := w.seq
	for i := range w.seq {
		w.seq[i] += n[i]
	}
	prev, mine := w.turn, make(chan struct{})
	w.turn = mine
	w.mu.Unlock()
	defer close(mine)

	seq := first
	err := w.resolve(ctx, conn, ps)
	if err == nil {
		err = w.tx(ctx, conn, func(dc driver.Conn) error { return appendRows(dc, ps, &seq) },
			func() { <-prev })
	} else {
		<-prev
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
	} else {
		for i := range n {
			w.s.m.Rows.WithLabelValues(tableNames[i]).Add(float64(n[i]))
		}
		for _, p := range ps {
			w.s.m.fixedStrings.Add(float64(p.rows.fix.strings))
			for i, k := range p.rows.fixedRows {
				if k > 0 {
					w.s.m.fixedRows.WithLabelValues(tableNames[i]).Add(float64(k))
				}
			}
		}
		// Still this group's turn: rollups are added in seq order, so rolledSeq
		// never claims spans a slower group has not added yet.
		w.accMu.Lock()
		for _, p := range ps {
			for i := range p.rows.spans {
				w.acc.add(&p.rows.spans[i])
			}
		}
		w.rolledSeq = seq[tSpans]
		w.accMu.Unlock()
		w.s.m.Commits.Inc()
		w.s.m.CommitSec.Observe(time.Since(start).Seconds())
	}
	return err
}

// errBadValue marks a row the Appender would not take; unless DuckDB says why
// (say, out of memory), converting it fails the same way every time.
var errBadValue = errors.New("value refused")

// unstorable tells an error that will recur identically whenever the same rows
// are appended (a constraint or conversion failure) from one that may clear (a
// full disk, an I/O error, memory, a closed store), which the sender retries.
func unstorable(err error) bool {
	var de *duckdb.Error
	if !errors.As(err, &de) {
		// A value the driver could not convert, before DuckDB saw it.
		return errors.Is(err, errBadValue)
	}
	switch de.Type {
	case duckdb.ErrorTypeConstraint, duckdb.ErrorTypeConversion, duckdb.ErrorTypeInvalidInput,
		duckdb.ErrorTypeOutOfRange, duckdb.ErrorTypeMismatchType, duckdb.ErrorTypeInvalidType:
		return true
	case duckdb.ErrorTypeInvalid:
		// The Appender reports a failed flush without the "<type> Error:" prefix the
		// driver reads the type from ("Failed to append: NOT NULL constraint failed:
		// log_rows.body"), so read the message.
		for _, m := range []string{"constraint failed", "Constraint Error", "Conversion Error", "Could not convert",
			"Invalid Input Error", "Out of Range Error", "invalid Unicode"} {
			if strings.Contains(de.Msg, m) {
				return true
			}
		}
	}
	return false
}

// tx runs fn inside one transaction on conn; beforeCommit, when set, runs
// between fn and COMMIT (waiting for this group's turn).
func (w *writer) tx(ctx context.Context, conn *sql.Conn, fn func(driver.Conn) error, beforeCommit func()) error {
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		if beforeCommit != nil {
			beforeCommit()
		}
		return err
	}
	err := conn.Raw(func(dc any) error { return fn(dc.(driver.Conn)) })
	if beforeCommit != nil {
		beforeCommit()
	}
	if err == nil {
		_, err = conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
	}
	return err
}

func nullI64(v int64, ok bool) driver.Value {
	if !ok {
		return nil
	}
	return v
}

func nullStr(s string) driver.Value {
	if s == "" {
		return nil
	}
	return s
}

// appendRows appends every batch's rows, numbering them from seq.
func appendRows(dc driver.Conn, ps []*pending, seq *[3]int64) error {
	var nl, ns, np int
	for _, p := range ps {
		nl, ns, np = nl+len(p.rows.logs), ns+len(p.rows.spans), np+len(p.rows.points)
	}
	row := make([]driver.Value, 0, 32)
	if nl > 0 {
		app, err := duckdb.NewAppender(dc, "", "", rowTables[tLogs])
		if err != nil {
			return err
		}
		for _, p := range ps {
			for i := range p.rows.logs {
				l := &p.rows.logs[i]
				seq[tLogs]++
				row = append(row[:0], seq[tLogs], l.ts.UTC(), l.res.id, l.function, l.severity, l.severityText, l.body,
					nullI64(l.traceHi, l.hasTrace), nullI64(l.traceLo, l.hasTrace), nullI64(l.spanID, l.hasSpan),
					nullStr(l.attrs))
				if err := app.AppendRow(row...); err != nil {
					app.Close()
					return fmt.Errorf("append log: %w: %w", errBadValue, err)
				}
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("append logs: %w", err)
		}
	}
	if ns > 0 {
		app, err := duckdb.NewAppender(dc, "", "", rowTables[tSpans])
		if err != nil {
			return err
		}
		for _, p := range ps {
			for i := range p.rows.spans {
				s := &p.rows.spans[i]
				seq[tSpans]++
				row = append(row[:0], seq[tSpans], s.start.UTC(), s.durationNS, s.traceHi, s.traceLo, s.spanID,
					nullI64(s.parentID, s.hasParent), s.name, s.kind, s.status, nullStr(s.statusMessage), s.entry,
					s.res.id, s.function, nullStr(s.attrs), nullStr(s.events))
				if err := app.AppendRow(row...); err != nil {
					app.Close()
					return fmt.Errorf("append span: %w: %w", errBadValue, err)
				}
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("append spans: %w", err)
		}
	}
	if np > 0 {
		app, err := duckdb.NewAppender(dc, "", "", rowTables[tPoints])
		if err != nil {
			return err
		}
		for _, p := range ps {
			for i := range p.rows.points {
				m := &p.rows.points[i]
				seq[tPoints]++
				var count, sum driver.Value
				if m.hasCount {
					count, sum = m.count, m.sum
				}
				row = append(row[:0], seq[tPoints], m.ts.UTC(), m.name, m.kind, m.unit, m.temporality, m.value, count, sum,
					m.res.id, m.function, nullStr(m.attrs), nullStr(m.buckets))
				if err := app.AppendRow(row...); err != nil {
					app.Close()
					return fmt.Errorf("append metric point: %w: %w", errBadValue, err)
				}
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("append metric points: %w", err)
		}
	}
	return nil
}

// loadResources reads the stored resources' ids at open.
func (w *writer) loadResources(ctx context.Context) error {
	rs, err := w.rollup.QueryContext(ctx, "SELECT id, "+strings.Join(resourceColumns[:], ", ")+", coalesce(resource, '') FROM resources")
	if err != nil {
		return err
	}
	defer rs.Close()
	now := w.s.set.Clock.Now()
	for rs.Next() {
		var r resource
		dest := append([]any{&r.id}, r.columns()...)
		if err := rs.Scan(append(dest, &r.json)...); err != nil {
			return err
		}
		w.res[r.key()] = &storedResource{id: r.id, used: now}
		w.lastRes = max(w.lastRes, r.id)
	}
	return rs.Err()
}

// resolve gives every resource of the group its id, storing the ones not seen
// before in a transaction of their own that commits before the group's rows do,
// so a row never refers to a resource a reader cannot see. New resources are
// rare (a new deployment, release or replica); most groups only look ids up.
func (w *writer) resolve(ctx context.Context, conn *sql.Conn, ps []*pending) error {
	w.resMu.Lock()
	defer w.resMu.Unlock()
	now := w.s.set.Clock.Now()
	var fresh []*resource
	for _, p := range ps {
		for _, r := range p.rows.resources {
			k := r.key()
			if e, ok := w.res[k]; ok {
				r.id, e.used = e.id, now
				continue
			}
			w.lastRes++
			r.id = w.lastRes
			w.res[k] = &storedResource{id: r.id, used: now}
			fresh = append(fresh, r)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	err := w.tx(ctx, conn, func(dc driver.Conn) error {
		app, err := duckdb.NewAppender(dc, "", "", "resources")
		if err != nil {
			return err
		}
		row := make([]driver.Value, 0, nCtx+1)
		for _, r := range fresh {
			row = append(row[:0], r.id)
			for i, v := range r.ctx {
				if i != cFunction {
					row = append(row, v)
				}
			}
			if err := app.AppendRow(append(row, nullStr(r.json))...); err != nil {
				app.Close()
				return fmt.Errorf("append resource: %w: %w", errBadValue, err)
			}
		}
		return app.Close()
	}, nil)
	if err != nil {
		// Not stored: forget them, so the next group stores them again.
		for _, r := range fresh {
			delete(w.res, r.key())
		}
		return fmt.Errorf("store resources: %w", err)
	}
	return nil
}

// forget takes the ids of resources no row refers to and returns those that
// may be deleted: all but the ones a group used since usedBefore (in use again),
// which stay known. The rest are forgotten, so a later group that meets the same
// resource stores it anew.
func (w *writer) forget(ids []int64, usedBefore time.Time) []int64 {
	unused := make(map[int64]bool, len(ids))
	for _, id := range ids {
		unused[id] = true
	}
	w.resMu.Lock()
	defer w.resMu.Unlock()
	for k, e := range w.res {
		if !unused[e.id] {
			continue
		}
		if e.used.Before(usedBefore) {
			delete(w.res, k)
		} else {
			delete(unused, e.id)
		}
	}
	out := make([]int64, 0, len(unused))
	for _, id := range ids {
		if unused[id] {
			out = append(out, id)
		}
	}
	return out
}

// flushRollup writes the rollups accumulated so far, and how far they reach, in
// one transaction on the rollup connection; ingest goes on meanwhile into a fresh
// accumulation. On failure the taken rollups go back to be written next time.
// Only the run loop (and Open, before it) calls it, so rollup transactions never
// overlap on their connection.
func (w *writer) flushRollup(ctx context.Context) error {
	w.accMu.Lock()
	acc, upTo := w.acc, w.rolledSeq
	w.acc = rollup{}
	w.accMu.Unlock()
	if len(acc) == 0 {
		return nil
	}
	err := w.tx(ctx, w.rollup, func(dc driver.Conn) error {
		if err := acc.append(dc); err != nil {
			return err
		}
		_, err := dc.(driver.ExecerContext).ExecContext(ctx, "UPDATE rollup_state SET span_seq = ? WHERE id = 1",
			[]driver.NamedValue{{Ordinal: 1, Value: upTo}})
		return err
	}, nil)
	if err != nil {
		w.accMu.Lock()
		w.acc.merge(acc)
		w.accMu.Unlock()
		return err
	}
	w.s.gate.NotifyCommit()
	return nil
}
