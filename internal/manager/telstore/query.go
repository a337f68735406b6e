package telstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store"
)

// Page sizes of log and span searches.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// where builds a WHERE clause with positional arguments.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// filter adds the context and time conditions; timeCol is the table's time
// column. On the views over raw rows (onRows), the conditions on a resource's
// context become one semi-join on the row's resource id, which DuckDB applies
// while scanning; written against the view's joined columns, it would evaluate
// the other conditions, a text search say, on every deployment's rows first.
func (w *where) filter(f telquery.Filter, timeCol string, onRows bool) {
	var res where
	for _, c := range []struct{ col, v string }{
		{"deployment", f.Deployment}, {"customer", f.Customer}, {"cloud", f.Cloud}, {"region", f.Region},
		{"release", f.Release}, {"stack", f.Stack}, {"service", f.Service}, {"function", f.Function},
	} {
		switch {
		case c.v == "":
		case onRows && c.col != "function":
			res.add(c.col+" = ?", c.v)
		default:
			w.add(c.col+" = ?", c.v)
		}
	}
	if len(res.conds) > 0 {
		w.add("res IN (SELECT id FROM resources"+res.String()+")", res.args...)
	}
	if !f.Since.IsZero() {
		w.add(timeCol+" >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		w.add(timeCol+" < ?", f.Until.UTC())
	}
}

func limitOf(n int) int {
	if n <= 0 {
		return DefaultLimit
	}
	return min(n, MaxLimit)
}

// encodeCursor is the position after the last row of a page: its time and seq.
func encodeCursor(t time.Time, seq int64) string { return store.EncodeCursor(t, seq) }

func decodeCursor(s string) (time.Time, int64, error) {
	t, seq, ok := store.DecodeCursor(s)
	if !ok {
		return time.Time{}, 0, fmt.Errorf("%w: cursor %q is not one this store gave out", telquery.ErrInvalid, s)
	}
	return t, seq, nil
}

// ParseTraceID reads a 32-hex-digit trace id into the two stored halves.
func ParseTraceID(s string) (hi, lo int64, err error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return 0, 0, fmt.Errorf("%w: trace id %q: want 32 hex digits", telquery.ErrInvalid, s)
	}
	return be64(b[:8]), be64(b[8:]), nil
}

func traceHex(hi, lo int64) string { return fmt.Sprintf("%016x%016x", uint64(hi), uint64(lo)) }
func spanHex(id int64) string      { return fmt.Sprintf("%016x", uint64(id)) }

