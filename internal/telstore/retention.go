package telstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// timeColumns names each table's time column, for retention.
var timeColumns = []struct{ table, col string }{
	{"logs", "ts"}, {"spans", "start"}, {"metric_points", "ts"}, {"red_minute", "minute"}, {"red_hist", "minute"},
}

func (s *Store) retainLoop() {
	t := time.NewTicker(s.set.RetainEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			if err := s.Retain(ctx); err != nil {
				s.log.Error("telemetry retention failed; will retry", "error", err)
			}
			cancel()
		}
	}
}

// UsedBytes returns how many bytes the store's data occupies: the database's used
// blocks plus its write-ahead log. The file itself keeps its high-water size;
// freed blocks are reused before it grows.
func (s *Store) UsedBytes(ctx context.Context) (int64, error) {
	var blockSize, used int64
	var walSize sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT block_size, used_blocks, wal_size FROM pragma_database_size()`).Scan(&blockSize, &used, &walSize)
	if err != nil {
		return 0, fmt.Errorf("measure database size: %w", err)
	}
	return blockSize*used + parseSize(walSize.String), nil
}

// parseSize reads DuckDB's human sizes ("1.2 MiB", "0 bytes").
func parseSize(s string) int64 {
	var v float64
	var unit string
	if _, err := fmt.Sscanf(s, "%g %s", &v, &unit); err != nil {
		return 0
	}
	mult := map[string]float64{"bytes": 1, "byte": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	return int64(v * mult)
}

// Retain enforces retention once: records older than MaxAge go, then, while the
// data is over MaxBytes, the oldest slice of time goes, oldest first. Ingest goes
// on meanwhile; deletes touch only rows older than what the writer appends.
func (s *Store) Retain(ctx context.Context) error {
	cutoff := s.set.Clock.Now().Add(-s.set.MaxAge).UTC()
	if err := s.deleteBefore(ctx, cutoff, "age"); err != nil {
		return err
	}
	for range 8 {
		used, err := s.UsedBytes(ctx)
		if err != nil {
			return err
		}
		s.m.dbBytes.Set(float64(used))
		if used <= s.set.MaxBytes {
			return nil
		}
		oldest, newest, ok, err := s.timeRange(ctx)
		if err != nil || !ok {
			return err
		}
		// Drop the share of the time range the excess is, and a little more so the
		// next run does not start over at once.
		share := min(0.5, float64(used-s.set.MaxBytes)/float64(used)+0.05)
		cut := oldest.Add(time.Duration(float64(newest.Sub(oldest)) * share))
		if !cut.After(oldest) {
			cut = oldest.Add(time.Second)
		}
		if err := s.deleteBefore(ctx, cut, "size"); err != nil {
			return err
		}
		// Deleted row groups are freed by a checkpoint.
		if _, err := s.db.ExecContext(ctx, "CHECKPOINT"); err != nil {
			return fmt.Errorf("checkpoint after retention: %w", err)
		}
	}
	return nil
}

func (s *Store) deleteBefore(ctx context.Context, cutoff time.Time, reason string) error {
	for _, tc := range timeColumns {
		res, err := s.db.ExecContext(ctx, "DELETE FROM "+tc.table+" WHERE "+tc.col+" < ?", cutoff)
		if err != nil {
			return fmt.Errorf("retention on %s: %w", tc.table, err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			s.m.retained.WithLabelValues(tc.table, reason).Add(float64(n))
		}
	}
	return nil
}

// timeRange returns the oldest and newest record time over the raw tables.
func (s *Store) timeRange(ctx context.Context) (oldest, newest time.Time, ok bool, err error) {
	var lo, hi sql.NullTime
	err = s.db.QueryRowContext(ctx, `SELECT min(lo), max(hi) FROM (
		SELECT min(ts) lo, max(ts) hi FROM logs
		UNION ALL SELECT min(start), max(start) FROM spans
		UNION ALL SELECT min(ts), max(ts) FROM metric_points)`).Scan(&lo, &hi)
	if err != nil {
		return oldest, newest, false, fmt.Errorf("read the stored time range: %w", err)
	}
	return lo.Time, hi.Time, lo.Valid && hi.Valid, nil
}
