package telstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// Default window of RED, comparison and metric queries.
const DefaultWindow = time.Hour

// span of a query: [since, until) and its step, with a bucket expression.
type window struct {
	since, until time.Time
	step         time.Duration
}

// windowOf fills the query's defaults: the last hour up to now, about 60 points,
// whole minutes (the rollups' resolution).
func (s *Reader) windowOf(f telquery.Filter, step time.Duration) window {
	w := window{since: f.Since, until: f.Until, step: step}
	if w.until.IsZero() {
		w.until = s.clock.Now()
	}
	if w.since.IsZero() {
		w.since = w.until.Add(-DefaultWindow)
	}
	w.since, w.until = w.since.UTC().Truncate(time.Minute), w.until.UTC()
	if w.step <= 0 {
		w.step = w.until.Sub(w.since) / 60
	}
	w.step = max(time.Minute, w.step.Truncate(time.Minute))
	// A year at one-minute steps is half a million points per series; widen the
	// step rather than build an answer nobody can draw.
	if span := w.until.Sub(w.since); span/w.step > MaxPoints {
		w.step = (span/MaxPoints + time.Minute - 1).Truncate(time.Minute)
	}
	return w
}

// MaxPoints bounds the points of one series; a finer step is widened to fit.
const MaxPoints = 1500

// bucketExpr numbers a row's step from the window start.
func (w window) bucketExpr(s *Reader, col string) string {
	return fmt.Sprintf("CAST(floor((%s - %d) / %d) AS BIGINT)", s.epoch(col), w.since.Unix(), int64(w.step/time.Second))
}

func (w window) at(b int64) time.Time { return w.since.Add(time.Duration(b) * w.step) }

// groupColumn maps a RED group-by to its column; "”" means one series.
func groupColumn(g string) (string, error) {
	switch g {
	case telquery.ByNone:
		return "''", nil
	case telquery.ByRelease, telquery.ByDeployment, telquery.ByFunction, telquery.ByService, telquery.ByCustomer:
		return g, nil
	}
	return "", fmt.Errorf("%w: group_by %q", telquery.ErrInvalid, g)
}

// acc sums request figures and a latency histogram.
type acc struct {
	requests, errors int64
	h                hist
	// raw percentiles, in ns, when the figures come from raw rows.
	raw           bool
	p50, p95, p99 float64
}

