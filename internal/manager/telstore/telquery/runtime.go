package telquery

import (
	"net/url"
	"time"
)

// DefaultRuntimeWindow is how far back a runtime query looks when it names no since.
const DefaultRuntimeWindow = 10 * time.Minute

// MaxRuntimeSeries bounds the series one runtime query returns; a deployment
// with more is cut and the answer says so.
const MaxRuntimeSeries = 5000

// RuntimeMetricNames are the metrics the agent's runtime collector sends
// (docs/signals.md) that the runtime view reads.
var RuntimeMetricNames = []string{
	"periscope.source.up",
	"http.server.request.duration", "periscope.ingress.requests",
	"periscope.queue.depth", "periscope.queue.bytes", "periscope.queue.oldest_age", "periscope.queue.consumers",
	"periscope.queue.unacked", "periscope.queue.consumer.pending", "periscope.queue.consumer.ack_pending",
	"periscope.storage.objects", "periscope.storage.size", "periscope.storage.listed",
	"periscope.redis.memory.used", "periscope.redis.memory.limit", "periscope.redis.keys",
	"periscope.postgresql.database.size", "periscope.postgresql.table.size", "periscope.postgresql.table.rows",
	"system.filesystem.usage", "system.filesystem.limit", "system.filesystem.utilization",
}

// RuntimeQuery asks for the newest runtime points of one deployment within
// [Since, Until).
type RuntimeQuery struct {
	Deployment string
	Since      time.Time
	Until      time.Time
}

// RuntimeSeries is one series (metric name and point attributes) of a runtime
// metric: its newest point within the window and, for cumulative metrics, the
// newest point before the window (the baseline a window's increase is taken
// from, looked for as far back as the window is long).
type RuntimeSeries struct {
	Name  string         `json:"name"`
	Kind  string         `json:"kind"`
	Unit  string         `json:"unit"`
	Attrs map[string]any `json:"attributes"`
	Time  time.Time      `json:"time"`
	// Value is the newest point's value (a histogram's mean).
	Value float64 `json:"value"`
	// Count and Sum are a histogram's newest count and sum.
	Count uint64  `json:"count,omitempty"`
	Sum   float64 `json:"sum,omitempty"`
	// Histogram is an explicit histogram's newest buckets; nil for other
	// kinds, and for points stored without buckets.
	Histogram *Histogram `json:"histogram,omitempty"`
	// HasBase is true when a point before the window was found; BaseValue,
	// BaseCount, BaseSum and BaseHistogram are that point's.
	HasBase       bool       `json:"has_base,omitempty"`
	BaseValue     float64    `json:"base_value,omitempty"`
	BaseCount     uint64     `json:"base_count,omitempty"`
	BaseSum       float64    `json:"base_sum,omitempty"`
	BaseHistogram *Histogram `json:"base_histogram,omitempty"`
}

// RuntimeMetrics is the answer to a RuntimeQuery, sorted by name then attributes.
type RuntimeMetrics struct {
	Since  time.Time       `json:"since"`
	Until  time.Time       `json:"until"`
	Series []RuntimeSeries `json:"series"`
	// Truncated is true when the deployment had more than MaxRuntimeSeries series.
	Truncated bool `json:"truncated,omitempty"`
}

// ParseRuntimeQuery reads since= and until= for the deployment named in the
// path; since defaults to DefaultRuntimeWindow before until (or now).
func ParseRuntimeQuery(deployment string, v url.Values, now time.Time) (RuntimeQuery, error) {
	q := RuntimeQuery{Deployment: deployment}
	var err error
	if q.Since, err = ParseTime(v.Get("since"), now); err != nil {
		return q, err
	}
	if q.Until, err = ParseTime(v.Get("until"), now); err != nil {
		return q, err
	}
	return q.withDefaults(now)
}

// WithDefaults fills an open window: until now, since DefaultRuntimeWindow before until.
func (q RuntimeQuery) WithDefaults(now time.Time) (RuntimeQuery, error) { return q.withDefaults(now) }

func (q RuntimeQuery) withDefaults(now time.Time) (RuntimeQuery, error) {
	if q.Until.IsZero() {
		q.Until = now
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-DefaultRuntimeWindow)
	}
	if !q.Until.After(q.Since) {
		return q, invalid("until (%s) must be after since (%s)", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	if q.Until.Sub(q.Since) > 31*24*time.Hour {
		return q, invalid("the window may be at most 31 days")
	}
	return q, nil
}

// Values is the query's URL parameters (the deployment travels in the path).
func (q RuntimeQuery) Values() url.Values {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	return v
}
