// Package runtimetest builds the OTLP metrics the agent's runtime collector
// sends (docs/signals.md), so the telemetry store, API and dashboard tests feed
// the store what a real agent would, through its normal ingest path.
package runtimetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Round is collection round i (from 0) of a deployment's agent taken at at,
// with these figures:
//   - sources nats/orders up, redis/cache down with "NOAUTH Authentication required";
//   - ingress shop, route /orders/{id}: cumulative 100*(i+1) 2xx requests of
//     10 ms and 10*(i+1) 5xx of 100 ms, as periscope.ingress.requests and the
//     http.server.request.duration histogram with DurationBounds (10 ms in
//     the bucket (5 ms, 10 ms], 100 ms in (75 ms, 100 ms]);
//   - NATS stream ORDERS: depth 100*i, bytes 1000*i, oldest age 12.5 s;
//     consumer billing: pending 100*i, ack pending 5;
//   - s3/exports bucket customer-exports: 1000 objects, 4,096,000 bytes, partial;
//   - redis/cache: 1 MiB used, 42 keys in db 0;
//   - postgres/main database app: 9e6 bytes, public.orders 5e6 bytes and 1234
//     rows, public.users 3e6 bytes;
//   - filesystem/data /var/lib/app on /var: 600 used, 300 free, 100 reserved,
//     1000 limit, utilization 2/3.
//
// It panics if the request cannot be encoded, which cannot happen.
func Round(deployment string, at time.Time, i int) consumer.Batch {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr(otlp.AttrDeploymentID, deployment)
	rm.Resource().Attributes().PutStr("service.name", "periscope-agent")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("periscope-agent/runtime")
	ms := sm.Metrics()
	ts := pcommon.NewTimestampFromTime(at)
	type kv = map[string]any
	put := func(m pcommon.Map, attrs kv) {
		for k, v := range attrs {
			switch v := v.(type) {
			case string:
				m.PutStr(k, v)
			case bool:
				m.PutBool(k, v)
			case int:
				m.PutInt(k, int64(v))
			}
		}
	}
	gauge := func(name string, v float64, attrs kv) {
		m := ms.AppendEmpty()
		m.SetName(name)
		p := m.SetEmptyGauge().DataPoints().AppendEmpty()
		p.SetTimestamp(ts)
		p.SetDoubleValue(v)
		put(p.Attributes(), attrs)
	}
	updown := func(name string, v float64, attrs kv) {
		m := ms.AppendEmpty()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		p := s.DataPoints().AppendEmpty()
		p.SetTimestamp(ts)
		p.SetIntValue(int64(v))
		put(p.Attributes(), attrs)
	}
	gauge("periscope.source.up", 1, kv{"periscope.source.name": "nats/orders", "periscope.source.kind": "nats"})
	gauge("periscope.source.up", 0, kv{"periscope.source.name": "redis/cache", "periscope.source.kind": "redis",
		"periscope.source.error": "NOAUTH Authentication required"})

	reqs := ms.AppendEmpty()
	reqs.SetName("periscope.ingress.requests")
	reqs.SetUnit("{request}")
	rs := reqs.SetEmptySum()
	rs.SetIsMonotonic(true)
	rs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dur := ms.AppendEmpty()
	dur.SetName("http.server.request.duration")
	dur.SetUnit("s")
	hs := dur.SetEmptyHistogram()
	hs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for _, c := range []struct {
		class, code string
		n           int
		seconds     float64
	}{{"2xx", "200", 100 * (i + 1), 0.01}, {"5xx", "503", 10 * (i + 1), 0.1}} {
		attrs := kv{"periscope.ingress.name": "shop", "http.route": "/orders/{id}", "http.request.method": "GET",
			"periscope.http.status_class": c.class, "server.address": "0.0.0.0", "url.scheme": "http"}
		p := rs.DataPoints().AppendEmpty()
		p.SetTimestamp(ts)
		p.SetIntValue(int64(c.n))
		put(p.Attributes(), attrs)
		h := hs.DataPoints().AppendEmpty()
		h.SetTimestamp(ts)
		h.SetCount(uint64(c.n))
		h.SetSum(float64(c.n) * c.seconds)
		h.ExplicitBounds().FromRaw(DurationBounds)
		buckets := make([]uint64, len(DurationBounds)+1)
		buckets[slices.Index(DurationBounds, c.seconds)] = uint64(c.n) // (previous bound, c.seconds]
		h.BucketCounts().FromRaw(buckets)
		put(h.Attributes(), attrs)
	}

	stream := kv{"messaging.system": "nats", "messaging.destination.name": "ORDERS"}
	gauge("periscope.queue.depth", float64(100*i), stream)
	gauge("periscope.queue.bytes", float64(1000*i), stream)
	gauge("periscope.queue.oldest_age", 12.5, stream)
	group := kv{"messaging.system": "nats", "messaging.destination.name": "ORDERS", "messaging.consumer.group.name": "billing"}
	gauge("periscope.queue.consumer.pending", float64(100*i), group)
	gauge("periscope.queue.consumer.ack_pending", 5, group)

	bucket := kv{"periscope.source.name": "s3/exports", "aws.s3.bucket": "customer-exports", "periscope.partial": true}
	gauge("periscope.storage.objects", 1000, bucket)
	gauge("periscope.storage.size", 4096000, bucket)
	gauge("periscope.storage.listed", 1000, bucket)
	gauge("periscope.redis.memory.used", 1<<20, kv{"periscope.source.name": "redis/cache"})
	gauge("periscope.redis.keys", 42, kv{"periscope.source.name": "redis/cache", "db.namespace": "0"})
	pg := kv{"periscope.source.name": "postgres/main", "db.namespace": "app"}
	gauge("periscope.postgresql.database.size", 9e6, pg)
	gauge("periscope.postgresql.table.size", 5e6, kv{"periscope.source.name": "postgres/main", "db.namespace": "app", "db.collection.name": "public.orders"})
	gauge("periscope.postgresql.table.rows", 1234, kv{"periscope.source.name": "postgres/main", "db.namespace": "app", "db.collection.name": "public.orders"})
	gauge("periscope.postgresql.table.size", 3e6, kv{"periscope.source.name": "postgres/main", "db.namespace": "app", "db.collection.name": "public.users"})
	fs := func(state string) kv {
		a := kv{"periscope.source.name": "filesystem/data", "system.filesystem.mountpoint": "/var", "periscope.filesystem.path": "/var/lib/app"}
		if state != "" {
			a["system.filesystem.state"] = state
		}
		return a
	}
	updown("system.filesystem.usage", 600, fs("used"))
	updown("system.filesystem.usage", 300, fs("free"))
	updown("system.filesystem.usage", 100, fs("reserved"))
	updown("system.filesystem.limit", 1000, fs(""))
	gauge("system.filesystem.utilization", 600.0/900.0, fs(""))

	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		panic(err)
	}
	return consumer.Batch{Signal: otlp.Metrics, DeploymentID: deployment, Received: at, Data: data}
}

