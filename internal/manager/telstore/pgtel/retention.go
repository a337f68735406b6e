package pgtel

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// UsedBytes returns how many bytes the telemetry tables use on disk, their
// indexes included.
func (s *Store) UsedBytes(ctx context.Context) (int64, error) {
	var used int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM (
		SELECT relid FROM pg_partition_tree('log_rows') UNION ALL SELECT relid FROM pg_partition_tree('span_rows')
		UNION ALL SELECT relid FROM pg_partition_tree('metric_point_rows') UNION ALL SELECT relid FROM pg_partition_tree('red_minute')
		UNION ALL SELECT relid FROM pg_partition_tree('red_hist')) t`).Scan(&used)
	if err != nil {
		return 0, fmt.Errorf("measure the telemetry tables: %w", err)
	}
	return used, nil
}

// Retain enforces retention once: partitions wholly older than MaxAge are
// dropped and older rows deleted from the partition MaxAge cuts (and from the
// default partitions); then, while the tables use more than MaxBytes, the
// oldest partitions are dropped, never the current one. Resources no kept row
// can refer to any more are deleted (pruneResources). Replicas may run it at
// once: each step holds the ingest lock and is idempotent.
func (s *Store) Retain(ctx context.Context) error {
	now := s.set.Clock.Now().UTC()
	cutoff := now.Add(-s.set.MaxAge)
	parts, err := s.w.partitions(ctx)
	if err != nil {
		return err
	}
	var kept []partition
	for _, p := range parts {
		if !p.end.After(cutoff) {
			if err := s.w.dropPartition(ctx, p.start); err != nil {
				return err
			}
			s.m.dropped.WithLabelValues("age").Inc()
			continue
		}
		kept = append(kept, p)
	}
	for _, pt := range partTables {
		if _, err := s.pool.Exec(ctx, "DELETE FROM "+pt.table+" WHERE "+pt.col+" < $1", cutoff); err != nil {
			return fmt.Errorf("retention on %s: %w", pt.table, err)
		}
	}
	if err := s.pruneResources(ctx, cutoff); err != nil {
		return err
	}
	// Floors of ended transactions hold no tail back (logWatermark); these
	// are the ones of sessions that closed, or died, after their last write.
	if _, err := s.pool.Exec(ctx, `DELETE FROM log_writers WHERE pg_visible_in_snapshot(xid, pg_current_snapshot())`); err != nil {
		return fmt.Errorf("retention on log_writers: %w", err)
	}
	for {
		used, err := s.UsedBytes(ctx)
		if err != nil {
			return err
		}
		s.m.UsedBytes.Set(float64(used))
		// Never the partition now falls in, nor one ahead of it.
		if used <= s.set.MaxBytes || len(kept) == 0 || kept[0].end.After(now) {
			return nil
		}
		if err := s.w.dropPartition(ctx, kept[0].start); err != nil {
			return err
		}
		s.m.dropped.WithLabelValues("size").Inc()
		kept = kept[1:]
	}
}

// pruneResources deletes the resources whose last_used mark is a whole
// markStep before cutoff: every row that refers to one is older than
// cutoff, so Retain has deleted it. A writer marks its resources, holding the
// ingest lock shared, in the transaction that stores the rows; holding the
// lock alone here, the delete never runs between a writer's mark and its rows, and a
// writer that still knows a deleted resource's id finds its mark gone and
// resolves the resource again.
func (s *Store) pruneResources(ctx context.Context, cutoff time.Time) error {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockForDDL(ctx, tx); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM resources WHERE last_used <= $1`, cutoff.Add(-markStep))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("prune resources: %w", err)
	}
	s.m.prunedResources.Add(float64(n))
	if n > 0 && s.w != nil {
		// The writer's caches would otherwise keep every resource ever
		// seen, growing with pod churn after the rows are gone; a resource
		// still in use is resolved and marked again at its next write.
		s.w.resMu.Lock()
		clear(s.w.res)
		clear(s.w.marked)
		s.w.resMu.Unlock()
	}
	return nil
}
