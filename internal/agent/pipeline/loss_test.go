package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/agent/forward"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/queue"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// gate is a manager stand-in that holds every request until release is closed,
// then takes it and counts its log records.
type gate struct {
	started chan struct{} // kicked when a request arrives
	release chan struct{}
	mu      sync.Mutex
	records int
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case g.started <- struct{}{}:
	default:
	}
	<-g.release
	logs, err := readLogs(r)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	g.mu.Lock()
	g.records += logs.LogRecordCount()
	g.mu.Unlock()
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.records
}

// A small drop_oldest queue behind a manager that holds the first batch: records
// are dropped, including from under the batch being sent, and every record sent is
// either delivered or counted dropped, exactly, in the metric, the log and Loss.
func TestDropOldestCountsRecordsExactly(t *testing.T) {
	g := &gate{started: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(g)
	defer srv.Close()
	released := false
	defer func() {
		if !released {
			close(g.release)
		}
	}()
	reg := prometheus.NewRegistry()
	logs := &testenv.Warnings{}
	var mu sync.Mutex
	var reported []Loss
	p, err := New(Settings{
		Logger:   slog.New(logs),
		HTTPAddr: "127.0.0.1:0", QueueDir: t.TempDir(),
		Queue:      queue.Options{MaxBytes: 8 << 10, SegmentBytes: 2 << 10, OnFull: queue.DropOldest},
		Forward:    forward.Settings{Endpoint: srv.URL, Token: "pdt_x", Linger: -1, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		Registerer: reg,
		OnLoss: func(l Loss) {
			mu.Lock()
			reported = append(reported, l)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	shut := false
	defer func() {
		if !shut {
			p.Shutdown(context.Background())
		}
	}()
	_, httpAddr := p.Addrs()

	sent := 0
	post := func(i int) {
		l := plog.NewLogs()
		sl := l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
		n := i%7 + 1
		for j := range n {
			sl.LogRecords().AppendEmpty().Body().SetStr(fmt.Sprintf("request %d record %d %x", i, j, i*7919+j))
		}
		body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
		resp, err := http.Post("http://"+httpAddr+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d; drop_oldest should accept everything", i, resp.StatusCode)
		}
		sent += n
	}
	post(0)
	<-g.started // the first batch is on its way and held
	for i := 1; i < 300; i++ {
		post(i)
	}
	close(g.release)
	released = true

	dropped := func() int { return int(testutil.ToFloat64(p.metrics.dropped.WithLabelValues("logs", "queue_full"))) }
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for g.count()+dropped() != sent {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("delivered %d + dropped %d != sent %d", g.count(), dropped(), sent)
		}
	}
	shut = true
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	delivered, lost := g.count(), dropped()
	if delivered+lost != sent || lost == 0 {
		t.Fatalf("delivered %d + dropped %d, sent %d: want an exact split with some loss", delivered, lost, sent)
	}
	if got := p.Loss(); got.Counts["logs/queue_full"] != int64(lost) || len(got.Counts) != 1 || got.Last.IsZero() {
		t.Errorf("Loss = %+v; want logs/queue_full %d", got, lost)
	}
	first := logs.Matching("dropping telemetry the agent had accepted")
	if len(first) != 1 {
		t.Errorf("first-drop lines: %q; want exactly one", first)
	}
	// Within a minute, the rest of the loss is told once more at most, on the way out.
	if all := logs.Matching("telemetry the agent had accepted"); len(all) > 2 {
		t.Errorf("%d loss lines within a minute, want at most 2: %q", len(all), all)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) == 0 || reported[len(reported)-1].Counts["logs/queue_full"] != int64(lost) {
		t.Errorf("OnLoss got %+v; want the final report to say %d", reported, lost)
	}
}

// The first drop is told at once, later ones at most once a minute with what was
// dropped since the last line, and a drop after a quiet minute at once again.
func TestLossToldAtOnceThenOnceAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &testenv.Warnings{}
		var (
			mu      sync.Mutex
			reports []Loss
		)
		tr := newLossTracker(clock.Real{}, slog.New(logs), func(l Loss) { mu.Lock(); reports = append(reports, l); mu.Unlock() }, 0)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { tr.run(ctx); close(done) }()

		tr.add(otlp.Logs, "queue_full", 5)
		synctest.Wait()
		if got := logs.Matching("dropping telemetry"); len(got) != 1 || !strings.Contains(got[0], "records=5") {
			t.Fatalf("after the first drop: %q; want one line with 5 records", logs.All())
		}
		for range 10 {
			tr.add(otlp.Logs, "queue_full", 3)
			tr.add(otlp.Traces, "refused", 1)
			time.Sleep(5 * time.Second)
		}
		synctest.Wait()
		if len(logs.All()) != 1 {
			t.Fatalf("within the minute: %q; want no new line", logs.All())
		}
		time.Sleep(10 * time.Second) // the minute is up
		synctest.Wait()
		if len(logs.All()) != 2 || !strings.Contains(logs.All()[1], "records=40") || !strings.Contains(logs.All()[1], "total_since_start=45") {
			t.Fatalf("after a minute: %q; want a second line with the 40 records since the first", logs.All())
		}
		time.Sleep(10 * time.Minute) // quiet
		synctest.Wait()
		if len(logs.All()) != 2 {
			t.Fatalf("while quiet: %q; want no new line", logs.All())
		}
		tr.add(otlp.Metrics, "expired", 2)
		synctest.Wait()
		if len(logs.All()) != 3 || !strings.Contains(logs.All()[2], "records=2") {
			t.Fatalf("after a quiet spell: %q; want a line at once", logs.All())
		}
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if len(reports) != 3 || reports[2].Counts["logs/queue_full"] != 35 || reports[2].Counts["traces/refused"] != 10 ||
			reports[2].Counts["metrics/expired"] != 2 {
			t.Errorf("reports = %+v", reports)
		}
	})
}