func (a *acc) stats(seconds float64) telquery.Stats {
	st := telquery.Stats{Requests: a.requests, Errors: a.errors}
	if a.requests > 0 {
		st.ErrorRate = float64(a.errors) / float64(a.requests)
	}
	if seconds > 0 {
		st.Rate = float64(a.requests) / seconds
	}
	if a.raw {
		st.P50, st.P95, st.P99 = a.p50/1e6, a.p95/1e6, a.p99/1e6
	} else {
		st.P50, st.P95, st.P99 = a.h.quantile(0.50)/1e6, a.h.quantile(0.95)/1e6, a.h.quantile(0.99)/1e6
	}
	st.P50, st.P95, st.P99 = round3(st.P50), round3(st.P95), round3(st.P99)
	return st
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

type groupKey struct {
	b int64
	g string
}

// RED answers rate, errors and duration over time, from the per-minute rollups
// unless the query asks for raw rows.
func (s *Reader) RED(ctx context.Context, q telquery.REDQuery) (telquery.RED, error) {
	gcol, err := groupColumn(q.GroupBy)
	if err != nil {
		return telquery.RED{}, err
	}
	win := s.windowOf(q.Filter, q.Step)
	f := q.Filter
	f.Since, f.Until = win.since, win.until
	var points map[groupKey]*acc
	var totals map[string]*acc
	if q.Raw {
		points, totals, err = s.redRaw(ctx, f, win, gcol)
	} else {
		points, totals, err = s.redRollup(ctx, f, win, gcol)
	}
	if err != nil {
		return telquery.RED{}, fmt.Errorf("RED: %w", err)
	}
	out := telquery.RED{Since: win.since, Until: win.until, StepSec: win.step.Seconds(), GroupBy: q.GroupBy, Series: []telquery.REDSeries{}}
	groups := make([]string, 0, len(totals))
	for g := range totals {
		groups = append(groups, g)
	}
	sortGroups(groups, q.GroupBy)
	nSteps := int64(math.Ceil(float64(win.until.Sub(win.since)) / float64(win.step)))
	for _, g := range groups {
		sr := telquery.REDSeries{Group: g, Total: totals[g].stats(win.until.Sub(win.since).Seconds()), Points: []telquery.REDPoint{}}
		for b := int64(0); b < nSteps; b++ {
			a := points[groupKey{b, g}]
			if a == nil {
				a = &acc{raw: q.Raw}
			}
			// The last step usually ends at until, before its full width: its rate
			// is over the time it covers, or every chart would dip at the end.
			covered := min(win.step, win.until.Sub(win.at(b)))
			sr.Points = append(sr.Points, telquery.REDPoint{Time: win.at(b), Stats: a.stats(covered.Seconds())})
		}
		out.Series = append(out.Series, sr)
	}
	return out, nil
}

// sortGroups orders releases by version, everything else by name.
func sortGroups(gs []string, by string) {
	sort.Slice(gs, func(i, j int) bool {
		if by == telquery.ByRelease {
			return fleet.CompareVersions(gs[i], gs[j]) < 0
		}
		return gs[i] < gs[j]
	})
}

func (s *Reader) redRollup(ctx context.Context, f telquery.Filter, win window, gcol string) (map[groupKey]*acc, map[string]*acc, error) {
	w := &where{}
	w.filter(f, "minute", false)
	bexpr := win.bucketExpr(s, "minute")
	points, totals := map[groupKey]*acc{}, map[string]*acc{}
	get := func(b int64, g string) (*acc, *acc) {
		k := groupKey{b, g}
		if points[k] == nil {
			points[k] = &acc{}
		}
		if totals[g] == nil {
			totals[g] = &acc{}
		}
		return points[k], totals[g]
	}
	rs, err := s.query(ctx, "SELECT "+bexpr+" b, "+gcol+" g, sum(requests)::BIGINT, sum(errors)::BIGINT FROM red_minute"+
		w.String()+" GROUP BY 1, 2", w.args...)
	if err != nil {
		return nil, nil, err
	}
	for rs.Next() {
		var b, req, errs int64
		var g string
		if err := rs.Scan(&b, &g, &req, &errs); err != nil {
			rs.Close()
			return nil, nil, err
		}
		p, t := get(b, g)
		p.requests, p.errors = p.requests+req, p.errors+errs
		t.requests, t.errors = t.requests+req, t.errors+errs
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, nil, err
	}
	rs, err = s.query(ctx, "SELECT "+bexpr+" b, "+gcol+" g, bucket, sum(n)::BIGINT FROM red_hist"+
		w.String()+" GROUP BY 1, 2, 3", w.args...)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	for rs.Next() {
		var b, n int64
		var bucket uint8
		var g string
		if err := rs.Scan(&b, &g, &bucket, &n); err != nil {
			return nil, nil, err
		}
		p, t := get(b, g)
		p.h[bucket] += n
		t.h[bucket] += n
	}
	return points, totals, rs.Err()
}

// rawFigures are a group's requests, errors and latency percentiles in ns.
func (s *Reader) rawFigures() string {
	out := "count(*)::BIGINT, count(*) FILTER (WHERE status = 2)::BIGINT"
	for _, q := range []string{"0.5", "0.95", "0.99"} {
		out += ", coalesce(" + s.quantile("duration_ns", q) + ", 0)" + s.double()
	}
	return out
}

func (s *Reader) redRaw(ctx context.Context, f telquery.Filter, win window, gcol string) (map[groupKey]*acc, map[string]*acc, error) {
	w := &where{}
	w.add("entry")
	w.filter(f, "start", true)
	points, totals := map[groupKey]*acc{}, map[string]*acc{}
	scan := func(rs *sql.Rows, b *int64, g *string) (*acc, error) {
		a := &acc{raw: true}
		dest := []any{g, &a.requests, &a.errors, &a.p50, &a.p95, &a.p99}
		if b != nil {
			dest = append([]any{b}, dest...)
		}
		return a, rs.Scan(dest...)
	}
	rs, err := s.query(ctx, "SELECT "+win.bucketExpr(s, "start")+" b, "+gcol+" g, "+s.rawFigures()+" FROM spans"+
		w.String()+" GROUP BY 1, 2", w.args...)
	if err != nil {
		return nil, nil, err
	}
	for rs.Next() {
		var b int64
		var g string
		a, err := scan(rs, &b, &g)
		if err != nil {
			rs.Close()
			return nil, nil, err
		}
		points[groupKey{b, g}] = a
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, nil, err
	}
	rs, err = s.query(ctx, "SELECT "+gcol+" g, "+s.rawFigures()+" FROM spans"+w.String()+" GROUP BY 1", w.args...)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	for rs.Next() {
		var g string
		a, err := scan(rs, nil, &g)
		if err != nil {
			return nil, nil, err
		}
		totals[g] = a
	}
	return points, totals, rs.Err()
}

// releaseSpan is when a release has rollup data.
type releaseSpan struct {
	release     string
	first, last time.Time // minutes
}

// CompareReleases compares the current release with the one before it; see
// telquery.CompareQuery.
func (s *Reader) CompareReleases(ctx context.Context, q telquery.CompareQuery) (telquery.Comparison, error) {
	W := q.Window
	if W <= 0 {
		W = DefaultWindow
	}
	base := q.Filter
	base.Release, base.Since, base.Until = "", time.Time{}, time.Time{}
	w := &where{}
	w.filter(base, "minute", false)
	rs, err := s.query(ctx, "SELECT release, min(minute), max(minute) FROM red_minute"+w.String()+" GROUP BY release", w.args...)
	if err != nil {
		return telquery.Comparison{}, fmt.Errorf("compare releases: %w", err)
	}
	var rels []releaseSpan
	for rs.Next() {
		var r releaseSpan
		if err := rs.Scan(&r.release, &r.first, &r.last); err != nil {
			rs.Close()
			return telquery.Comparison{}, fmt.Errorf("compare releases: %w", err)
		}
		rels = append(rels, r)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return telquery.Comparison{}, fmt.Errorf("compare releases: %w", err)
	}
	// Newest version first; a deployment's current release is the one it ran last.
	sort.Slice(rels, func(i, j int) bool { return fleet.CompareVersions(rels[i].release, rels[j].release) > 0 })
	if q.Deployment != "" && q.Release == "" {
		sort.SliceStable(rels, func(i, j int) bool { return rels[i].last.After(rels[j].last) })
	}
	cur := -1
	for i, r := range rels {
		if q.Release == "" || r.release == q.Release {
			cur = i
			break
		}
	}
	if cur < 0 || (cur+1 >= len(rels) && q.Against == "") {
		what := "the fleet"
		if q.Deployment != "" {
			what = "deployment " + q.Deployment
		}
		return telquery.Comparison{}, fmt.Errorf("%w: %s has no request data for two releases to compare (found %d)", telquery.ErrInvalid, what, len(rels))
	}
	prev := cur + 1
	if q.Against != "" {
		prev = slices.IndexFunc(rels, func(r releaseSpan) bool { return r.release == q.Against })
		if prev < 0 || prev == cur {
			return telquery.Comparison{}, fmt.Errorf("%w: no request data for release %s to compare against", telquery.ErrInvalid, q.Against)
		}
	}
	c, p := rels[cur], rels[prev]
	if c.first.Before(p.last) {
		// Back on a release it ran before (a rollback): its current stretch starts
		// after the other release's last minute.
		f := base
		f.Release, f.Since = c.release, p.last.Add(time.Minute)
		w := &where{}
		w.filter(f, "minute", false)
		var first sql.NullTime
		if err := s.queryRow(ctx, "SELECT min(minute) FROM red_minute"+w.String(), w.args...).Scan(&first); err != nil {
			return telquery.Comparison{}, fmt.Errorf("compare releases: %w", err)
		}
		if first.Valid {
			c.first = first.Time
		}
	}
	// Equal windows: the start of the current release against the end of the
	// previous one; with the previous still serving as late as the current (a
	// fleet mid-rollout), the same recent window for both.
	curFrom, curTo := c.first, c.last.Add(time.Minute)
	prevFrom, prevTo := p.first, p.last.Add(time.Minute)
	if q.Deployment == "" && !p.last.Before(c.last) {
		from := slices.MaxFunc([]time.Time{curFrom, prevFrom, curTo.Add(-W)}, time.Time.Compare)
		curFrom, prevFrom, prevTo = from, from, curTo
	} else {
		L := min(W, curTo.Sub(curFrom), prevTo.Sub(prevFrom))
		curTo, prevFrom = curFrom.Add(L), prevTo.Add(-L)
		if p.last.Equal(c.first) && prevFrom.After(p.first) {
			// The minute of the switch holds both releases, each for part of
			// it: the previous release also gets the minute before, or just
			// after a switch early in a minute its side is a moment of
			// traffic, too little to judge the current release by.
			prevFrom = prevFrom.Add(-time.Minute)
		}
	}
	out := telquery.Comparison{Deployment: q.Deployment}
	for _, side := range []struct {
		rw       *telquery.ReleaseWindow
		rel      string
		from, to time.Time
	}{{&out.Current, c.release, curFrom, curTo}, {&out.Previous, p.release, prevFrom, prevTo}} {
		f := base
		f.Release, f.Since, f.Until = side.rel, side.from, side.to
		win := window{since: side.from, until: side.to, step: side.to.Sub(side.from) + time.Minute}
		_, totals, err := s.redRollup(ctx, f, win, "''")
		if err != nil {
			return telquery.Comparison{}, fmt.Errorf("compare releases: %w", err)
		}
		a := totals[""]
		if a == nil {
			a = &acc{}
		}
		*side.rw = telquery.ReleaseWindow{Release: side.rel, From: side.from, To: side.to, Stats: a.stats(side.to.Sub(side.from).Seconds())}
	}
	out.ErrorRateChange = out.Current.ErrorRate - out.Previous.ErrorRate
	out.P95Change = round3(out.Current.P95 - out.Previous.P95)
	if out.Previous.P95 > 0 {
		out.P95Ratio = round3(out.Current.P95 / out.Previous.P95)
	}
	return out, nil
}

// Metric answers the series of one metric.
func (s *Reader) Metric(ctx context.Context, q telquery.MetricQuery) (telquery.Metric, error) {
	if q.Name == "" {
		return telquery.Metric{}, fmt.Errorf("%w: a metric name is required", telquery.ErrInvalid)
	}
	win := s.windowOf(q.Filter, q.Step)
	f := q.Filter
	f.Since, f.Until = win.since, win.until
	w := &where{}
	w.add("name = ?", q.Name)
	w.filter(f, "ts", true)
	out := telquery.Metric{Name: q.Name, StepSec: win.step.Seconds(), GroupBy: q.GroupBy, Series: []telquery.MetricSeries{}}
	var temporality uint8
	err := s.queryRow(ctx, "SELECT kind, unit, temporality FROM metric_points"+w.String()+" ORDER BY seq DESC LIMIT 1", w.args...).
		Scan(&out.Kind, &out.Unit, &temporality)
	if err == sql.ErrNoRows {
		out.Agg = q.Agg
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("metric %s: %w", q.Name, err)
	}
	out.Agg = q.Agg
	if out.Agg == "" {
		switch {
		case out.Kind == "sum" && temporality == 1:
			out.Agg = telquery.AggSum
		case out.Kind == "sum":
			out.Agg = telquery.AggLast
		default:
			out.Agg = telquery.AggAvg
		}
	}
	gexpr := "''"
	var gargs []any
	if q.GroupBy != "" {
		gexpr = ""
		for _, c := range ctxColumns {
			if c == q.GroupBy {
				gexpr = c
			}
		}
		if i, ok := resourceKeys[q.GroupBy]; ok {
			gexpr = ctxColumns[i]
		}
		if gexpr == "" {
			p := s.jsonKey(q.GroupBy)
			gexpr = "coalesce(" + s.jsonGet("attrs") + ", " + s.jsonGet("resource") + ", '')"
			gargs = []any{p, p}
		}
	}
	bexpr := win.bucketExpr(s, "ts")
	var query string
	args := append(gargs, w.args...)
	switch out.Agg {
	case telquery.AggLast:
		// The last value of each series in the step, summed over the group's series.
		query = "SELECT b, g, sum(v) FROM (SELECT " + bexpr + " b, " + gexpr + " g, " + s.argMax("value", "ts", "") + " v FROM metric_points" +
			w.String() + " GROUP BY b, g, deployment, replica, attrs, resource) newest GROUP BY b, g"
	case telquery.AggAvg, telquery.AggSum, telquery.AggMin, telquery.AggMax:
		query = "SELECT " + bexpr + " b, " + gexpr + " g, " + out.Agg + "(value) FROM metric_points" + w.String() + " GROUP BY 1, 2"
	default:
		return out, fmt.Errorf("%w: agg %q", telquery.ErrInvalid, out.Agg)
	}
	rs, err := s.query(ctx, query+" ORDER BY g, b", args...)
	if err != nil {
		return out, fmt.Errorf("metric %s: %w", q.Name, err)
	}
	defer rs.Close()
	idx := map[string]int{}
	for rs.Next() {
		var b int64
		var g string
		var v float64
		if err := rs.Scan(&b, &g, &v); err != nil {
			return out, fmt.Errorf("metric %s: %w", q.Name, err)
		}
		i, ok := idx[g]
		if !ok {
			i = len(out.Series)
			idx[g] = i
			out.Series = append(out.Series, telquery.MetricSeries{Group: g, Points: []telquery.MetricPoint{}})
		}
		out.Series[i].Points = append(out.Series[i].Points, telquery.MetricPoint{Time: win.at(b), Value: v})
	}
	if err := rs.Err(); err != nil {
		return out, fmt.Errorf("metric %s: %w", q.Name, err)
	}
	return out, nil
}

// MetricNames lists the metrics with points matching the filter, by name.
func (s *Reader) MetricNames(ctx context.Context, q telquery.MetricNamesQuery) (telquery.MetricNames, error) {
	w := &where{}
	w.filter(q.Filter, "ts", true)
	rs, err := s.query(ctx, "SELECT name, "+s.argMax("kind", "seq", "")+", "+s.argMax("unit", "seq", "")+", count(*), max(ts) FROM metric_points"+
		w.String()+" GROUP BY name ORDER BY name", w.args...)
	if err != nil {
		return telquery.MetricNames{}, fmt.Errorf("metric names: %w", err)
	}
	defer rs.Close()
	out := telquery.MetricNames{Metrics: []telquery.MetricInfo{}}
	for rs.Next() {
		var m telquery.MetricInfo
		if err := rs.Scan(&m.Name, &m.Kind, &m.Unit, &m.Points, &m.Last); err != nil {
			return out, fmt.Errorf("metric names: %w", err)
		}
		m.Last = m.Last.UTC()
		out.Metrics = append(out.Metrics, m)
	}
	if err := rs.Err(); err != nil {
		return out, fmt.Errorf("metric names: %w", err)
	}
	return out, nil
}
