package telstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/periscope-dev/periscope/internal/telemetry"
)

// pending is one batch waiting for its group commit.
type pending struct {
	rows *rows
	done chan error
}

// Consume implements ingest.Sink: the batch is stored (and rolled up) when it
// returns nil. It waits for the group commit that includes the batch, so an
// acknowledged batch is on disk; an error means nothing of it was stored and the
// sender should retry.
func (s *Store) Consume(ctx context.Context, b telemetry.Batch) error {
	r, err := convert(b)
	if err != nil {
		return fmt.Errorf("telemetry store: %w", err)
	}
	if r.count() == 0 {
		return nil
	}
	p := &pending{rows: r, done: make(chan error, 1)}
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.senders.Add(1)
	}
	s.mu.Unlock()
	if closing {
		return ErrClosed
	}
	select {
	case s.in <- p:
		s.senders.Done()
	case <-ctx.Done():
		s.senders.Done()
		return ctx.Err()
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
}

const (
	tLogs = iota
	tSpans
	tPoints
)

var tableNames = [3]string{"logs", "spans", "metric_points"}

func newWriter(ctx context.Context, s *Store) (*writer, error) {
	w := &writer{s: s, acc: rollup{}, turn: make(chan struct{})}
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
	for i, t := range tableNames {
		if err := w.rollup.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM "+t).Scan(&w.seq[i]); err != nil {
			w.close()
			return nil, fmt.Errorf("read last %s seq: %w", t, err)
		}
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
	rs, err := conn.QueryContext(ctx, `SELECT start, duration_ns, status, `+ctxList("")+` FROM spans WHERE seq > ? AND entry`, from)
	if err != nil {
		return err
	}
	defer rs.Close()
	n := 0
	for rs.Next() {
		var r spanRow
		dest := []any{&r.start, &r.durationNS, &r.status}
		for i := range r.ctx {
			dest = append(dest, &r.ctx[i])
		}
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
			for {
				select {
				case p := <-w.s.in:
					w.commit(ctx, conn, w.gather(p))
				case <-w.s.stop:
					// Consume no longer sends once stop is closed; take what is queued.
					for {
						select {
						case p := <-w.s.in:
							w.commit(ctx, conn, w.gather(p))
							continue
						default:
						}
						return
					}
				}
			}
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

// gather takes p and whatever else is queued, up to MaxBatchRows, for one commit.
func (w *writer) gather(p *pending) []*pending {
	ps := []*pending{p}
	n := p.rows.count()
	for n < w.s.set.MaxBatchRows {
		select {
		case q := <-w.s.in:
			ps = append(ps, q)
			n += q.rows.count()
			continue
		default:
		}
		break
	}
	return ps
}

func (w *writer) commit(ctx context.Context, conn *sql.Conn, ps []*pending) {
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
	err := w.tx(ctx, conn, func(dc driver.Conn) error { return appendRows(dc, ps, &seq) },
		func() { <-prev })
	if err != nil {
		w.s.m.failures.Inc()
		w.s.log.Error("could not store telemetry; the senders will retry", "batches", len(ps), "error", err)
		err = fmt.Errorf("telemetry store: %w", err)
	} else {
		for i := range n {
			w.s.m.rows.WithLabelValues(tableNames[i]).Add(float64(n[i]))
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
		w.s.m.commits.Inc()
		w.s.m.commitSec.Observe(time.Since(start).Seconds())
	}
	for _, p := range ps {
		p.done <- err
	}
	if err == nil {
		w.s.notifyCommit()
	}
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
		app, err := duckdb.NewAppender(dc, "", "", "logs")
		if err != nil {
			return err
		}
		for _, p := range ps {
			for i := range p.rows.logs {
				l := &p.rows.logs[i]
				seq[tLogs]++
				row = append(row[:0], seq[tLogs], l.ts.UTC())
				row = appendCtx(row, &l.ctx)
				row = append(row, l.severity, l.severityText, l.body,
					nullI64(l.traceHi, l.hasTrace), nullI64(l.traceLo, l.hasTrace), nullI64(l.spanID, l.hasSpan),
					nullStr(l.attrs), nullStr(l.resource))
				if err := app.AppendRow(row...); err != nil {
					app.Close()
					return fmt.Errorf("append log: %w", err)
				}
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("append logs: %w", err)
		}
	}
	if ns > 0 {
		app, err := duckdb.NewAppender(dc, "", "", "spans")
		if err != nil {
			return err
		}
		for _, p := range ps {
			for i := range p.rows.spans {
				s := &p.rows.spans[i]
				seq[tSpans]++
				row = append(row[:0], seq[tSpans], s.start.UTC(), s.durationNS, s.traceHi, s.traceLo, s.spanID,
					nullI64(s.parentID, s.hasParent), s.name, s.kind, s.status, nullStr(s.statusMessage), s.entry)
				row = appendCtx(row, &s.ctx)
				row = append(row, nullStr(s.attrs), nullStr(s.resource))
				if err := app.AppendRow(row...); err != nil {
					app.Close()
					return fmt.Errorf("append span: %w", err)
				}
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("append spans: %w", err)
		}
	}
	if np > 0 {
		app, err := duckdb.NewAppender(dc, "", "", "metric_points")
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
				row = append(row[:0], seq[tPoints], m.ts.UTC(), m.name, m.kind, m.unit, m.temporality, m.value, count, sum)
				row = appendCtx(row, &m.ctx)
				row = append(row, nullStr(m.attrs), nullStr(m.resource))
				if err := app.AppendRow(row...); err != nil {
					app.Close()
					return fmt.Errorf("append metric point: %w", err)
				}
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("append metric points: %w", err)
		}
	}
	return nil
}

func appendCtx(row []driver.Value, c *ctxCols) []driver.Value {
	for _, v := range c {
		row = append(row, v)
	}
	return row
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
	w.s.notifyCommit()
	return nil
}
