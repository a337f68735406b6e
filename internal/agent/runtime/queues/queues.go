// Package queues holds the runtime sources for message queues and streams:
// depth, bytes, age of the oldest message and consumer lag, from NATS
// JetStream, Redis Streams, RabbitMQ and SQS-compatible queues (one file per
// server). Each source connects for one collection and closes again: between
// rounds (30s by default) there is no connection to keep healthy, and a server
// that went down shows at the next round as periscope.source.up 0.
//
// Metric names, units and attributes are listed in docs/signals.md.
package queues

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
)

// Metric names of the queue family.
const (
	MetricDepth      = "periscope.queue.depth"
	MetricBytes      = "periscope.queue.bytes"
	MetricOldestAge  = "periscope.queue.oldest_age"
	MetricConsumers  = "periscope.queue.consumers"
	MetricUnacked    = "periscope.queue.unacked"
	MetricPending    = "periscope.queue.consumer.pending"
	MetricAckPending = "periscope.queue.consumer.ack_pending"
)

// Attribute names (OpenTelemetry messaging semantic conventions).
const (
	AttrSystem      = "messaging.system"
	AttrDestination = "messaging.destination.name"
	AttrGroup       = "messaging.consumer.group.name"
)

// maxGroups bounds the consumers or groups one source reports when it lists
// them all: each is a series, and a stream with thousands of ephemeral
// consumers must not turn into thousands of series every round.
const maxGroups = 100

// figures writes one destination's figures with its attributes, so every
// server's source names and describes them the same way.
type figures struct {
	ms          pmetric.MetricSlice
	now         time.Time
	system      string
	destination string
}

func (f figures) gauge(name, unit, desc string, v int64) {
	runtime.Point(runtime.Gauge(f.ms, name, unit, desc), f.now, v, AttrSystem, f.system, AttrDestination, f.destination)
}

func (f figures) depth(v int64) {
	f.gauge(MetricDepth, "{messages}", "Messages in the queue or stream (for RabbitMQ, those ready for delivery).", v)
}

func (f figures) bytes(v int64) {
	f.gauge(MetricBytes, "By", "Bytes the queue or stream holds.", v)
}

func (f figures) consumers(v int64) {
	f.gauge(MetricConsumers, "{consumers}", "Consumers attached to the queue.", v)
}

func (f figures) unacked(v int64) {
	f.gauge(MetricUnacked, "{messages}", "Messages delivered to consumers and not yet acknowledged.", v)
}

// oldest writes the age of the oldest message, when there is one.
func (f figures) oldest(first time.Time) {
	age := max(f.now.Sub(first), 0)
	runtime.FloatPoint(runtime.Gauge(f.ms, MetricOldestAge, "s", "Age of the oldest message in the queue or stream."),
		f.now, age.Seconds(), AttrSystem, f.system, AttrDestination, f.destination)
}

// lag returns the points of the two per-group metrics, to which the source
// adds one point per consumer or group.
func (f figures) lag() (pending, ackPending pmetric.NumberDataPointSlice) {
	pending = runtime.Gauge(f.ms, MetricPending, "{messages}", "Messages a consumer or group has not been delivered yet (its lag).")
	ackPending = runtime.Gauge(f.ms, MetricAckPending, "{messages}", "Messages delivered to a consumer or group and not yet acknowledged.")
	return pending, ackPending
}

func (f figures) group(pts pmetric.NumberDataPointSlice, group string, v int64) {
	runtime.Point(pts, f.now, v, AttrSystem, f.system, AttrDestination, f.destination, AttrGroup, group)
}

// clamp converts a server's unsigned count to a point value.
func clamp(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}
