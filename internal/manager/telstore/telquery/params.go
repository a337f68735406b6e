package telquery

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid wraps every parameter error, so the API can answer 400.
var ErrInvalid = errors.New("invalid query")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ParseTime reads a time parameter: RFC 3339, or a Go duration meaning that long
// before now ("15m", "2h").
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, invalid("time %q: want RFC 3339 (2026-11-24T10:00:00Z) or a duration before now (15m)", s)
	}
	return t, nil
}

// ParseSeverity reads a severity: an OTLP severity number or a name
// (trace, debug, info, warn, error, fatal).
func ParseSeverity(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 24 {
		return n, nil
	}
	switch strings.ToLower(s) {
	case "trace":
		return 1, nil
	case "debug":
		return 5, nil
	case "info":
		return 9, nil
	case "warn", "warning":
		return 13, nil
	case "error":
		return 17, nil
	case "fatal":
		return 21, nil
	}
	return 0, invalid("severity %q: want a number 0-24 or trace, debug, info, warn, error, fatal", s)
}

// SeverityName names an OTLP severity number's range.
func SeverityName(n int) string {
	switch {
	case n == 0:
		return "UNSPECIFIED"
	case n < 5:
		return "TRACE"
	case n < 9:
		return "DEBUG"
	case n < 13:
		return "INFO"
	case n < 17:
		return "WARN"
	case n < 21:
		return "ERROR"
	}
	return "FATAL"
}

func parseFilter(v url.Values, now time.Time) (Filter, error) {
	f := Filter{
		Deployment: v.Get("deployment"), Customer: v.Get("customer"), Cloud: v.Get("cloud"),
		Region: v.Get("region"), Release: v.Get("release"), Stack: v.Get("stack"),
		Service: v.Get("service"), Function: v.Get("function"),
	}
	var err error
	if f.Since, err = ParseTime(v.Get("since"), now); err != nil {
		return f, err
	}
	if f.Until, err = ParseTime(v.Get("until"), now); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, invalid("until (%s) must be after since (%s)", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	return f, nil
}

func (f Filter) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("deployment", f.Deployment)
	set("customer", f.Customer)
	set("cloud", f.Cloud)
	set("region", f.Region)
	set("release", f.Release)
	set("stack", f.Stack)
	set("service", f.Service)
	set("function", f.Function)
	if !f.Since.IsZero() {
		v.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		v.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	return v
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, invalid("limit %q: want a positive number", s)
	}
	return n, nil
}

func parseDuration(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, invalid("%s %q: want a duration such as 250ms or 5m", name, s)
	}
	return d, nil
}

func parseBool(name, s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, invalid("%s %q: want true or false", name, s)
	}
	return b, nil
}

// ParseLogQuery reads a LogQuery from URL parameters; attr is repeatable as
// key=value.
func ParseLogQuery(v url.Values, now time.Time) (LogQuery, error) {
	var q LogQuery
	var err error
	if q.Filter, err = parseFilter(v, now); err != nil {
		return q, err
	}
	if q.MinSeverity, err = ParseSeverity(v.Get("min_severity")); err != nil {
		return q, err
	}
	q.Contains, q.Cursor = v.Get("contains"), v.Get("cursor")
	if id := v.Get("trace_id"); id != "" {
		// Checked here, so a log tail refuses a bad id with 400 before it streams.
		if q.TraceID, err = CheckTraceID(id); err != nil {
			return q, err
		}
	}
	for _, a := range v["attr"] {
		k, val, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return q, invalid("attr %q: want key=value", a)
		}
		if q.Attrs == nil {
			q.Attrs = map[string]string{}
		}
		q.Attrs[k] = val
	}
	q.Limit, err = parseLimit(v.Get("limit"))
	return q, err
}

// Values encodes q as URL parameters.
func (q LogQuery) Values() url.Values {
	v := q.Filter.values()
	if q.MinSeverity > 0 {
		v.Set("min_severity", strconv.Itoa(q.MinSeverity))
	}
	if q.Contains != "" {
		v.Set("contains", q.Contains)
	}
	if q.TraceID != "" {
		v.Set("trace_id", q.TraceID)
	}
	keys := make([]string, 0, len(q.Attrs))
	for k := range q.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.Add("attr", k+"="+q.Attrs[k])
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Cursor != "" {
		v.Set("cursor", q.Cursor)
	}
	return v
}

// ParseSpanQuery reads a SpanQuery from URL parameters.
func ParseSpanQuery(v url.Values, now time.Time) (SpanQuery, error) {
	var q SpanQuery
	var err error
	if q.Filter, err = parseFilter(v, now); err != nil {
		return q, err
	}
	q.Name, q.Cursor = v.Get("name"), v.Get("cursor")
	if q.ErrorsOnly, err = parseBool("errors", v.Get("errors")); err != nil {
		return q, err
	}
	if q.RootsOnly, err = parseBool("roots", v.Get("roots")); err != nil {
		return q, err
	}
	if q.MinDuration, err = parseDuration("min_duration", v.Get("min_duration")); err != nil {
		return q, err
	}
	q.Limit, err = parseLimit(v.Get("limit"))
	return q, err
}

