package telstore

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Context column order, shared by every table and by ctxCols.
const (
	cDeployment = iota
	cCustomer
	cCloud
	cRegion
	cRelease
	cStack
	cService
	cFunction
	cContainer
	cReplica
	nCtx
)

// ctxColumns names the context columns in ctxCols order.
var ctxColumns = [nCtx]string{"deployment", "customer", "cloud", "region", "release", "stack", "service", "function", "container", "replica"}

type ctxCols [nCtx]string

// resourceColumns names the resources table's context columns: ctxColumns
// without function, which varies by row.
var resourceColumns = [nCtx - 1]string{"deployment", "customer", "cloud", "region", "release", "stack", "service", "container", "replica"}

// resourceKeys maps the resource attributes that become context columns; they are
// not repeated in the resource JSON.
var resourceKeys = map[string]int{
	otlp.AttrDeploymentID:  cDeployment,
	otlp.AttrCustomer:      cCustomer,
	otlp.AttrCloudProvider: cCloud,
	otlp.AttrCloudRegion:   cRegion,
	otlp.AttrRelease:       cRelease,
	otlp.AttrStack:         cStack,
	"service.name":         cService,
	"faas.name":            cFunction,
	"container.name":       cContainer,
	"service.instance.id":  cReplica,
}

// resource is one OTLP resource of a batch: the context columns it sets and its
// other attributes. Rows point at it rather than copy its strings; the writer
// stores each distinct resource once, in the resources table, and rows refer to
// it by id.
type resource struct {
	// ctx holds the resource's context columns; its function is faas.name, which
	// rows take as their function when set.
	ctx ctxCols
	// json is the rest of the resource's attributes as a JSON object ("" if none).
	json string
	// id is the resource's row in the resources table, set by the writer.
	id int64
	// fixed says some of its strings held invalid UTF-8 (see fixer).
	fixed bool
}

// columns points at the context fields in resourceColumns order, for Scan.
func (r *resource) columns() []any {
	out := make([]any, 0, nCtx-1)
	for i := range r.ctx {
		if i != cFunction {
			out = append(out, &r.ctx[i])
		}
	}
	return out
}

// key identifies a resource by everything the resources table stores of it.
func (r *resource) key() string {
	n := len(r.json) + nCtx
	for _, v := range r.ctx {
		n += len(v)
	}
	b := make([]byte, 0, n)
	for i, v := range r.ctx {
		if i == cFunction {
			continue // rows carry the function
		}
		b = append(b, v...)
		b = append(b, 0)
	}
	return string(append(b, r.json...))
}

type logRow struct {
	ts               time.Time
	res              *resource
	function         string
	severity         uint8
	severityText     string
	body             string
	traceHi, traceLo int64
	spanID           int64
	hasTrace         bool
	hasSpan          bool
	attrs            string
}

type spanRow struct {
	start            time.Time
	durationNS       int64
	traceHi, traceLo int64
	spanID, parentID int64
	hasParent        bool
	name             string
	kind, status     uint8
	statusMessage    string
	entry            bool
	res              *resource
	function         string
	attrs            string
	// events is the span's events as a JSON array ("" when none).
	events string
}

type pointRow struct {
	ts          time.Time
	name, kind  string
	unit        string
	temporality uint8
	value       float64
	count       uint64
	sum         float64
	hasCount    bool
	// buckets is an explicit histogram's bounds and counts as stored (see
	// migration 4), "" when it has none that can be read
	// (telquery.Histogram.Valid).
	buckets  string
	res      *resource
	function string
	attrs    string
}

// rows is one batch converted to table rows.
type rows struct {
	resources []*resource
	logs      []logRow
	spans     []spanRow
	points    []pointRow
	// fix makes every string valid UTF-8 and counts what it changed.
	fix fixer
	// fixedRows counts, per table, rows with a string fix changed (their own or
	// their resource's).
	fixedRows [3]int
}