// jsonPath quotes an attribute key as a DuckDB JSON path, so dotted keys are one key.
func jsonPath(k string) string {
	return `$."` + strings.ReplaceAll(strings.ReplaceAll(k, `\`, `\\`), `"`, `\"`) + `"`
}

func decodeAttrs(s sql.NullString) map[string]any {
	m := map[string]any{}
	if s.Valid && s.String != "" {
		_ = json.Unmarshal([]byte(s.String), &m)
	}
	return m
}

func contextOf(c *ctxCols) telquery.Context {
	return telquery.Context{Deployment: c[cDeployment], Customer: c[cCustomer], Cloud: c[cCloud], Region: c[cRegion],
		Release: c[cRelease], Stack: c[cStack], Service: c[cService], Function: c[cFunction],
		Container: c[cContainer], Replica: c[cReplica]}
}

const logColumns = "seq, ts, deployment, customer, cloud, region, release, stack, service, function, container, replica, " +
	"severity, severity_text, body, trace_hi, trace_lo, span_id, attrs, resource"

func scanLog(rs *sql.Rows) (telquery.Log, int64, error) {
	var l telquery.Log
	var seq int64
	var c ctxCols
	var th, tl, sid sql.Null[int64]
	var attrs, res sql.NullString
	dest := []any{&seq, &l.Time}
	for i := range c {
		dest = append(dest, &c[i])
	}
	dest = append(dest, &l.Severity, &l.SeverityText, &l.Body, &th, &tl, &sid, &attrs, &res)
	if err := rs.Scan(dest...); err != nil {
		return l, 0, err
	}
	l.Time = l.Time.UTC()
	l.Context = contextOf(&c)
	if th.Valid && tl.Valid {
		l.TraceID = traceHex(th.V, tl.V)
	}
	if sid.Valid {
		l.SpanID = spanHex(sid.V)
	}
	l.Attributes, l.Resource = decodeAttrs(attrs), decodeAttrs(res)
	return l, seq, nil
}

// logWhere builds the conditions of a log search other than the cursor.
func (s *Reader) logWhere(q telquery.LogQuery) (*where, error) {
	w := &where{}
	w.filter(q.Filter, "ts", true)
	if q.MinSeverity > 0 {
		w.add("severity >= ?", q.MinSeverity)
	}
	if q.Contains != "" {
		w.add(s.contains("lower(body)"), strings.ToLower(q.Contains))
	}
	if q.TraceID != "" {
		hi, lo, err := ParseTraceID(q.TraceID)
		if err != nil {
			return nil, err
		}
		w.add("trace_hi = ? AND trace_lo = ?", hi, lo)
	}
	keys := make([]string, 0, len(q.Attrs))
	for k := range q.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := q.Attrs[k]
		if i, ok := resourceKeys[k]; ok {
			if i == cFunction {
				w.add("function = ?", v)
			} else {
				w.add("res IN (SELECT id FROM resources WHERE "+ctxColumns[i]+" = ?)", v)
			}
			continue
		}
		p := s.jsonKey(k)
		w.add("coalesce("+s.jsonGet("attrs")+", "+s.jsonGet("resource")+") = ?", p, p, v)
	}
	return w, nil
}

// Logs searches log records, newest first.
func (s *Reader) Logs(ctx context.Context, q telquery.LogQuery) (telquery.LogPage, error) {
	w, err := s.logWhere(q)
	if err != nil {
		return telquery.LogPage{}, err
	}
	if q.Cursor != "" {
		t, seq, err := decodeCursor(q.Cursor)
		if err != nil {
			return telquery.LogPage{}, err
		}
		w.add("(ts < ? OR (ts = ? AND seq < ?))", t, t, seq)
	}
	limit := limitOf(q.Limit)
	rs, err := s.query(ctx, "SELECT "+logColumns+" FROM logs"+w.String()+
		" ORDER BY ts DESC, seq DESC LIMIT "+strconv.Itoa(limit+1), w.args...)
	if err != nil {
		return telquery.LogPage{}, fmt.Errorf("search logs: %w", err)
	}
	defer rs.Close()
	page := telquery.LogPage{Logs: []telquery.Log{}}
	var lastSeq int64
	for rs.Next() {
		l, seq, err := scanLog(rs)
		if err != nil {
			return page, fmt.Errorf("search logs: %w", err)
		}
		if len(page.Logs) == limit {
			last := page.Logs[limit-1]
			page.Next = encodeCursor(last.Time, lastSeq)
			break
		}
		page.Logs, lastSeq = append(page.Logs, l), seq
	}
	if err := rs.Err(); err != nil {
		return page, fmt.Errorf("search logs: %w", err)
	}
	return page, nil
}

// TailLogs calls fn with each log record matching q that is stored from now on,
// oldest first, until ctx ends or fn fails. It wakes on each commit, so records
// appear as soon as they are stored.
func (s *Reader) TailLogs(ctx context.Context, q telquery.LogQuery, fn func(telquery.Log) error) error {
	q.Since, q.Until, q.Cursor = time.Time{}, time.Time{}, ""
	base, err := s.logWhere(q)
	if err != nil {
		return err
	}
	wake := s.signal()
	var poll <-chan time.Time
	if s.poll > 0 {
		t := time.NewTicker(s.poll)
		defer t.Stop()
		poll = t.C
	}
	last, err := s.firstLogSeq(ctx)
	if err != nil {
		return fmt.Errorf("tail logs: %w", err)
	}
	from := []string{"seq > ?"}
	if s.tailBelow != "" {
		from = append(from, "seq < "+s.tailBelow)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stop:
			return ErrClosed
		case <-wake:
		case <-poll:
		}
		wake = s.signal()
		for {
			w := &where{conds: append(slices.Clone(from), base.conds...), args: append([]any{last}, base.args...)}
			rs, err := s.query(ctx, "SELECT "+logColumns+" FROM logs"+w.String()+" ORDER BY seq LIMIT 1000", w.args...)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("tail logs: %w", err)
			}
			n := 0
			for rs.Next() {
				l, seq, err := scanLog(rs)
				if err != nil {
					rs.Close()
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("tail logs: %w", err)
				}
				last = seq
				n++
				if err := fn(l); err != nil {
					rs.Close()
					return err
				}
			}
			err = rs.Err()
			rs.Close()
			if err != nil {
				if ctx.Err() != nil {
					return nil // the client left mid-query
				}
				return fmt.Errorf("tail logs: %w", err)
			}
			if n < 1000 {
				break
			}
		}
	}
}

const spanColumns = "seq, start, duration_ns, trace_hi, trace_lo, span_id, parent_span_id, name, kind, status, status_message, " +
	"deployment, customer, cloud, region, release, stack, service, function, container, replica, attrs, events"

var kindNames = []string{"unspecified", "internal", "server", "client", "producer", "consumer"}
var statusNames = []string{telquery.StatusUnset, telquery.StatusOK, telquery.StatusError}

func scanSpan(rs *sql.Rows) (telquery.Span, int64, error) {
	var sp telquery.Span
	var seq, dur int64
	var th, tl, sid int64
	var pid sql.Null[int64]
	var kind, status uint8
	var msg, attrs, events sql.NullString
	var c ctxCols
	dest := []any{&seq, &sp.Start, &dur, &th, &tl, &sid, &pid, &sp.Name, &kind, &status, &msg}
	for i := range c {
		dest = append(dest, &c[i])
	}
	dest = append(dest, &attrs, &events)
	if err := rs.Scan(dest...); err != nil {
		return sp, 0, err
	}
	if events.Valid && events.String != "" {
		_ = json.Unmarshal([]byte(events.String), &sp.Events)
	}
	sp.Start = sp.Start.UTC()
	sp.TraceID, sp.SpanID = traceHex(th, tl), spanHex(sid)
	if pid.Valid {
		sp.ParentSpanID = spanHex(pid.V)
	}
	sp.DurationMS = float64(dur) / 1e6
	if int(kind) < len(kindNames) {
		sp.Kind = kindNames[kind]
	}
	if int(status) < len(statusNames) {
		sp.Status = statusNames[status]
	}
	sp.StatusMessage = msg.String
	sp.Context = contextOf(&c)
	sp.Attributes = decodeAttrs(attrs)
	return sp, seq, nil
}

// Spans searches spans, newest first.
func (s *Reader) Spans(ctx context.Context, q telquery.SpanQuery) (telquery.SpanPage, error) {
	w := &where{}
	w.filter(q.Filter, "start", true)
	if q.Name != "" {
		w.add("name = ?", q.Name)
	}
	if q.ErrorsOnly {
		w.add("status = 2")
	}
	if q.RootsOnly {
		w.add("entry")
	}
	if q.MinDuration > 0 {
		w.add("duration_ns >= ?", int64(q.MinDuration))
	}
	if q.Cursor != "" {
		t, seq, err := decodeCursor(q.Cursor)
		if err != nil {
			return telquery.SpanPage{}, err
		}
		w.add("(start < ? OR (start = ? AND seq < ?))", t, t, seq)
	}
	limit := limitOf(q.Limit)
	rs, err := s.query(ctx, "SELECT "+spanColumns+" FROM spans"+w.String()+
		" ORDER BY start DESC, seq DESC LIMIT "+strconv.Itoa(limit+1), w.args...)
	if err != nil {
		return telquery.SpanPage{}, fmt.Errorf("search spans: %w", err)
	}
	defer rs.Close()
	page := telquery.SpanPage{Spans: []telquery.Span{}}
	var lastSeq int64
	for rs.Next() {
		sp, seq, err := scanSpan(rs)
		if err != nil {
			return page, fmt.Errorf("search spans: %w", err)
		}
		if len(page.Spans) == limit {
			page.Next = encodeCursor(page.Spans[limit-1].Start, lastSeq)
			break
		}
		page.Spans, lastSeq = append(page.Spans, sp), seq
	}
	if err := rs.Err(); err != nil {
		return page, fmt.Errorf("search spans: %w", err)
	}
	return page, nil
}

// Trace returns every stored span of a trace as a tree; store.ErrNotFound when
// there is none.
func (s *Reader) Trace(ctx context.Context, traceID string) (telquery.Trace, error) {
	hi, lo, err := ParseTraceID(strings.ToLower(traceID))
	if err != nil {
		return telquery.Trace{}, err
	}
	rs, err := s.query(ctx, "SELECT "+spanColumns+" FROM spans WHERE trace_hi = ? AND trace_lo = ? ORDER BY start, seq", hi, lo)
	if err != nil {
		return telquery.Trace{}, fmt.Errorf("read trace: %w", err)
	}
	defer rs.Close()
	var spans []*telquery.Span
	for rs.Next() {
		sp, _, err := scanSpan(rs)
		if err != nil {
			return telquery.Trace{}, fmt.Errorf("read trace: %w", err)
		}
		spans = append(spans, &sp)
	}
	if err := rs.Err(); err != nil {
		return telquery.Trace{}, fmt.Errorf("read trace: %w", err)
	}
	if len(spans) == 0 {
		return telquery.Trace{}, fmt.Errorf("trace %s: %w", traceID, store.ErrNotFound)
	}
	return buildTrace(spans), nil
}

// buildTrace links spans (sorted by start) into a tree. A span whose parent is
// missing becomes a root, so a partly arrived trace still shows everything.
func buildTrace(spans []*telquery.Span) telquery.Trace {
	t := telquery.Trace{TraceID: spans[0].TraceID, Start: spans[0].Start, SpanCount: len(spans), Roots: []*telquery.Span{}}
	byID := make(map[string]*telquery.Span, len(spans))
	end := t.Start
	services := map[string]bool{}
	for _, sp := range spans {
		byID[sp.SpanID] = sp
		if e := sp.Start.Add(time.Duration(sp.DurationMS * 1e6)); e.After(end) {
			end = e
		}
		if sp.Status == telquery.StatusError {
			t.Errors++
		}
		if sp.Context.Service != "" && !services[sp.Context.Service] {
			services[sp.Context.Service] = true
			t.Services = append(t.Services, sp.Context.Service)
		}
		sp.OffsetMS = float64(sp.Start.Sub(t.Start)) / 1e6
	}
	// Link each span under its parent by walking down from the roots, placing
	// every span once: spans whose parents form a cycle (malformed, but any agent
	// can send them) are never reached that way and become roots themselves, so
	// the tree stays a tree and every span shows.
	children := map[string][]*telquery.Span{}
	for _, sp := range spans {
		if p, ok := byID[sp.ParentSpanID]; ok && sp.ParentSpanID != "" && p != sp {
			children[sp.ParentSpanID] = append(children[sp.ParentSpanID], sp)
		}
	}
	placed := make(map[*telquery.Span]bool, len(spans))
	var place func(sp *telquery.Span)
	place = func(sp *telquery.Span) {
		placed[sp] = true
		for _, c := range children[sp.SpanID] {
			if !placed[c] {
				sp.Children = append(sp.Children, c)
				place(c)
			}
		}
	}
	for _, sp := range spans {
		if p, ok := byID[sp.ParentSpanID]; !ok || sp.ParentSpanID == "" || p == sp {
			t.Roots = append(t.Roots, sp)
			place(sp)
		}
	}
	for _, sp := range spans {
		if !placed[sp] {
			t.Roots = append(t.Roots, sp)
			place(sp)
		}
	}
	t.DurationMS = float64(end.Sub(t.Start)) / 1e6
	sort.Strings(t.Services)
	return t
}
