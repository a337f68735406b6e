package telstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
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
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The commit may still happen; the sender retries and ingest's batch ids
		// drop the duplicate upstream of the store only if it was recorded, so a
		// cancelled wait can store a batch twice. Cancellation here means the
		// client went away, which ingest treats as not acknowledged.
		return ctx.Err()
	}
}

// writer owns the one connection that appends.
type writer struct {
	s    *Store
	conn *sql.Conn
	seq  [3]int64 // last seq of logs, spans, metric_points
	acc  rollup
	// rolledSeq is the last span seq the accumulator holds.
	rolledSeq int64
}

const (
	tLogs = iota
	tSpans
	tPoints
)

var tableNames = [3]string{"logs", "spans", "metric_points"}

func newWriter(ctx context.Context, s *Store) (*writer, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	w := &writer{s: s, conn: conn, acc: rollup{}}
	for i, t := range tableNames {
		if err := conn.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM "+t).Scan(&w.seq[i]); err != nil {
			conn.Close()
			return nil, fmt.Errorf("read last %s seq: %w", t, err)
		}
	}
	if err := w.recoverRollups(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rebuild rollups: %w", err)
	}
	return w, nil
}

// recoverRollups rolls up the entry spans a crash left out of the rollups.
func (w *writer) recoverRollups(ctx context.Context) error {
	var from int64
	if err := w.conn.QueryRowContext(ctx, "SELECT span_seq FROM rollup_state WHERE id = 1").Scan(&from); err != nil {
		return err
	}
	if from >= w.seq[tSpans] {
		w.rolledSeq = w.seq[tSpans]
		return nil
	}
	rs, err := w.conn.QueryContext(ctx, `SELECT start, duration_ns, status, `+ctxList("")+` FROM spans WHERE seq > ? AND entry`, from)
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
	w.rolledSeq = w.seq[tSpans]
	if err := w.flushRollup(ctx); err != nil {
		return err
	}
	w.s.log.Info("rebuilt rollups a crash left unwritten", "spans", n)
	return nil
}

func (w *writer) run() {
	defer w.conn.Close()
	t := time.NewTicker(w.s.set.RollupEvery)
	defer t.Stop()
	ctx := context.Background()
	for {
		select {
		case p := <-w.s.in:
			w.commit(ctx, w.gather(p))
		case done := <-w.s.flush:
			done <- w.flushRollup(ctx)
		case <-t.C:
			if err := w.flushRollup(ctx); err != nil {
				w.s.log.Error("could not write RED rollups; will retry", "error", err)
			}
		case <-w.s.stop:
			// Consume no longer sends once stop is closed; take what is queued.
			for {
				select {
				case p := <-w.s.in:
					w.commit(ctx, w.gather(p))
					continue
				default:
				}
				break
			}
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

func (w *writer) commit(ctx context.Context, ps []*pending) {
	start := time.Now()
	seq := w.seq
	err := w.tx(ctx, func(dc driver.Conn) error { return appendRows(dc, ps, &seq) })
	if err != nil {
		w.s.m.failures.Inc()
		w.s.log.Error("could not store telemetry; the senders will retry", "batches", len(ps), "error", err)
		err = fmt.Errorf("telemetry store: %w", err)
	} else {
		for i := range seq {
			w.s.m.rows.WithLabelValues(tableNames[i]).Add(float64(seq[i] - w.seq[i]))
		}
		w.seq = seq
		for _, p := range ps {
			for i := range p.rows.spans {
				w.acc.add(&p.rows.spans[i])
			}
		}
		w.rolledSeq = seq[tSpans]
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

// tx runs fn inside one transaction on the writer's connection.
func (w *writer) tx(ctx context.Context, fn func(driver.Conn) error) error {
	if _, err := w.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return err
	}
	err := w.conn.Raw(func(dc any) error { return fn(dc.(driver.Conn)) })
	if err == nil {
		_, err = w.conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		_, _ = w.conn.ExecContext(ctx, "ROLLBACK")
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

// flushRollup writes the accumulated rollups and how far they reach in one
// transaction, then starts a new accumulation.
func (w *writer) flushRollup(ctx context.Context) error {
	if len(w.acc) == 0 {
		return nil
	}
	err := w.tx(ctx, func(dc driver.Conn) error {
		if err := w.acc.append(dc); err != nil {
			return err
		}
		_, err := dc.(driver.ExecerContext).ExecContext(ctx, "UPDATE rollup_state SET span_seq = ? WHERE id = 1",
			[]driver.NamedValue{{Ordinal: 1, Value: w.rolledSeq}})
		return err
	})
	if err != nil {
		return err
	}
	w.acc = rollup{}
	w.s.notifyCommit()
	return nil
}
