package telstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telstoretest"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// BenchmarkConsumeLogs measures ingest of 1,000-record log batches, decode to
// commit; see bench/store for the sustained figures against the targets.
func BenchmarkConsumeLogs(b *testing.B) {
	s := open(b, b.TempDir(), Settings{})
	batches := telstoretest.LogLoad(b, 64, 1000)
	b.ResetTimer()
	b.SetParallelism(4)
	var n int64
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := s.Consume(context.Background(), batches[i%len(batches)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	n = int64(b.N) * 1000
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkConsumeHistograms measures ingest of the ingress proxy's collection
// rounds: 1,000 cumulative http.server.request.duration points with the
// semantic conventions' 14 bucket bounds, plus their request counters, decode
// to commit.
func BenchmarkConsumeHistograms(b *testing.B) {
	s := open(b, b.TempDir(), Settings{})
	bounds := []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	batches := make([]consumer.Batch, 16)
	for i := range batches {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		tagResource(rm.Resource(), dep{ID: fmt.Sprintf("dep-%03d", i%16), Customer: "acme", Release: "1.0.0", Service: "periscope-agent"})
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		h := ms.AppendEmpty()
		h.SetName("http.server.request.duration")
		h.SetUnit("s")
		hs := h.SetEmptyHistogram()
		hs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		c := ms.AppendEmpty()
		c.SetName("periscope.ingress.requests")
		cs := c.SetEmptySum()
		cs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		at := pcommon.NewTimestampFromTime(t0.Add(time.Duration(i) * 10 * time.Second))
		for j := range 500 {
			attrs := pcommon.NewMap()
			attrs.PutStr("periscope.ingress.name", "shop")
			attrs.PutStr("http.route", fmt.Sprintf("/api/v1/r%d/{id}", j/4))
			attrs.PutStr("http.request.method", "GET")
			attrs.PutStr("periscope.http.status_class", fmt.Sprintf("%dxx", 2+j%4))
			p := hs.DataPoints().AppendEmpty()
			p.SetTimestamp(at)
			counts := make([]uint64, len(bounds)+1)
			var n uint64
			for k := range counts {
				counts[k] = uint64((i + 1) * (j + k) % 97)
				n += counts[k]
			}
			p.ExplicitBounds().FromRaw(bounds)
			p.BucketCounts().FromRaw(counts)
			p.SetCount(n)
			p.SetSum(float64(n) * 0.042)
			attrs.CopyTo(p.Attributes())
			q := cs.DataPoints().AppendEmpty()
			q.SetTimestamp(at)
			q.SetIntValue(int64(n))
			attrs.CopyTo(q.Attributes())
		}
		data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
		if err != nil {
			b.Fatal(err)
		}
		batches[i] = consumer.Batch{Signal: otlp.Metrics, DeploymentID: fmt.Sprintf("dep-%03d", i%16), Received: t0, Data: data}
	}
	b.ResetTimer()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := s.Consume(context.Background(), batches[i%len(batches)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "points/s")
}