// fixer makes strings valid UTF-8 for the store, replacing each invalid byte
// sequence with U+FFFD as the Collector's pdata and Go's strings.ToValidUTF8 do.
// OTLP requires valid UTF-8 but applications log arbitrary bytes (file names,
// user input), and DuckDB refuses such a string (as NULL, failing NOT NULL) on
// every retry: keeping the record with a visible mark beats losing the batch and
// holding up everything queued behind it.
type fixer struct {
	// strings counts the strings that needed fixing.
	strings int
}

// str returns s, or s with its invalid UTF-8 replaced.
func (f *fixer) str(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	f.strings++
	return strings.ToValidUTF8(s, "\uFFFD")
}

// row notes whether the row built since before (fix's count then) or its
// resource needed fixing.
func (r *rows) row(table, before int, res *resource) {
	if r.fix.strings != before || res.fixed {
		r.fixedRows[table]++
	}
}

func (r *rows) count() int { return len(r.logs) + len(r.spans) + len(r.points) }

// convert decodes a batch into rows. The resource's context columns come from the
// tagged resource; deploymentID fills the column if a resource somehow lacks it.
func convert(b consumer.Batch) (*rows, error) {
	r := &rows{}
	switch b.Signal {
	case otlp.Logs:
		ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b.Data)
		if err != nil {
			return nil, fmt.Errorf("decode logs: %w", err)
		}
		r.logs = make([]logRow, 0, ld.LogRecordCount())
		rls := ld.ResourceLogs()
		for i := 0; i < rls.Len(); i++ {
			rl := rls.At(i)
			res := r.resource(rl.Resource(), b.DeploymentID)
			sls := rl.ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				lrs := sls.At(j).LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					before := r.fix.strings
					r.logs = append(r.logs, logFrom(&r.fix, lrs.At(k), res, b.Received))
					r.row(tLogs, before, res)
				}
			}
		}
	case otlp.Traces:
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b.Data)
		if err != nil {
			return nil, fmt.Errorf("decode traces: %w", err)
		}
		r.spans = make([]spanRow, 0, td.SpanCount())
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			rs := rss.At(i)
			res := r.resource(rs.Resource(), b.DeploymentID)
			sss := rs.ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				ss := sss.At(j).Spans()
				for k := 0; k < ss.Len(); k++ {
					before := r.fix.strings
					r.spans = append(r.spans, spanFrom(&r.fix, ss.At(k), res))
					r.row(tSpans, before, res)
				}
			}
		}
	case otlp.Metrics:
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(b.Data)
		if err != nil {
			return nil, fmt.Errorf("decode metrics: %w", err)
		}
		r.points = make([]pointRow, 0, md.DataPointCount())
		rms := md.ResourceMetrics()
		for i := 0; i < rms.Len(); i++ {
			rm := rms.At(i)
			res := r.resource(rm.Resource(), b.DeploymentID)
			sms := rm.ScopeMetrics()
			for j := 0; j < sms.Len(); j++ {
				ms := sms.At(j).Metrics()
				for k := 0; k < ms.Len(); k++ {
					before, n := r.fix.strings, len(r.points)
					r.points = appendPoints(&r.fix, r.points, ms.At(k), res, b.Received)
					if r.fix.strings != before || res.fixed {
						r.fixedRows[tPoints] += len(r.points) - n
					}
				}
			}
		}
	default:
		return nil, fmt.Errorf("unknown signal %d", b.Signal)
	}
	return r, nil
}

// resource converts an OTLP resource and adds it to the batch's resources.
func (r *rows) resource(res pcommon.Resource, deploymentID string) *resource {
	before := r.fix.strings
	c, j := resourceContext(&r.fix, res, deploymentID)
	out := &resource{ctx: c, json: j, fixed: r.fix.strings != before}
	r.resources = append(r.resources, out)
	return out
}

