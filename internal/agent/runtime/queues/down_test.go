package queues_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/otlp/consumer/consumertest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

type healthRecorder struct {
	mu  sync.Mutex
	got map[string]string // component → "ok" or its last error
}

func (h *healthRecorder) SetComponentHealth(name string, healthy bool, lastError string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if healthy {
		lastError = "ok"
	}
	h.got[name] = lastError
	return nil
}

// TestServersDownAreReportedNotSilent runs every queue source against a port
// nothing listens on through the collector: each is up 0 with its error, and
// an unhealthy component.
func TestServersDownAreReportedNotSilent(t *testing.T) {
	down := testenv.ClosedAddr(t)
	srcs := []runtime.Source{
		&queues.NATS{SourceName: "nats/orders", URL: "nats://" + down, Stream: "ORDERS"},
		&queues.RedisStream{SourceName: "redis-stream/jobs", URL: "redis://" + down, Stream: "jobs"},
		&queues.RabbitMQ{SourceName: "rabbitmq/mail", URL: "amqp://" + down + "/", Queue: "mail"},
	}
	rec := &consumertest.Recorder{}
	h := &healthRecorder{got: map[string]string{}}
	c, err := runtime.New(runtime.Settings{Sources: srcs, Consumer: rec, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	c.Round(context.Background())
	if len(rec.Got) != 1 {
		t.Fatalf("%d requests, want 1", len(rec.Got))
	}
	md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(rec.Got[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	up := map[string]string{}
	for _, m := range md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().All() {
		if m.Name() != runtime.MetricSourceUp {
			t.Errorf("a source that cannot connect reported %s", m.Name())
			continue
		}
		for _, dp := range m.Gauge().DataPoints().All() {
			name, _ := dp.Attributes().Get(runtime.AttrSourceName)
			reason, _ := dp.Attributes().Get(runtime.AttrSourceError)
			if dp.IntValue() != 0 {
				t.Errorf("%s up %d", name.Str(), dp.IntValue())
			}
			up[name.Str()] = reason.Str()
		}
	}
	for _, s := range srcs {
		if !strings.Contains(up[s.Name()], "connection refused") {
			t.Errorf("%s: error attribute %q", s.Name(), up[s.Name()])
		}
		if got := h.got["source "+s.Name()]; !strings.Contains(got, "connection refused") {
			t.Errorf("%s: health %q", s.Name(), got)
		}
	}
}
