package web

import (
	"errors"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/web/chart"
)

// The metrics pages: /metrics/ lists the metric names seen (GET
// /api/v1/metrics/names), /metrics/{name} draws one metric's series (GET
// /api/v1/metrics/series) with the URL's filter, group_by, agg and step, the
// parameters the REST API takes.

// metricFilterKeys are the filter parameters the metric pages carry along.
var metricFilterKeys = []string{"deployment", "customer", "cloud", "region", "release", "stack", "service", "function"}

// metricsData is the metric list's content.
type metricsData struct {
	NoStore bool
	Error   string
	Metrics []telquery.MetricInfo
	// Query is the filter to carry into each metric's link ("?deployment=…").
	Query  string
	Filter url.Values
	Keys   []string
}

// carry keeps the filter parameters of q that are set.
func carry(q url.Values, keys ...string) url.Values {
	out := url.Values{}
	for _, k := range keys {
		if v := q.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	return out
}

func encoded(v url.Values) string {
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

func (s *Server) metricsPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	q := r.URL.Query()
	data := &metricsData{Filter: carry(q, metricFilterKeys...), Keys: metricFilterKeys}
	data.Query = encoded(carry(q, append(metricFilterKeys, "since", "until")...))
	if s.tel == nil {
		data.NoStore = true
		s.render(w, r, sess, http.StatusOK, "metrics", "Metrics", data)
		return
	}
	mq, err := telquery.ParseMetricNamesQuery(q, s.clock.Now())
	if err != nil {
		data.Error = err.Error()
		s.render(w, r, sess, http.StatusBadRequest, "metrics", "Metrics", data)
		return
	}
	names, err := s.tel.MetricNames(r.Context(), mq)
	if err != nil {
		s.log.Error("metric names", "err", err)
		data.Error = "The metric names could not be read; the manager's log has the details."
		s.render(w, r, sess, http.StatusInternalServerError, "metrics", "Metrics", data)
		return
	}
	data.Metrics = names.Metrics
	s.render(w, r, sess, http.StatusOK, "metrics", "Metrics", data)
}

// metricData is one metric's page content.
type metricData struct {
	Name    string
	NoStore bool
	Error   string
	Metric  telquery.Metric
	Chart   template.HTML
	Legend  []legendEntry
	Range   timeRange
	Ranges  []rangeChoice
	Filter  url.Values
	Keys    []string
	GroupBy string
	Agg     string
	Step    string
	Aggs    []string
	// Back is the list's link with the same filter.
	Back string
	// Rows are the series' last values, the figures in a table as well.
	Rows []metricRow
}

// metricRow is one series' summary in the table under the chart.
type metricRow struct {
	Group, Last, Min, Max string
	Colour                int
}

func (s *Server) metricPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	q := r.URL.Query()
	name := r.PathValue("name")
	data := &metricData{Name: name, Filter: carry(q, metricFilterKeys...), Keys: metricFilterKeys,
		GroupBy: q.Get("group_by"), Agg: q.Get("agg"), Step: q.Get("step"),
		Aggs: []string{telquery.AggAvg, telquery.AggSum, telquery.AggMin, telquery.AggMax, telquery.AggLast}}
	data.Back = "/metrics/" + encoded(carry(q, append(metricFilterKeys, "since", "until")...))
	now := s.clock.Now()
	tr, err := parseRange(q, now)
	data.Range, data.Ranges = tr, rangeChoices(tr)
	keep := carry(q, append(metricFilterKeys, "group_by", "agg", "step")...)
	for i := range data.Ranges {
		keep.Set("since", data.Ranges[i].Since)
		data.Ranges[i].Href = "?" + keep.Encode()
	}
	if err != nil {
		data.Error = err.Error()
		s.render(w, r, sess, http.StatusBadRequest, "metrics-series", name, data)
		return
	}
	if s.tel == nil {
		data.NoStore = true
		s.render(w, r, sess, http.StatusOK, "metrics-series", name, data)
		return
	}
	// The API's own parser reads group_by, agg and step; the range is the page's.
	v := carry(q, append(metricFilterKeys, "group_by", "agg", "step")...)
	v.Set("name", name)
	mq, err := telquery.ParseMetricQuery(v, now)
	if err != nil {
		data.Error = err.Error()
		s.render(w, r, sess, http.StatusBadRequest, "metrics-series", name, data)
		return
	}
	mq.Since, mq.Until = tr.Since, tr.Until
	m, err := s.tel.Metric(r.Context(), mq)
	if errors.Is(err, telquery.ErrInvalid) {
		data.Error = err.Error()
		s.render(w, r, sess, http.StatusBadRequest, "metrics-series", name, data)
		return
	}
	if err != nil {
		s.log.Error("metric series", "name", name, "err", err)
		data.Error = "The series could not be read; the manager's log has the details."
		s.render(w, r, sess, http.StatusInternalServerError, "metrics-series", name, data)
		return
	}
	data.Metric = m
	c := chart.TimeSeries{ID: "metric", Title: name + metricUnit(m.Unit), Since: tr.Since, Until: tr.Until, Width: 960, Height: 260,
		Format: func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }}
	for i, sr := range m.Series {
		group := sr.Group
		if group == "" {
			group = name
		}
		pts := make([]chart.Point, len(sr.Points))
		lo, hi := math.Inf(1), math.Inf(-1)
		for j, p := range sr.Points {
			pts[j] = chart.Point{T: p.Time, V: p.Value}
			lo, hi = math.Min(lo, p.Value), math.Max(hi, p.Value)
		}
		cs := chart.Series{Name: group, Colour: i, Points: pts}
		if m.GroupBy == telquery.ByRelease {
			cs.Release = sr.Group
		}
		c.Series = append(c.Series, cs)
		data.Legend = append(data.Legend, legendEntry{Release: group, Colour: i%chart.Palette + 1})
		row := metricRow{Group: group, Colour: i%chart.Palette + 1}
		if n := len(sr.Points); n > 0 {
			row.Last = c.Format(sr.Points[n-1].Value)
			row.Min, row.Max = c.Format(lo), c.Format(hi)
		}
		data.Rows = append(data.Rows, row)
	}
	data.Chart = template.HTML(c.SVG())
	s.render(w, r, sess, http.StatusOK, "metrics-series", name, data)
}

// metricUnit is the unit after a metric's name, " (ms)", when it has one.
func metricUnit(u string) string {
	if u == "" || u == "1" {
		return ""
	}
	return " (" + u + ")"
}