func resourceContext(fix *fixer, res pcommon.Resource, deploymentID string) (ctxCols, string) {
	var c ctxCols
	attrs := res.Attributes()
	pod := ""
	rest := 0
	attrs.Range(func(k string, v pcommon.Value) bool {
		if i, ok := resourceKeys[k]; ok {
			c[i] = fix.str(v.AsString())
		} else {
			// k8s.pod.name stands in for the replica when there is no instance id,
			// and stays in the JSON so an attribute filter on it still matches.
			if k == "k8s.pod.name" {
				pod = fix.str(v.AsString())
			}
			rest++
		}
		return true
	})
	if c[cReplica] == "" && pod != "" {
		c[cReplica] = pod
	}
	if c[cDeployment] == "" {
		c[cDeployment] = deploymentID
	}
	if rest == 0 {
		return c, ""
	}
	return c, string(appendMapJSON(fix, nil, attrs, func(k string) bool {
		_, promoted := resourceKeys[k]
		return promoted
	}))
}

func logFrom(fix *fixer, lr plog.LogRecord, res *resource, received time.Time) logRow {
	ts := lr.Timestamp()
	if ts == 0 {
		ts = lr.ObservedTimestamp()
	}
	t := received
	if ts != 0 {
		t = ts.AsTime()
	}
	row := logRow{ts: t, res: res, function: res.ctx[cFunction], severity: uint8(min(max(int(lr.SeverityNumber()), 0), 24)),
		severityText: fix.str(lr.SeverityText()), body: fix.str(lr.Body().AsString())}
	attrs := lr.Attributes()
	if row.function == "" {
		row.function = fix.str(codeFunction(attrs))
	}
	if attrs.Len() > 0 {
		row.attrs = string(appendMapJSON(fix, nil, attrs, nil))
	}
	if tid := lr.TraceID(); !tid.IsEmpty() {
		row.traceHi, row.traceLo, row.hasTrace = be64(tid[:8]), be64(tid[8:]), true
	}
	if sid := lr.SpanID(); !sid.IsEmpty() {
		row.spanID, row.hasSpan = be64(sid[:]), true
	}
	return row
}

// be64 reads 8 id bytes as the signed number the id columns hold.
func be64(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) }

func codeFunction(attrs pcommon.Map) string {
	for _, k := range []string{"code.function.name", "code.function"} {
		if v, ok := attrs.Get(k); ok && v.Str() != "" {
			return v.Str()
		}
	}
	return ""
}

// spanFunction names what a span ran: the serverless function, else the code
// function, else the HTTP route, else the span name, so grouping by function
// always has a key.
// The resource's function and name come fixed already; fix fixes the rest.
func spanFunction(fix *fixer, s ptrace.Span, resourceFunction, name string) string {
	if resourceFunction != "" {
		return resourceFunction
	}
	if f := codeFunction(s.Attributes()); f != "" {
		return fix.str(f)
	}
	if v, ok := s.Attributes().Get("http.route"); ok && v.Str() != "" {
		return fix.str(v.Str())
	}
	return name
}

func spanFrom(fix *fixer, s ptrace.Span, res *resource) spanRow {
	tid, sid, pid := s.TraceID(), s.SpanID(), s.ParentSpanID()
	start, end := s.StartTimestamp(), s.EndTimestamp()
	d := int64(0)
	if end > start {
		d = int64(end - start)
	}
	kind := s.Kind()
	row := spanRow{
		start: start.AsTime(), durationNS: d,
		traceHi: be64(tid[:8]), traceLo: be64(tid[8:]),
		spanID: be64(sid[:]), name: fix.str(s.Name()), kind: uint8(kind),
		status: uint8(s.Status().Code()), statusMessage: fix.str(s.Status().Message()),
		entry: pid.IsEmpty() || kind == ptrace.SpanKindServer || kind == ptrace.SpanKindConsumer,
		res:   res,
	}
	if !pid.IsEmpty() {
		row.parentID, row.hasParent = be64(pid[:]), true
	}
	row.function = spanFunction(fix, s, res.ctx[cFunction], row.name)
	if s.Attributes().Len() > 0 {
		row.attrs = string(appendMapJSON(fix, nil, s.Attributes(), nil))
	}
	if evs := s.Events(); evs.Len() > 0 {
		b := []byte{'['}
		for i := 0; i < evs.Len(); i++ {
			e := evs.At(i)
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendJSONString(fix, b, e.Name())
			b = append(b, `,"time":`...)
			b = appendJSONString(fix, b, e.Timestamp().AsTime().UTC().Format(time.RFC3339Nano))
			b = append(b, `,"attributes":`...)
			b = append(appendMapJSON(fix, b, e.Attributes(), nil), '}')
		}
		row.events = string(append(b, ']'))
	}
	return row
}

