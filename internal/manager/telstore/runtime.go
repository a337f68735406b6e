package telstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// maxRuntimeRows bounds the rows one runtime query reads: a series sent with
// its attributes in several orders is several rows.
const maxRuntimeRows = 4 * telquery.MaxRuntimeSeries

// Runtime answers the newest point of each runtime series of one deployment
// within the window, and the newest point before it (as far back as the window
// is long) so cumulative figures can be turned into the window's increase. A
// series is a metric name with its point attributes: the agent's runtime
// sources give every series attributes that tell it apart (docs/signals.md).
func (s *Reader) Runtime(ctx context.Context, q telquery.RuntimeQuery) (telquery.RuntimeMetrics, error) {
	if q.Deployment == "" {
		return telquery.RuntimeMetrics{}, fmt.Errorf("%w: a deployment is required", telquery.ErrInvalid)
	}
	q, err := q.WithDefaults(s.clock.Now())
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
	args := []any{since, since, since, since, since, since, since, since, since, since}
	args = append(append(args, w.args...), maxRuntimeRows+1)
	// arg_max over (ts, seq) picks the newest point; seq breaks a tie of
	// timestamps in the order the points arrived. A histogram's buckets come
	// whole, as stored; their arithmetic (increase, merge, percentiles) is
	// telquery's, in Go, so another store gives the same figures.
	cols := []string{"name", s.argMax("kind", "seq", ""), s.argMax("unit", "seq", ""), "coalesce(attrs, '')"}
	for _, in := range []string{"ts >= ?", "ts < ?"} {
		cols = append(cols, "max(ts) FILTER (WHERE "+in+")")
		for _, c := range []string{"value", "count", "sum", "buckets"} {
			cols = append(cols, s.argMax(c, "ts, seq", in))
		}
	}
	rs, err := s.query(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM metric_points"+w.String()+
		" GROUP BY name, coalesce(attrs, '') ORDER BY name, coalesce(attrs, '') LIMIT ?", args...)
	if err != nil {
		return out, fmt.Errorf("runtime of %s: %w", q.Deployment, err)
	}
	defer rs.Close()
	// The stored attributes are JSON in the order the sender put them; one
	// series sent with its attributes in another order is still one series, so
	// rows merge on the attributes re-encoded with sorted keys.
	type merged struct {
		telquery.RuntimeSeries
		baseTime time.Time
	}
	byKey := map[string]*merged{}
	var keys []string
	rows := 0
	for rs.Next() {
		var (
			r             telquery.RuntimeSeries
			attrs         string
			last, base    sql.NullTime
			value, bvalue sql.NullFloat64
			count, bcount sql.NullInt64
			sum, bsum     sql.NullFloat64
			hist, bhist   sql.NullString
		)
		if err := rs.Scan(&r.Name, &r.Kind, &r.Unit, &attrs, &last, &value, &count, &sum, &hist,
			&base, &bvalue, &bcount, &bsum, &bhist); err != nil {
			return out, fmt.Errorf("runtime of %s: %w", q.Deployment, err)
		}
		if rows++; rows > maxRuntimeRows {
			out.Truncated = true
			break
		}
		r.Attrs = decodeAttrs(sql.NullString{String: attrs, Valid: attrs != ""})
		canon, _ := json.Marshal(r.Attrs) // sorted keys; cannot fail on decoded JSON
		key := r.Name + "\x00" + string(canon)
		m := byKey[key]
		if m == nil {
			m = &merged{RuntimeSeries: telquery.RuntimeSeries{Name: r.Name, Kind: r.Kind, Unit: r.Unit, Attrs: r.Attrs}}
			byKey[key] = m
			keys = append(keys, key)
		}
		if last.Valid && last.Time.After(m.Time) {
			m.Time, m.Value, m.Count, m.Sum = last.Time.UTC(), value.Float64, uint64(count.Int64), sum.Float64
			m.Kind, m.Unit, m.Histogram = r.Kind, r.Unit, histogram(hist)
		}
		if base.Valid && (!m.HasBase || base.Time.After(m.baseTime)) {
			m.baseTime, m.HasBase = base.Time, true
			m.BaseValue, m.BaseCount, m.BaseSum = bvalue.Float64, uint64(bcount.Int64), bsum.Float64
			m.BaseHistogram = histogram(bhist)
		}
	}
	if err := rs.Err(); err != nil {
		return out, fmt.Errorf("runtime of %s: %w", q.Deployment, err)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m := byKey[k]
		if m.Time.IsZero() {
			continue // nothing in the window: a series that stopped is not current
		}
		if len(out.Series) == telquery.MaxRuntimeSeries {
			out.Truncated = true
			break
		}
		out.Series = append(out.Series, m.RuntimeSeries)
	}
	return out, nil
}

// histogram decodes a point's stored buckets; nil when it has none.
func histogram(text sql.NullString) *telquery.Histogram {
	if !text.Valid {
		return nil
	}
	h, ok := parseHistogram(text.String)
	if !ok {
		return nil
	}
	return &h
}
