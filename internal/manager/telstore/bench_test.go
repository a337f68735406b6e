package telstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// BenchmarkConsumeLogs measures ingest of 1,000-record log batches, decode to
// commit; see bench/store for the sustained figures against the targets.
func BenchmarkConsumeLogs(b *testing.B) {
	s := open(b, b.TempDir(), Settings{})
	batches := make([]consumer.Batch, 64)
	for i := range batches {
		specs := make([]logSpec, 1000)
		for j := range specs {
			specs[j] = logSpec{at: t0.Add(time.Duration(i*1000+j) * time.Millisecond), severity: plog.SeverityNumberInfo,
				body: fmt.Sprintf("GET /api/orders/%d completed in %dms", j*7919%10007, j%250), attrs: map[string]string{"http.route": "/api/orders/{id}"}}
		}
		batches[i] = logBatch(b, dep{fmt.Sprintf("dep-%03d", i%16), "acme", "1.0.0", "checkout", ""}, specs...)
	}
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
