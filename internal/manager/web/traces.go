package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store"
)

// maxIndent bounds how far the waterfall indents a span; deeper spans line up
// at this depth and say their depth instead.
const maxIndent = 16

// spanRow is one span of a search result, with the links of its values.
type spanRow struct {
	telquery.Span
	Links links
}

// Exact is the span's start to the millisecond, for the title.
func (r spanRow) Exact() string { return r.Start.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// Duration is the span's duration for people.
func (r spanRow) Duration() string { return msDuration(r.DurationMS) }

// Failed reports whether the span's status is error.
func (r spanRow) Failed() bool { return r.Status == telquery.StatusError }

func msDuration(ms float64) string {
	if ms > 0 && ms < 0.001 {
		return "<1 µs"
	}
	return humanDuration(time.Duration(ms * float64(time.Millisecond)))
}

// tracesData is the span search page's content.
type tracesData struct {
	NoStore bool
	Err     string
	F       url.Values
	Chips   []telChip
	Links   links
	Rows    []spanRow
	Older   string
	Paged   bool
	Now     time.Time
}

var spanFilterKeys = []string{"deployment", "customer", "cloud", "region", "stack", "release", "service", "function",
	"name", "errors", "roots", "min_duration", "since", "until", "limit"}

// tracesPage searches spans, newest first, with the REST span query's filters;
// each row opens its trace.
func (s *Server) tracesPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	v := r.URL.Query()
	now := s.clock.Now()
	d := tracesData{F: v, Links: newLinks("/traces", v), Paged: v.Get("cursor") != "", Now: now}
	d.Chips = d.Links.chips(spanFilterKeys...)
	if s.tel == nil {
		d.NoStore = true
		s.render(w, r, sess, http.StatusServiceUnavailable, "traces", "Traces", d)
		return
	}
	q, err := telquery.ParseSpanQuery(v, now)
	if err == nil {
		var page telquery.SpanPage
		page, err = s.tel.Spans(r.Context(), q)
		for _, sp := range page.Spans {
			d.Rows = append(d.Rows, spanRow{Span: sp, Links: d.Links})
		}
		if page.Next != "" {
			d.Older = d.Links.Page(page.Next)
		}
	}
	s.answerSearch(w, r, sess, "traces", "Traces", err, &d, func(msg string) { d.Err, d.Rows = msg, nil })
}

// wfSpan is one row of the waterfall: a span, its depth under its parents and
// its bar on the trace's time axis (in thousandths of the trace's duration).
type wfSpan struct {
	spanRow
	Depth  int
	Indent []struct{}
	BarX   int
	BarW   int
	start  time.Time // the trace's
}

// event is one span event as the waterfall shows it.
type event struct {
	Name, Offset, Exact string
	Attrs               []attr
}

// SpanEvents are the span's events, each at its offset into the trace.
func (w wfSpan) SpanEvents() []event {
	out := make([]event, 0, len(w.Events))
	for _, e := range w.Events {
		out = append(out, event{Name: e.Name, Offset: msDuration(float64(e.Time.Sub(w.start)) / 1e6),
			Exact: e.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), Attrs: attrsOf(e.Attributes, nil)})
	}
	return out
}

// Attrs are the span's attributes, each a span search filter where one applies.
func (w wfSpan) Attrs() []attr { return attrsOf(w.Attributes, nil) }

// Offset is the span's start after the trace's, for people.
func (w wfSpan) Offset() string { return msDuration(w.OffsetMS) }

// traceData is the trace page's content.
type traceData struct {
	NoStore bool
	// Missing is set when no span of the trace is stored.
	Missing bool
	ID      string
	Trace   telquery.Trace
	Spans   []wfSpan
	Failing []wfSpan
	Axis    []string
	Links   links
}

// Duration is the trace's duration for people.
func (d traceData) Duration() string { return msDuration(d.Trace.DurationMS) }

// tracePage draws one trace as a waterfall: a row per span, indented under its
// parent, bars on one time axis, error spans marked without expanding.
func (s *Server) tracePage(w http.ResponseWriter, r *http.Request, sess *Session) {
	id, err := telquery.CheckTraceID(r.PathValue("trace_id"))
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "Not a trace id", err.Error()+". Trace ids are 32 hexadecimal digits, as in a log record's trace_id.")
		return
	}
	d := traceData{ID: id, Links: newLinks("/traces", nil)}
	if s.tel == nil {
		d.NoStore = true
		s.render(w, r, sess, http.StatusServiceUnavailable, "trace", "Trace", d)
		return
	}
	t, err := s.tel.Trace(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.Missing = true
		s.render(w, r, sess, http.StatusNotFound, "trace", "Trace not found", d)
		return
	case err != nil:
		s.log.Error("read trace", "trace", id, "err", err)
		s.fail(w, r, sess, http.StatusInternalServerError, "The trace could not be read",
			"The telemetry store failed to answer; the manager log has the details. Try again.")
		return
	}
	d.Trace = t
	d.Spans = waterfall(t, d.Links)
	for _, sp := range d.Spans {
		if sp.Failed() {
			d.Failing = append(d.Failing, sp)
		}
	}
	for i := range 5 {
		d.Axis = append(d.Axis, msDuration(t.DurationMS*float64(i)/4))
	}
	s.render(w, r, sess, http.StatusOK, "trace", "Trace "+id[:8], d)
}

// waterfall flattens the trace's tree depth first, children in start order
// (as the store links them), and places each span's bar on the trace's axis.
func waterfall(t telquery.Trace, l links) []wfSpan {
	out := make([]wfSpan, 0, t.SpanCount)
	total := t.DurationMS
	var walk func(sp *telquery.Span, depth int)
	walk = func(sp *telquery.Span, depth int) {
		x, w := 0, 1000
		if total > 0 {
			x = int(sp.OffsetMS / total * 1000)
			w = int(sp.DurationMS / total * 1000)
		}
		x = min(max(x, 0), 998)
		w = min(max(w, 2), 1000-x)
		out = append(out, wfSpan{spanRow: spanRow{Span: *sp, Links: l}, Depth: depth,
			Indent: make([]struct{}, min(depth, maxIndent)), BarX: x, BarW: w, start: t.Start})
		for _, c := range sp.Children {
			walk(c, depth+1)
		}
	}
	for _, root := range t.Roots {
		walk(root, 0)
	}
	return out
}

// DeepNote says the span's depth when the indent no longer shows it.
func (w wfSpan) DeepNote() string {
	if w.Depth <= maxIndent {
		return ""
	}
	return "depth " + strconv.Itoa(w.Depth)
}
