package telstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// Runtime answers the newest point of each runtime series of one deployment
// within the window, and the newest point before it (as far back as the window
// is long) so cumulative figures can be turned into the window's increase. A
// series is a metric name with its point attributes: the agent's runtime
// sources give every series attributes that tell it apart (docs/signals.md).
func (s *Store) Runtime(ctx context.Context, q telquery.RuntimeQuery) (telquery.RuntimeMetrics, error) {
	if q.Deployment == "" {
		return telquery.RuntimeMetrics{}, fmt.Errorf("%w: a deployment is required", telquery.ErrInvalid)
	}
	q, err := q.WithDefaults(s.set.Clock.Now())
	if err != nil {
		return telquery.RuntimeMetrics{}, err
	}
	out := telquery.RuntimeMetrics{Since: q.Since.UTC(), Until: q.Until.UTC(), Series: []telquery.RuntimeSeries{}}
	w := &where{}
	w.filter(telquery.Filter{Deployment: q.Deployment, Since: q.Since.Add(-q.Until.Sub(q.Since)), Until: q.Until}, "ts", true)
	names := make([]string, len(telquery.RuntimeMetricNames))
	for i := range names {
		names[i] = "?"
	}
	for _, n := range telquery.RuntimeMetricNames {
		w.args = append(w.args, n)
	}
	w.conds = append(w.conds, "name IN ("+strings.Join(names, ", ")+")")
	since := q.Since.UTC()
	args := []any{since, since, since, since, since, since, since, since}
	args = append(append(args, w.args...), since, telquery.MaxRuntimeSeries+1)
	// arg_max over (ts, seq) picks the newest point; seq breaks a tie of
	// timestamps in the order the points arrived.
	rs, err := s.db.QueryContext(ctx, `SELECT name, arg_max(kind, seq), arg_max(unit, seq), coalesce(attrs, ''),
	max(ts) FILTER (WHERE ts >= ?),
	arg_max(value, (ts, seq)) FILTER (WHERE ts >= ?), arg_max(count, (ts, seq)) FILTER (WHERE ts >= ?), arg_max(sum, (ts, seq)) FILTER (WHERE ts >= ?),
	arg_max(value, (ts, seq)) FILTER (WHERE ts < ?), arg_max(count, (ts, seq)) FILTER (WHERE ts < ?),
	arg_max(sum, (ts, seq)) FILTER (WHERE ts < ?), count(*) FILTER (WHERE ts < ?)
	FROM metric_points`+w.String()+`
	GROUP BY name, coalesce(attrs, '') HAVING max(ts) >= ? ORDER BY name, coalesce(attrs, '') LIMIT ?`,
		args...)
	if err != nil {
		return out, fmt.Errorf("runtime of %s: %w", q.Deployment, err)
	}
	defer rs.Close()
	for rs.Next() {
		var (
			r             telquery.RuntimeSeries
			attrs         string
			count, bcount sql.NullInt64
			sum, bsum     sql.NullFloat64
			bvalue        sql.NullFloat64
			before        int64
		)
		if err := rs.Scan(&r.Name, &r.Kind, &r.Unit, &attrs, &r.Time, &r.Value, &count, &sum, &bvalue, &bcount, &bsum, &before); err != nil {
			return out, fmt.Errorf("runtime of %s: %w", q.Deployment, err)
		}
		if len(out.Series) == telquery.MaxRuntimeSeries {
			out.Truncated = true
			break
		}
		r.Time = r.Time.UTC()
		r.Attrs = decodeAttrs(sql.NullString{String: attrs, Valid: attrs != ""})
		r.Count, r.Sum = uint64(count.Int64), sum.Float64
		if before > 0 {
			r.HasBase, r.BaseValue, r.BaseCount, r.BaseSum = true, bvalue.Float64, uint64(bcount.Int64), bsum.Float64
		}
		out.Series = append(out.Series, r)
	}
	if err := rs.Err(); err != nil {
		return out, fmt.Errorf("runtime of %s: %w", q.Deployment, err)
	}
	return out, nil
}
