// Package telquery is the query model of the operational telemetry store: the
// filters and the results of the investigation queries (logs, spans, traces, RED
// series, release comparison, metric series). It is pure Go so the store, the REST
// API and the CLI share one definition, and it maps queries to and from URL
// parameters so the API and its client cannot disagree on names.
package telquery

import (
	"time"
)

// Context is the deployment context a record carries, as real columns.
type Context struct {
	Deployment string `json:"deployment"`
	Customer   string `json:"customer"`
	Cloud      string `json:"cloud"`
	Region     string `json:"region"`
	Release    string `json:"release"`
	Stack      string `json:"stack"`
	Service    string `json:"service"`
	Function   string `json:"function"`
	Container  string `json:"container"`
	Replica    string `json:"replica"`
}

// Filter selects records by deployment context and time. Empty fields match
// everything; a zero Since or Until leaves that end open unless the query has a
// default window.
type Filter struct {
	Deployment string
	Customer   string
	Cloud      string
	Region     string
	Release    string
	Stack      string
	Service    string
	Function   string
	Since      time.Time
	Until      time.Time
}

// LogQuery searches log records, newest first.
type LogQuery struct {
	Filter
	// MinSeverity keeps records whose OTLP severity number is at least this
	// (9 = INFO, 13 = WARN, 17 = ERROR).
	MinSeverity int
	// Contains keeps records whose body contains this text (case-insensitive).
	Contains string
	// Attrs keeps records where each attribute equals the value; a record's own
	// attributes are looked up first, then its resource's.
	Attrs map[string]string
	// TraceID keeps the records of one trace (hex).
	TraceID string
	// Limit bounds the page (default 100, at most 1000).
	Limit int
	// Cursor continues a previous page.
	Cursor string
}

// Log is one stored log record.
type Log struct {
	Time         time.Time      `json:"time"`
	Severity     int            `json:"severity"`
	SeverityText string         `json:"severity_text"`
	Body         string         `json:"body"`
	TraceID      string         `json:"trace_id,omitempty"`
	SpanID       string         `json:"span_id,omitempty"`
	Context      Context        `json:"context"`
	Attributes   map[string]any `json:"attributes"`
	Resource     map[string]any `json:"resource"`
}

// LogPage is one page of log records.
type LogPage struct {
	Logs []Log `json:"logs"`
	// Next continues the search ("" when there is nothing more).
	Next string `json:"next"`
}

// SpanQuery searches spans, newest first.
type SpanQuery struct {
	Filter
	// Name keeps spans with exactly this name.
	Name string
	// ErrorsOnly keeps spans whose status is error.
	ErrorsOnly bool
	// MinDuration keeps spans at least this long.
	MinDuration time.Duration
	// RootsOnly keeps entry spans (server or consumer spans, and spans without a
	// parent): one per request.
	RootsOnly bool
	// Limit bounds the page (default 100, at most 1000).
	Limit int
	// Cursor continues a previous page.
	Cursor string
}

// Span statuses.
const (
	StatusUnset = "unset"
	StatusOK    = "ok"
	StatusError = "error"
)

// Span is one stored span. In a Trace, Children holds the spans whose parent it is.
type Span struct {
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	ParentSpanID  string         `json:"parent_span_id,omitempty"`
	Name          string         `json:"name"`
	Kind          string         `json:"kind"`
	Start         time.Time      `json:"start"`
	DurationMS    float64        `json:"duration_ms"`
	Status        string         `json:"status"`
	StatusMessage string         `json:"status_message,omitempty"`
	Context       Context        `json:"context"`
	Attributes    map[string]any `json:"attributes"`
	// Events are what happened during the span (an exception, a retry), in order.
	Events []SpanEvent `json:"events,omitempty"`
	// OffsetMS is the span's start relative to the trace's first span (traces only).
	OffsetMS float64 `json:"offset_ms"`
	Children []*Span `json:"children,omitempty"`
}