func appendPoints(fix *fixer, out []pointRow, m pmetric.Metric, res *resource, received time.Time) []pointRow {
	base := pointRow{name: fix.str(m.Name()), unit: fix.str(m.Unit()), res: res, function: res.ctx[cFunction]}
	at := func(ts pcommon.Timestamp) time.Time {
		if ts == 0 {
			return received
		}
		return ts.AsTime()
	}
	number := func(p pmetric.NumberDataPoint) float64 {
		if p.ValueType() == pmetric.NumberDataPointValueTypeInt {
			return float64(p.IntValue())
		}
		return p.DoubleValue()
	}
	add := func(r pointRow, attrs pcommon.Map) {
		if attrs.Len() > 0 {
			r.attrs = string(appendSortedMapJSON(fix, nil, attrs))
		}
		out = append(out, r)
	}
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		base.kind = "gauge"
		ps := m.Gauge().DataPoints()
		for i := 0; i < ps.Len(); i++ {
			r := base
			r.ts, r.value = at(ps.At(i).Timestamp()), number(ps.At(i))
			add(r, ps.At(i).Attributes())
		}
	case pmetric.MetricTypeSum:
		base.kind, base.temporality = "sum", uint8(m.Sum().AggregationTemporality())
		ps := m.Sum().DataPoints()
		for i := 0; i < ps.Len(); i++ {
			r := base
			r.ts, r.value = at(ps.At(i).Timestamp()), number(ps.At(i))
			add(r, ps.At(i).Attributes())
		}
	case pmetric.MetricTypeHistogram:
		base.kind, base.temporality = "histogram", uint8(m.Histogram().AggregationTemporality())
		ps := m.Histogram().DataPoints()
		for i := 0; i < ps.Len(); i++ {
			p := ps.At(i)
			r := base
			r.ts, r.count, r.sum, r.hasCount = at(p.Timestamp()), p.Count(), p.Sum(), true
			r.value = mean(p.Sum(), p.Count())
			r.buckets = histogramText(p)
			add(r, p.Attributes())
		}
	case pmetric.MetricTypeExponentialHistogram:
		base.kind, base.temporality = "exponential_histogram", uint8(m.ExponentialHistogram().AggregationTemporality())
		ps := m.ExponentialHistogram().DataPoints()
		for i := 0; i < ps.Len(); i++ {
			p := ps.At(i)
			r := base
			r.ts, r.count, r.sum, r.hasCount = at(p.Timestamp()), p.Count(), p.Sum(), true
			r.value = mean(p.Sum(), p.Count())
			add(r, p.Attributes())
		}
	case pmetric.MetricTypeSummary:
		base.kind = "summary"
		ps := m.Summary().DataPoints()
		for i := 0; i < ps.Len(); i++ {
			p := ps.At(i)
			r := base
			r.ts, r.count, r.sum, r.hasCount = at(p.Timestamp()), p.Count(), p.Sum(), true
			r.value = mean(p.Sum(), p.Count())
			add(r, p.Attributes())
		}
	}
	return out
}

