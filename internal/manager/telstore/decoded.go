package telstore

import (
	"time"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Decoded is one batch decoded into the store's rows, for a writer of another
// engine (the PostgreSQL store): the same decoding, context columns, JSON and
// invalid UTF-8 repair as the embedded store, so both keep the same records.
type Decoded struct{ r *rows }

// Decode decodes a batch; an error means it never will (consumer.Unstorable).
func Decode(b consumer.Batch) (*Decoded, error) {
	r, err := convert(b)
	if err != nil {
		return nil, err
	}
	return &Decoded{r: r}, nil
}

// Columns of the values LogValues, SpanValues, PointValues and ResourceValues
// give, in their order; the rows' table adds seq (and resources, id).
var (
	LogColumns      = []string{"ts", "res", "function", "severity", "severity_text", "body", "trace_hi", "trace_lo", "span_id", "attrs"}
	SpanColumns     = []string{"start", "duration_ns", "trace_hi", "trace_lo", "span_id", "parent_span_id", "name", "kind", "status", "status_message", "entry", "res", "function", "attrs", "events"}
	PointColumns    = []string{"ts", "name", "kind", "unit", "temporality", "value", "count", "sum", "res", "function", "attrs", "buckets"}
	ResourceColumns = append(resourceColumns[:], "resource")
)

// Counts returns how many logs, spans and metric points the batch holds.
func (d *Decoded) Counts() (logs, spans, points int) {
	return len(d.r.logs), len(d.r.spans), len(d.r.points)
}

// FixedStrings is how many strings held invalid UTF-8 and were repaired.
func (d *Decoded) FixedStrings() int { return d.r.fix.strings }

// Resources is how many resources the batch has (not necessarily distinct).
func (d *Decoded) Resources() int { return len(d.r.resources) }

// ResourceKey identifies resource i by everything stored of it.
func (d *Decoded) ResourceKey(i int) string { return d.r.resources[i].key() }

// ResourceValues appends resource i's values in ResourceColumns order.
func (d *Decoded) ResourceValues(dst []any, i int) []any {
	r := d.r.resources[i]
	for c, v := range r.ctx {
		if c != cFunction {
			dst = append(dst, v)
		}
	}
	return append(dst, nullStr(r.json))
}

// SetResourceID gives resource i its stored id, which its rows then carry.
func (d *Decoded) SetResourceID(i int, id int64) { d.r.resources[i].id = id }

// LogValues appends log i's values in LogColumns order.
func (d *Decoded) LogValues(dst []any, i int) []any {
	l := &d.r.logs[i]
	return append(dst, l.ts.UTC(), l.res.id, l.function, l.severity, l.severityText, l.body,
		nullI64(l.traceHi, l.hasTrace), nullI64(l.traceLo, l.hasTrace), nullI64(l.spanID, l.hasSpan), nullStr(l.attrs))
}

// SpanValues appends span i's values in SpanColumns order.
func (d *Decoded) SpanValues(dst []any, i int) []any {
	s := &d.r.spans[i]
	return append(dst, s.start.UTC(), s.durationNS, s.traceHi, s.traceLo, s.spanID,
		nullI64(s.parentID, s.hasParent), s.name, s.kind, s.status, nullStr(s.statusMessage), s.entry,
		s.res.id, s.function, nullStr(s.attrs), nullStr(s.events))
}

// PointValues appends metric point i's values in PointColumns order; count is
// a uint64 (nil without one).
func (d *Decoded) PointValues(dst []any, i int) []any {
	m := &d.r.points[i]
	var count, sum any
	if m.hasCount {
		count, sum = m.count, m.sum
	}
	return append(dst, m.ts.UTC(), m.name, m.kind, m.unit, m.temporality, m.value, count, sum,
		m.res.id, m.function, nullStr(m.attrs), nullStr(m.buckets))
}

// Times calls fn with the time of every row, for a writer that partitions by time.
func (d *Decoded) Times(fn func(time.Time)) {
	for i := range d.r.logs {
		fn(d.r.logs[i].ts)
	}
	for i := range d.r.spans {
		fn(d.r.spans[i].start)
	}
	for i := range d.r.points {
		fn(d.r.points[i].ts)
	}
}

// RollupRow is one minute of RED figures of one context, as red_minute and
// red_hist hold them.
type RollupRow struct {
	Minute time.Time
	// Context is deployment, customer, cloud, region, release, stack, service
	// and function, in red_minute's column order (RollupColumns).
	Context          [cFunction + 1]string
	Requests, Errors int64
	DurationNS       float64
	// Buckets lists the latency histogram's non-empty buckets and Counts their
	// counts.
	Buckets []uint8
	Counts  []int64
}

// RollupColumns are RollupRow.Context's columns.
var RollupColumns = ctxColumns[:cFunction+1]

// Rollup accumulates the RED rollups of the batches' entry spans.
type Rollup struct{ r rollup }

// NewRollup returns an empty Rollup.
func NewRollup() *Rollup { return &Rollup{r: rollup{}} }

// Add adds d's entry spans.
func (r *Rollup) Add(d *Decoded) {
	for i := range d.r.spans {
		r.r.add(&d.r.spans[i])
	}
}

// Rows returns the accumulated figures, one row per minute and context.
func (r *Rollup) Rows() []RollupRow {
	out := make([]RollupRow, 0, len(r.r))
	for k, a := range r.r {
		row := RollupRow{Minute: time.Unix(k.minute, 0).UTC(), Context: k.ctx, Requests: a.requests, Errors: a.errors, DurationNS: a.durationNS}
		for b, n := range a.h {
			if n != 0 {
				row.Buckets, row.Counts = append(row.Buckets, uint8(b)), append(row.Counts, n)
			}
		}
		out = append(out, row)
	}
	return out
}