// SpanEvent is one event of a span.
type SpanEvent struct {
	Name       string         `json:"name"`
	Time       time.Time      `json:"time"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// SpanPage is one page of spans.
type SpanPage struct {
	Spans []Span `json:"spans"`
	Next  string `json:"next"`
}

// Trace is a whole trace as a tree.
type Trace struct {
	TraceID    string    `json:"trace_id"`
	Start      time.Time `json:"start"`
	DurationMS float64   `json:"duration_ms"`
	SpanCount  int       `json:"span_count"`
	Errors     int       `json:"errors"`
	Services   []string  `json:"services"`
	// Roots are the spans without a parent in the trace (more than one when a
	// parent never arrived).
	Roots []*Span `json:"roots"`
}

// Group-by dimensions of RED series.
const (
	ByNone       = ""
	ByRelease    = "release"
	ByDeployment = "deployment"
	ByFunction   = "function"
	ByService    = "service"
	ByCustomer   = "customer"
)

// REDQuery asks for rate, errors and duration over time.
type REDQuery struct {
	Filter
	// Step is the width of each point (default: about 60 points over the range,
	// at least a minute).
	Step time.Duration
	// GroupBy splits the series: release, deployment, function, service, customer
	// or nothing.
	GroupBy string
	// Raw answers from the stored spans instead of the per-minute rollups; slower,
	// kept for comparison and for checking the rollups.
	Raw bool
}

// Stats are request figures over a span of time. Latencies are milliseconds;
// percentiles come from the rollups' latency histogram (within about 10%) unless
// the query asked for raw rows.
type Stats struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	// Rate is requests per second.
	Rate float64 `json:"rate"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
}

// REDPoint is one step of a series.
type REDPoint struct {
	Time time.Time `json:"time"`
	Stats
}

// REDSeries is one group's series.
type REDSeries struct {
	Group  string     `json:"group"`
	Total  Stats      `json:"total"`
	Points []REDPoint `json:"points"`
}

// RED is the answer to a REDQuery.
type RED struct {
	Since   time.Time   `json:"since"`
	Until   time.Time   `json:"until"`
	StepSec float64     `json:"step_seconds"`
	GroupBy string      `json:"group_by"`
	Series  []REDSeries `json:"series"`
}

// CompareQuery compares a release with the one before it. With Deployment set it
// compares that deployment's current release with the release it ran before,
// over equally long windows just after and just before the switch (the
// previous release's a minute longer when both served in the minute of the
// switch, so its side is never a moment of traffic); without, it
// compares the fleet's newest release with the one before over the same window.
type CompareQuery struct {
	Filter
	// Window is how much of each release to compare (default 1h).
	Window time.Duration
	// Against names the release to compare with; empty means the one before.
	Against string
}

// ReleaseWindow is one side of a comparison.
type ReleaseWindow struct {
	Release string    `json:"release"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Stats
}

// Comparison is the answer to a CompareQuery.
type Comparison struct {
	Deployment string        `json:"deployment,omitempty"`
	Current    ReleaseWindow `json:"current"`
	Previous   ReleaseWindow `json:"previous"`
	// ErrorRateChange is current minus previous error rate (0.05 = five points up).
	ErrorRateChange float64 `json:"error_rate_change"`
	// P95Change is current minus previous p95 latency in milliseconds.
	P95Change float64 `json:"p95_change_ms"`
	// P95Ratio is current over previous p95 (0 when the previous had none).
	P95Ratio float64 `json:"p95_ratio"`
}

// Metric aggregations.
const (
	AggAvg  = "avg"
	AggSum  = "sum"
	AggMin  = "min"
	AggMax  = "max"
	AggLast = "last"
)

// MetricQuery asks for the series of one metric.
type MetricQuery struct {
	Filter
	// Name is the metric name (required).
	Name string
	// GroupBy is a context column (deployment, release, service, …) or a data
	// point or resource attribute key.
	GroupBy string
	// Step as in REDQuery.
	Step time.Duration
	// Agg combines the points in one step: avg, sum, min, max or last (default:
	// sum for delta sums, last for cumulative sums, avg otherwise).
	Agg string
}

// MetricPoint is one step of a metric series. For histograms Value is the mean.
type MetricPoint struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// MetricSeries is one group's series.
type MetricSeries struct {
	Group  string        `json:"group"`
	Points []MetricPoint `json:"points"`
}

// Metric is the answer to a MetricQuery.
type Metric struct {
	Name    string         `json:"name"`
	Unit    string         `json:"unit"`
	Kind    string         `json:"kind"`
	Agg     string         `json:"agg"`
	StepSec float64        `json:"step_seconds"`
	GroupBy string         `json:"group_by"`
	Series  []MetricSeries `json:"series"`
}

// MetricNamesQuery asks which metrics the store holds points of, within the
// filter (no time bounds means the whole retained window).
type MetricNamesQuery struct {
	Filter
}

// MetricInfo is one metric the store holds: its latest kind and unit, how many
// points match the filter and when the newest was taken.
type MetricInfo struct {
	Name   string    `json:"name"`
	Kind   string    `json:"kind"`
	Unit   string    `json:"unit"`
	Points int64     `json:"points"`
	Last   time.Time `json:"last"`
}

// MetricNames is the answer to a MetricNamesQuery, sorted by name.
type MetricNames struct {
	Metrics []MetricInfo `json:"metrics"`
}
