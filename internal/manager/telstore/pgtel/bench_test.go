package pgtel

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telstoretest"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// benchConsume sends batches from 4 goroutines, each an agent queue of its own
// whose stream mark every commit checks and advances, and reports records/s.
func benchConsume(b *testing.B, batches []consumer.Batch) {
	s := open(b, testenv.PostgresDatabase(b), Settings{Clock: clock.NewFake(telstoretest.T0.Add(time.Hour))})
	per := batches[0].Records
	var queues atomic.Int64
	b.ResetTimer()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		stream := fmt.Sprintf("bench/%d", queues.Add(1))
		var seq uint64
		for i := 0; pb.Next(); i++ {
			bt := batches[i%len(batches)]
			bt.Stream, bt.First, bt.Last = stream, seq+1, seq+uint64(bt.Records)
			seq = bt.Last
			if err := s.Consume(context.Background(), bt); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)*float64(per)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkConsumeLogs measures ingest of 1,000-record log batches into
// PostgreSQL, decode to commit, like the embedded store's benchmark of the
// same name.
func BenchmarkConsumeLogs(b *testing.B) {
	benchConsume(b, telstoretest.LogLoad(b, 64, 1000))
}

// BenchmarkConsumeSpans measures ingest of 1,000-span batches of entry spans,
// whose RED rollups are summed into the per-minute rows in the same
// transaction.
func BenchmarkConsumeSpans(b *testing.B) {
	batches := make([]consumer.Batch, 64)
	for i := range batches {
		d := telstoretest.Dep{ID: fmt.Sprintf("dep-%03d", i%16), Customer: "acme", Release: "1.0.0", Service: "checkout"}
		batches[i] = telstoretest.SpanBatch(b, d, telstoretest.Requests(uint64(i*1000+1), 1000, 20,
			telstoretest.T0.Add(time.Duration(i)*time.Second), 30*time.Millisecond, fmt.Sprintf("/r%d", i%8))...)
	}
	benchConsume(b, batches)
}
