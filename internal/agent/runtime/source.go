// Package runtime produces the runtime signals an agent collects without any
// instrumentation in the vendor's service: replica and container health, HTTP
// traffic through its ingress proxy, queue depth and consumer lag, storage and
// KV usage. Every signal is an OpenTelemetry metric that enters the agent's
// pipeline like the application's own (tagged, redacted, queued, forwarded);
// components whose health is watched are also reported over OpAMP, where the
// worst becomes the deployment's status. docs/signals.md lists every name, unit
// and attribute.
//
// Each family is a Source in its own subpackage (queues, storage, supervisor,
// ingress, …); the Collector runs them on an interval.
package runtime

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Source collects one family of runtime signals from one target (a stream, a
// bucket, a volume, a set of replicas).
type Source interface {
	// Name identifies the source in its metrics, health and errors, e.g.
	// "nats/orders" or "s3/exports"; unique within an agent.
	Name() string
	// Collect appends the source's current figures to ms, stamped now. An error
	// means the source could not collect (no permission, server down); what it
	// appended before failing is still sent, and the Collector reports the
	// failure as a metric and in the agent's health instead of going quiet.
	// Collect must honour ctx's deadline.
	Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error
}

// Watcher is a Source that also watches components (replicas, containers,
// pods) whose health the deployment's status depends on.
type Watcher interface {
	Source
	// Components returns the health of every watched component as of the last
	// Collect.
	Components() []Component
}

// Component is the health of one watched component.
type Component struct {
	// Name is the component as the manager shows it, e.g. "worker/2" or
	// "container checkout-api".
	Name    string
	Healthy bool
	// Status says what it is doing in a word or two ("running", "crash-loop",
	// "waiting: CrashLoopBackOff").
	Status string
	// Restarts counts restarts since the agent began watching, or as the
	// platform counts them.
	Restarts int64
	// LastError is the last exit reason and the last lines it wrote to stderr,
	// bounded.
	LastError string
	// Since is when it entered its current status.
	Since time.Time
}

// HealthSink receives component health; the agent's OpAMP client implements it.
type HealthSink interface {
	SetComponentHealth(name string, healthy bool, lastError string) error
}

// Gauge appends a gauge metric with one point per attribute set and returns
// its points, so a source writes each figure in one line.
func Gauge(ms pmetric.MetricSlice, name, unit, description string) pmetric.NumberDataPointSlice {
	m := ms.AppendEmpty()
	m.SetName(name)
	m.SetUnit(unit)
	m.SetDescription(description)
	return m.SetEmptyGauge().DataPoints()
}

// Sum appends a cumulative sum metric (monotonic when mono) and returns its
// points.
func Sum(ms pmetric.MetricSlice, name, unit, description string, mono bool) pmetric.NumberDataPointSlice {
	m := ms.AppendEmpty()
	m.SetName(name)
	m.SetUnit(unit)
	m.SetDescription(description)
	s := m.SetEmptySum()
	s.SetIsMonotonic(mono)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return s.DataPoints()
}

// Point appends an integer point stamped now with string attributes given as
// key, value pairs.
func Point(pts pmetric.NumberDataPointSlice, now time.Time, v int64, kv ...string) pmetric.NumberDataPoint {
	p := pts.AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(now))
	p.SetIntValue(v)
	for i := 0; i+1 < len(kv); i += 2 {
		p.Attributes().PutStr(kv[i], kv[i+1])
	}
	return p
}

// FloatPoint is Point for a floating-point figure.
func FloatPoint(pts pmetric.NumberDataPointSlice, now time.Time, v float64, kv ...string) pmetric.NumberDataPoint {
	p := pts.AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(now))
	p.SetDoubleValue(v)
	for i := 0; i+1 < len(kv); i += 2 {
		p.Attributes().PutStr(kv[i], kv[i+1])
	}
	return p
}
