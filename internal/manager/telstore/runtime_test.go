package telstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// runtimeRound is one collection round as the agent's runtime collector sends
// it: a queue depth gauge and the ingress proxy's cumulative request counter.
func runtimeRound(t *testing.T, at time.Time, depth int64, requests int64) consumer.Batch {
	t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	tagResource(rm.Resource(), dep{"acme-prod", "acme", "1.1.0", "periscope-agent", ""})
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("periscope-agent/runtime")
	g := sm.Metrics().AppendEmpty()
	g.SetName("periscope.queue.depth")
	p := g.SetEmptyGauge().DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(at))
	p.SetIntValue(depth)
	p.Attributes().PutStr("messaging.system", "nats")
	p.Attributes().PutStr("messaging.destination.name", "ORDERS")
	c := sm.Metrics().AppendEmpty()
	c.SetName("periscope.ingress.requests")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	q := sum.DataPoints().AppendEmpty()
	q.SetTimestamp(pcommon.NewTimestampFromTime(at))
	q.SetIntValue(requests)
	q.Attributes().PutStr("periscope.ingress.name", "shop")
	q.Attributes().PutStr("http.route", "/orders/{id}")
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Metrics, DeploymentID: "acme-prod", Received: at, Data: data}
}

func TestRuntimeGivesTheNewestPointAndTheBaselineBeforeTheWindow(t *testing.T) {
	s := open(t, t.TempDir(), Settings{Clock: clock.NewFake(t0.Add(15 * time.Minute))})
	consume(t, s, runtimeRound(t, t0, 40, 100), runtimeRound(t, t0.Add(4*time.Minute), 30, 150),
		runtimeRound(t, t0.Add(6*time.Minute), 20, 170), runtimeRound(t, t0.Add(9*time.Minute), 7, 230))

	// The default window is the last 10 minutes: from t0+5m.
	m, err := s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Since.Equal(t0.Add(5*time.Minute)) || len(m.Series) != 2 || m.Truncated {
		t.Fatalf("runtime: %+v", m)
	}
	req, depth := m.Series[0], m.Series[1]
	if req.Name != "periscope.ingress.requests" || req.Value != 230 || !req.HasBase || req.BaseValue != 150 ||
		req.Attrs["http.route"] != "/orders/{id}" || !req.Time.Equal(t0.Add(9*time.Minute)) {
		t.Errorf("requests series: %+v", req)
	}
	if depth.Name != "periscope.queue.depth" || depth.Value != 7 || depth.Kind != "gauge" || depth.Attrs["messaging.destination.name"] != "ORDERS" {
		t.Errorf("depth series: %+v", depth)
	}

	// A window with nothing in it answers no series, not stale ones.
	m, err = s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod", Since: t0.Add(10 * time.Minute)})
	if err != nil || len(m.Series) != 0 {
		t.Fatalf("empty window: %+v, %v", m, err)
	}
	if m, err = s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "umbrella-dr"}); err != nil || len(m.Series) != 0 {
		t.Fatalf("another deployment: %+v, %v", m, err)
	}
	if _, err := s.Runtime(context.Background(), telquery.RuntimeQuery{}); !errors.Is(err, telquery.ErrInvalid) {
		t.Errorf("no deployment: %v, want ErrInvalid", err)
	}
}
