package pgtel

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
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

// partition is the time range of one partition of every table, [start, end).
// Its width is the PartitionWidth in force when it was made, which need not
// be today's: an operator may change the width.
type partition struct{ start, end time.Time }

// loadPartitions reads which partitions exist.
func (w *writer) loadPartitions(ctx context.Context) error {
	parts, err := w.partitions(ctx)
	if err != nil {
		return err
	}
	w.partMu.Lock()
	defer w.partMu.Unlock()
	for _, p := range parts {
		w.parts[p.start.Unix()] = true
	}
	return nil
}

// partitions lists the existing partitions, oldest first.
func (w *writer) partitions(ctx context.Context) ([]partition, error) {
	var out []partition
	err := pgx.BeginFunc(ctx, w.s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = readPartitions(ctx, tx)
		return err
	})
	return out, err
}

// boundRE reads a range partition's bound as pg_get_expr writes it.
var boundRE = regexp.MustCompile(`^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$`)

// readPartitions lists log_rows' partitions (every table has the same ones)
// with the bounds the catalog holds, oldest first. It sets tx's time zone and
// date style, so that the bounds read back in the layout parsed here.
func readPartitions(ctx context.Context, tx pgx.Tx) ([]partition, error) {
	if _, err := tx.Exec(ctx, `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'`); err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'log_rows'::regclass`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	bounds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var out []partition
	for _, b := range bounds {
		m := boundRE.FindStringSubmatch(b)
		if m == nil {
			continue // the default partition
		}
		start, err1 := time.Parse(boundLayout, m[1])
		end, err2 := time.Parse(boundLayout, m[2])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("list partitions: bound %q: %w", b, err)
		}
		out = append(out, partition{start.UTC(), end.UTC()})
	}
	slices.SortFunc(out, func(a, b partition) int { return a.start.Compare(b.start) })
	return out, nil
}

// boundLayout is a timestamptz as PostgreSQL writes it in UTC and ISO style.
const boundLayout = "2006-01-02 15:04:05-07"

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
		// A partition of another width (made before the width changed) may
		// cover part of this range: its rows go there, and this range stays
		// without a partition of its own (its other rows in the default one)
		// until that partition ages out.
		parts, err := readPartitions(ctx, tx)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if p.start.Before(end) && start.Before(p.end) && (!p.start.Equal(start) || !p.end.Equal(end)) {
				w.s.log.Info("a telemetry partition of another width covers part of this range; not creating it",
					"from", start, "to", end, "existing_from", p.start, "existing_to", p.end)
				return nil
			}
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
