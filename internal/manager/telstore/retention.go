package telstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// timeColumns names each table's time column, for retention; name is the table
// in metrics.
var timeColumns = []struct{ table, name, col string }{
	{"log_rows", "logs", "ts"}, {"span_rows", "spans", "start"}, {"metric_point_rows", "metric_points", "ts"},
	{"red_minute", "red_minute", "minute"}, {"red_hist", "red_hist", "minute"},
}

// resourceGrace is how long a resource no row refers to is kept after a group
// last used it: a group between looking its id up and committing its rows must
// not see it deleted.
const resourceGrace = 10 * time.Minute

func (s *Store) retainLoop() {
	RunEvery(s.stop, s.set.RetainEvery, 10*time.Minute, func(ctx context.Context) {
		if err := s.Retain(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("telemetry retention failed; will retry", "error", err)
		}
	})
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
	if err := s.pruneResources(ctx); err != nil {
		return err
	}
	checkpointed := false
	for range 8 {
		used, err := s.UsedBytes(ctx)
		if err != nil {
			return err
		}
		s.m.UsedBytes.Set(float64(used))
		if used <= s.set.MaxBytes {
			return nil
		}
		if !checkpointed {
			// The write-ahead log holds rows uncompressed; fold it into the file
			// before deciding that anything must go.
			if _, err := s.db.ExecContext(ctx, "CHECKPOINT"); err != nil {
				return fmt.Errorf("checkpoint before retention: %w", err)
			}
			checkpointed = true
			continue
		}
		// Drop about the share of rows the excess is, and a little more so the
		// next run does not start over at once. The cut is a quantile of record
		// times, so a few records stamped far in the past or future cannot make
		// it sweep away everything.
		share := min(0.5, float64(used-s.set.MaxBytes)/float64(used)+0.05)
		cut, ok, err := s.timeQuantile(ctx, share)
		if err != nil || !ok {
			return err
		}
		if err := s.deleteBefore(ctx, cut, "size"); err != nil {
			return err
		}
		if err := s.pruneResources(ctx); err != nil {
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
			return fmt.Errorf("retention on %s: %w", tc.name, err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			s.m.retained.WithLabelValues(tc.name, reason).Add(float64(n))
		}
	}
	return nil
}

// timeQuantile returns the record time below which about share of the raw rows
// lie (a second past the oldest at least, so every pass makes progress).
func (s *Store) timeQuantile(ctx context.Context, share float64) (time.Time, bool, error) {
	var cut, oldest sql.NullTime
	// The quantile must be a constant; share is a number this function computed.
	err := s.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT make_timestamp(approx_quantile(epoch_us(t), %.4f)::BIGINT), min(t) FROM (
		SELECT ts t FROM log_rows UNION ALL SELECT start FROM span_rows UNION ALL SELECT ts FROM metric_point_rows)`, share)).Scan(&cut, &oldest)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find the retention cut: %w", err)
	}
	if !cut.Valid || !oldest.Valid {
		return time.Time{}, false, nil
	}
	if !cut.Time.After(oldest.Time) {
		return oldest.Time.Add(time.Second), true, nil
	}
	return cut.Time, true, nil
}

// pruneResources deletes the resources no row refers to any more, once no group
// has used them for resourceGrace.
func (s *Store) pruneResources(ctx context.Context) error {
	usedBefore := s.set.Clock.Now().Add(-resourceGrace)
	rs, err := s.db.QueryContext(ctx, `SELECT id FROM resources WHERE id NOT IN (
		SELECT res FROM log_rows UNION SELECT res FROM span_rows UNION SELECT res FROM metric_point_rows)`)
	if err != nil {
		return fmt.Errorf("find unused resources: %w", err)
	}
	var ids []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			rs.Close()
			return fmt.Errorf("find unused resources: %w", err)
		}
		ids = append(ids, id)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("find unused resources: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	ids = s.w.forget(ids, usedBefore)
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		var b strings.Builder
		for i, id := range ids[:n] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(id, 10))
		}
		if _, err := s.db.ExecContext(ctx, "DELETE FROM resources WHERE id IN ("+b.String()+")"); err != nil {
			return fmt.Errorf("delete unused resources: %w", err)
		}
		s.m.retained.WithLabelValues("resources", "unused").Add(float64(n))
		ids = ids[n:]
	}
	return nil
}
