package pgtel

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// partTables are the partitioned tables and their time columns. A partition
// start exists for all of them or none: they are created and dropped together.
var partTables = []struct{ table, col string }{
	{"log_rows", "ts"}, {"span_rows", "start"}, {"metric_point_rows", "ts"}, {"red_minute", "minute"}, {"red_hist", "minute"},
}

// partLayout names a partition after its start, e.g. log_rows_p20261206t00.
const partLayout = "20060102t15"

func partName(table string, start time.Time) string {
	return table + "_p" + start.UTC().Format(partLayout)
}

// loadPartitions reads which partitions exist.
func (w *writer) loadPartitions(ctx context.Context) error {
	starts, err := w.partitions(ctx)
	if err != nil {
		return err
	}
	w.partMu.Lock()
	defer w.partMu.Unlock()
	for _, s := range starts {
		w.parts[s.Unix()] = true
	}
	return nil
}

// partitions lists the starts of the existing partitions, oldest first.
func (w *writer) partitions(ctx context.Context) ([]time.Time, error) {
	rows, err := w.s.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'log_rows'::regclass`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var out []time.Time
	for _, n := range names {
		s, ok := strings.CutPrefix(n, "log_rows_p")
		if !ok {
			continue // the default partition
		}
		t, err := time.Parse(partLayout, s)
		if err != nil {
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, time.Time.Compare)
	return out, nil
}

// ensurePartitions creates the partitions the group's rows fall in, and the
// current and next ones, when missing; a failure only leaves rows in the
// default partitions a while longer. Rows older than retention keeps, or
// more than a partition ahead of now, go to the default partitions rather than
// make a partition each: any sender may stamp records at any time.
func (w *writer) ensurePartitions(ctx context.Context, ps []*pending) {
	width := w.s.set.PartitionWidth
	now := w.s.set.Clock.Now().UTC()
	lo, hi := now.Add(-w.s.set.MaxAge).Truncate(width), now.Truncate(width).Add(width)
	w.partMu.Lock()
	need := map[int64]bool{}
	for _, t := range []time.Time{now.Truncate(width), hi} {
		if !w.parts[t.Unix()] {
			need[t.Unix()] = true
		}
	}
	for _, p := range ps {
		p.d.Times(func(t time.Time) {
			s := t.UTC().Truncate(width)
			if !s.Before(lo) && !s.After(hi) && !w.parts[s.Unix()] {
				need[s.Unix()] = true
			}
		})
	}
	w.partMu.Unlock()
	for s := range need {
		if err := w.createPartition(ctx, time.Unix(s, 0).UTC()); err != nil {
			// The rows go to the default partition meanwhile and move into theirs
			// when a later group creates it.
			w.s.log.Warn("could not create a telemetry partition; will retry", "error", err)
			return
		}
	}
}

// createPartition creates the partitions of every table starting at start,
// moving into them the rows the default partitions hold for their range. It
// holds the ingest lock, so no write transaction runs meanwhile, and skips a
// partition another replica created first.
func (w *writer) createPartition(ctx context.Context, start time.Time) error {
	end := start.Add(w.s.set.PartitionWidth)
	lit := func(t time.Time) string { return "'" + t.UTC().Format("2006-01-02 15:04:05") + "+00'" }
	err := pgx.BeginFunc(ctx, w.s.pool, func(tx pgx.Tx) error {
		if err := lockForDDL(ctx, tx); err != nil {
			return err
		}
		for _, pt := range partTables {
			name := partName(pt.table, start)
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			stmts := []string{
				fmt.Sprintf(`CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS)`, name, pt.table),
				fmt.Sprintf(`WITH moved AS (DELETE FROM %s_default WHERE %s >= %s AND %s < %s RETURNING *) INSERT INTO %s SELECT * FROM moved`,
					pt.table, pt.col, lit(start), pt.col, lit(end), name),
				fmt.Sprintf(`ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)`, pt.table, name, lit(start), lit(end)),
			}
			for _, q := range stmts {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create the partitions from %s: %w", start.Format(time.RFC3339), err)
	}
	w.partMu.Lock()
	w.parts[start.Unix()] = true
	w.partMu.Unlock()
	return nil
}

// lockForDDL prepares tx for changing partitions. It takes the ingest lock
// first: attaching and dropping a partition lock its parent and the default
// partition, and a write transaction, which locks them in turn, must not
// deadlock with it. Those locks wait for running queries, and ingest waits
// behind them, so a change that cannot have its locks within seconds gives up
// and is tried again later.
func lockForDDL(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, ingestLockKey); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '5s'`)
	return err
}

// dropPartition drops the partitions of every table starting at start.
func (w *writer) dropPartition(ctx context.Context, start time.Time) error {
	err := pgx.BeginFunc(ctx, w.s.pool, func(tx pgx.Tx) error {
		if err := lockForDDL(ctx, tx); err != nil {
			return err
		}
		for _, pt := range partTables {
			if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+partName(pt.table, start)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop the partitions from %s: %w", start.Format(time.RFC3339), err)
	}
	w.partMu.Lock()
	delete(w.parts, start.Unix())
	w.partMu.Unlock()
	return nil
}