// histogramText encodes a histogram point's bounds and bucket counts as the
// store keeps them (migration 4), or "" when they cannot be read
// (telquery.Histogram.Valid).
func histogramText(p pmetric.HistogramDataPoint) string {
	bs, cs := p.ExplicitBounds(), p.BucketCounts()
	// Length first, so a hostile point's million buckets are never walked.
	if n := cs.Len(); n == 0 || n > telquery.MaxHistogramBuckets || n != bs.Len()+1 {
		return ""
	}
	var buf [512]byte
	b := buf[:0]
	for i := 0; i < bs.Len(); i++ {
		v := bs.At(i)
		if math.IsNaN(v) || math.IsInf(v, 0) || (i > 0 && v <= bs.At(i-1)) {
			return ""
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	b = append(b, '|')
	for i := 0; i < cs.Len(); i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, cs.At(i), 10)
	}
	return string(b)
}

// parseHistogram decodes what histogramText encoded; ok is false for text it
// could not have written.
func parseHistogram(text string) (telquery.Histogram, bool) {
	var h telquery.Histogram
	bounds, counts, found := strings.Cut(text, "|")
	if !found {
		return h, false
	}
	if bounds != "" {
		for f := range strings.SplitSeq(bounds, ",") {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return h, false
			}
			h.Bounds = append(h.Bounds, v)
		}
	}
	for f := range strings.SplitSeq(counts, ",") {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return h, false
		}
		h.Counts = append(h.Counts, v)
	}
	return h, h.Valid()
}

func mean(sum float64, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// appendMapJSON writes attributes as a JSON object, skipping keys skip reports,
// with invalid UTF-8 in keys and strings replaced (and counted by fix).
// It avoids building map[string]any per record, which dominated ingest profiles.
func appendMapJSON(fix *fixer, b []byte, m pcommon.Map, skip func(string) bool) []byte {
	b = append(b, '{')
	first := true
	m.Range(func(k string, v pcommon.Value) bool {
		if skip != nil && skip(k) {
			return true
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(fix, b, k)
		b = append(b, ':')
		b = appendValueJSON(fix, b, v)
		return true
	})
	return append(b, '}')
}

// appendSortedMapJSON is appendMapJSON with the keys in sorted order. A metric
// series is its name and point attributes, grouped on the stored JSON text;
// senders that put the same attributes in another order (an SDK's map
// iteration, a new agent release) would otherwise split one series in two.
// Already sorted maps, the common case, cost one extra pass over the keys.
func appendSortedMapJSON(fix *fixer, b []byte, m pcommon.Map) []byte {
	sorted, prev := true, ""
	m.Range(func(k string, _ pcommon.Value) bool {
		if k < prev {
			sorted = false
			return false
		}
		prev = k
		return true
	})
	if sorted {
		return appendMapJSON(fix, b, m, nil)
	}
	type kv struct {
		k string
		v pcommon.Value
	}
	all := make([]kv, 0, m.Len())
	m.Range(func(k string, v pcommon.Value) bool {
		all = append(all, kv{k, v})
		return true
	})
	slices.SortStableFunc(all, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	b = append(b, '{')
	for i, e := range all {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(fix, b, e.k)
		b = append(b, ':')
		b = appendValueJSON(fix, b, e.v)
	}
	return append(b, '}')
}

func appendValueJSON(fix *fixer, b []byte, v pcommon.Value) []byte {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return appendJSONString(fix, b, v.Str())
	case pcommon.ValueTypeInt:
		return strconv.AppendInt(b, v.Int(), 10)
	case pcommon.ValueTypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return appendJSONString(fix, b, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(b, v.Bool())
	case pcommon.ValueTypeBytes:
		return appendJSONString(fix, b, base64.StdEncoding.EncodeToString(v.Bytes().AsRaw()))
	case pcommon.ValueTypeMap:
		return appendMapJSON(fix, b, v.Map(), nil)
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		b = append(b, '[')
		for i := 0; i < s.Len(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValueJSON(fix, b, s.At(i))
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

func appendJSONString(fix *fixer, b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(fix.str(s))
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