// DurationBounds are the semantic conventions' bucket bounds, in seconds, for
// http.server.request.duration, which the agent's ingress proxy uses.
var DurationBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Consumer is the telemetry store's ingest side.
type Consumer interface {
	Consume(ctx context.Context, b consumer.Batch) error
	Flush(ctx context.Context) error
}

// Feed sends st four rounds of deployment's agent at t0, t0+1m, t0+5m and
// t0+10m and waits until they are stored: a 10-minute window ending at t0+12m
// then starts at t0+2m, with rounds 0 and 1 before it (round 1 the baseline of
// cumulative figures) and rounds 2 and 3 in it.
func Feed(tb testing.TB, st Consumer, t0 time.Time, deployment string) {
	tb.Helper()
	for i, at := range []time.Time{t0, t0.Add(time.Minute), t0.Add(5 * time.Minute), t0.Add(10 * time.Minute)} {
		if err := st.Consume(context.Background(), Round(deployment, at, i)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := st.Flush(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// FedStore opens a telemetry store in a temporary directory whose clock reads
// t0+12m, fed as Feed says.
func FedStore(tb testing.TB, t0 time.Time, deployment string) *telstore.Store {
	tb.Helper()
	st, err := telstore.Open(context.Background(), tb.TempDir(), telstore.Settings{Clock: clock.NewFake(t0.Add(12 * time.Minute))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	Feed(tb, st, t0, deployment)
	return st
}