// Values encodes q as URL parameters.
func (q SpanQuery) Values() url.Values {
	v := q.Filter.values()
	if q.Name != "" {
		v.Set("name", q.Name)
	}
	if q.ErrorsOnly {
		v.Set("errors", "true")
	}
	if q.RootsOnly {
		v.Set("roots", "true")
	}
	if q.MinDuration > 0 {
		v.Set("min_duration", q.MinDuration.String())
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Cursor != "" {
		v.Set("cursor", q.Cursor)
	}
	return v
}

var groupBys = []string{ByNone, ByRelease, ByDeployment, ByFunction, ByService, ByCustomer}

// ParseREDQuery reads a REDQuery from URL parameters.
func ParseREDQuery(v url.Values, now time.Time) (REDQuery, error) {
	var q REDQuery
	var err error
	if q.Filter, err = parseFilter(v, now); err != nil {
		return q, err
	}
	q.GroupBy = v.Get("group_by")
	ok := false
	for _, g := range groupBys {
		ok = ok || g == q.GroupBy
	}
	if !ok {
		return q, invalid("group_by %q: want release, deployment, function, service or customer", q.GroupBy)
	}
	if q.Step, err = parseDuration("step", v.Get("step")); err != nil {
		return q, err
	}
	q.Raw, err = parseBool("raw", v.Get("raw"))
	return q, err
}

// Values encodes q as URL parameters.
func (q REDQuery) Values() url.Values {
	v := q.Filter.values()
	if q.GroupBy != "" {
		v.Set("group_by", q.GroupBy)
	}
	if q.Step > 0 {
		v.Set("step", q.Step.String())
	}
	if q.Raw {
		v.Set("raw", "true")
	}
	return v
}

// ParseCompareQuery reads a CompareQuery from URL parameters.
func ParseCompareQuery(v url.Values, now time.Time) (CompareQuery, error) {
	var q CompareQuery
	var err error
	if q.Filter, err = parseFilter(v, now); err != nil {
		return q, err
	}
	if !q.Since.IsZero() || !q.Until.IsZero() {
		// The windows come from when each release ran; a range would be ignored.
		return q, invalid("compare takes window (how much of each release), not since or until")
	}
	q.Window, err = parseDuration("window", v.Get("window"))
	q.Against = v.Get("against")
	return q, err
}

// Values encodes q as URL parameters.
func (q CompareQuery) Values() url.Values {
	v := q.Filter.values()
	if q.Window > 0 {
		v.Set("window", q.Window.String())
	}
	if q.Against != "" {
		v.Set("against", q.Against)
	}
	return v
}

// ParseMetricQuery reads a MetricQuery from URL parameters.
func ParseMetricQuery(v url.Values, now time.Time) (MetricQuery, error) {
	var q MetricQuery
	var err error
	if q.Filter, err = parseFilter(v, now); err != nil {
		return q, err
	}
	q.Name, q.GroupBy, q.Agg = v.Get("name"), v.Get("group_by"), v.Get("agg")
	if q.Name == "" {
		return q, invalid("name: the metric name is required")
	}
	switch q.Agg {
	case "", AggAvg, AggSum, AggMin, AggMax, AggLast:
	default:
		return q, invalid("agg %q: want avg, sum, min, max or last", q.Agg)
	}
	q.Step, err = parseDuration("step", v.Get("step"))
	return q, err
}

// Values encodes q as URL parameters.
func (q MetricQuery) Values() url.Values {
	v := q.Filter.values()
	v.Set("name", q.Name)
	if q.GroupBy != "" {
		v.Set("group_by", q.GroupBy)
	}
	if q.Agg != "" {
		v.Set("agg", q.Agg)
	}
	if q.Step > 0 {
		v.Set("step", q.Step.String())
	}
	return v
}

// CheckTraceID returns a trace id in the lowercase hex the store keeps, or an
// ErrInvalid error when s is not 32 hex digits, so callers reject a mistyped id
// before it reaches the store.
func CheckTraceID(s string) (string, error) {
	if len(s) != 32 {
		return "", invalid("trace id %q: want 32 hex digits", s)
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return "", invalid("trace id %q: want 32 hex digits", s)
		}
	}
	return strings.ToLower(s), nil
}

// ParseMetricNamesQuery reads a MetricNamesQuery from URL parameters.
func ParseMetricNamesQuery(v url.Values, now time.Time) (MetricNamesQuery, error) {
	f, err := parseFilter(v, now)
	return MetricNamesQuery{Filter: f}, err
}

// Values encodes q as URL parameters.
func (q MetricNamesQuery) Values() url.Values { return q.Filter.values() }
