package export

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/queue"
)

func logBatch(t *testing.T, deployment string, records int) consumer.Batch {
	t.Helper()
	l := plog.NewLogs()
	sl := l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	for i := 0; i < records; i++ {
		sl.LogRecords().AppendEmpty().Body().SetStr("entry")
	}
	data, err := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Logs, DeploymentID: deployment, Received: time.Now(), Records: records, Data: data}
}

func lines(t *testing.T, path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); n++ {
	}
	return n
}

// TestFanoutDeadDestinationBlocksNothing sends to a working file exporter and an
// OTLP/HTTP exporter whose endpoint is down: ingest never waits, the file gets every
// batch, and the dead exporter keeps its batches queued (on disk, across a restart)
// until its destination comes back. It runs in a synctest bubble: synctest.Wait
// returns once both delivery loops wait (for a batch, or out a backoff), and the
// backoffs pass in the bubble's time.
func TestFanoutDeadDestinationBlocksNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.jsonl")
		build := func(reg prometheus.Registerer) *Fanout {
			file, err := New(Config{Name: "file", Type: "file", Path: path})
			if err != nil {
				t.Fatal(err)
			}
			dead, err := New(Config{Name: "dead", Type: "otlphttp", Endpoint: "http://127.0.0.1:1", Timeout: Duration(time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			f, err := NewFanout([]Exporter{file, dead}, FanoutSettings{Dir: filepath.Join(dir, "queues"),
				Queue: queue.Options{MaxBytes: 1 << 20}, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		reg := prometheus.NewRegistry()
		f := build(reg)
		f.Start(context.Background())
		// The dead destination's goroutines all wait in the bubble's time, so this
		// measures whether Consume itself waits for it.
		start := time.Now()
		for i := 0; i < 50; i++ {
			if err := f.Consume(context.Background(), logBatch(t, "acme-prod", 3)); err != nil {
				t.Fatal(err)
			}
		}
		if took := time.Since(start); took > 0 {
			t.Errorf("queuing 50 batches waited %v for a dead destination", took)
		}
		synctest.Wait()
		if n := lines(t, path); n != 50 {
			t.Fatalf("file exporter has %d of 50 batches", n)
		}
		if got := testutil.ToFloat64(f.metrics.sent.WithLabelValues("file", "logs")); got != 150 {
			t.Errorf("file sent records = %v, want 150", got)
		}
		for attempts := 1; testutil.ToFloat64(f.metrics.failed.WithLabelValues("dead")) < 2; attempts++ {
			if attempts > 10 {
				t.Fatalf("dead exporter: %v failed attempts, %v dropped records; want retries",
					testutil.ToFloat64(f.metrics.failed.WithLabelValues("dead")),
					testutil.ToFloat64(f.metrics.dropped.WithLabelValues("dead", "logs", "refused")))
			}
			time.Sleep(20 * time.Millisecond) // the bubble's time: the longest backoff passes at once
			synctest.Wait()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}

		// After a restart the dead exporter still holds all 50 batches; the file none.
		f = build(nil)
		defer f.Shutdown(context.Background())
		for _, l := range f.lanes {
			want := int64(0)
			if l.exp.Name() == "dead" {
				want = 50
			}
			if got := l.q.Stats().Records; got != want {
				t.Errorf("%s queue holds %d batches after restart, want %d", l.exp.Name(), got, want)
			}
		}
	})
}
