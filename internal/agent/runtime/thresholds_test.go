package runtime_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage"
	"github.com/periscope-dev/periscope/internal/otlp/consumer/consumertest"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// lagSource reports one consumer's pending messages as a queue source does.
type lagSource struct {
	name    string
	pending int64
	err     error
}

func (s *lagSource) Name() string { return s.name }
func (s *lagSource) Collect(_ context.Context, now time.Time, ms pmetric.MetricSlice) error {
	if s.err != nil {
		return s.err
	}
	pts := runtime.Gauge(ms, "periscope.queue.consumer.pending", "{messages}", "lag")
	runtime.Point(pts, now, s.pending, "messaging.system", "nats", "messaging.destination.name", "orders", "messaging.consumer.group.name", "workers")
	return nil
}

func healthOf(calls []healthCall) map[string]healthCall {
	got := map[string]healthCall{}
	for _, c := range calls {
		got[c.name] = c
	}
	return got
}

func TestAThresholdBreachIsAnUnhealthyComponentUntilBackUnder(t *testing.T) {
	h := &healthSink{}
	q := &lagSource{name: "nats/orders", pending: 1200}
	c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{q}, Consumer: &consumertest.Recorder{}, Health: h,
		Thresholds: thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}}}})
	if err != nil {
		t.Fatal(err)
	}
	const comp = "threshold nats/orders lag"
	for _, step := range []struct {
		name   string
		change func()
		want   *healthCall // nil: nothing reported for comp
	}{
		{"over the threshold", func() {}, &healthCall{comp, false, "orders consumer workers lag 1200 > 1000"}},
		{"unchanged is not reported again", func() {}, nil},
		{"the source fails: the breach stays", func() { q.err = context.DeadlineExceeded }, nil},
		{"back under", func() { q.err, q.pending = nil, 10 }, &healthCall{comp, true, ""}},
		{"over again", func() { q.pending = 5000 }, &healthCall{comp, false, "orders consumer workers lag 5000 > 1000"}},
		{"raised above the lag", func() {
			c.SetThresholds(thresholds.Set{Queues: []thresholds.QueueRule{{Source: "nats/orders", MaxLag: 10000}}})
		},
			&healthCall{comp, true, ""}},
		{"removed", func() { q.pending = 1 << 40; c.SetThresholds(thresholds.Set{}) }, nil},
	} {
		step.change()
		c.Round(context.Background())
		got, seen := healthOf(h.take())[comp]
		switch {
		case step.want == nil && seen:
			t.Errorf("%s: reported %+v", step.name, got)
		case step.want != nil && got != *step.want:
			t.Errorf("%s: got %+v, want %+v", step.name, got, *step.want)
		}
	}
}

func TestDiskFreeThresholdOnARealVolume(t *testing.T) {
	src, err := storage.New(storage.Config{Kind: storage.KindFilesystem, Name: "data", Paths: []string{t.TempDir()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &healthSink{}
	// No volume has more than 100 TiB free here, and every one has a byte.
	c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{src}, Consumer: &consumertest.Recorder{}, Health: h,
		Thresholds: thresholds.Set{Filesystems: []thresholds.FilesystemRule{{Source: "filesystem/data", MinFreeBytes: 100 << 40}}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Round(context.Background())
	got := healthOf(h.take())["threshold filesystem/data disk"]
	if got.healthy || !strings.Contains(got.lastErr, " B < 109951162777600 B") {
		t.Errorf("disk below its minimum: %+v", got)
	}
	c.SetThresholds(thresholds.Set{Filesystems: []thresholds.FilesystemRule{{Source: "*", MinFreeBytes: 1}}})
	c.Round(context.Background())
	if got := healthOf(h.take())["threshold filesystem/data disk"]; !got.healthy {
		t.Errorf("disk above its minimum: %+v", got)
	}
}
