package telstore

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

func TestSpanEventsAreKeptInOrder(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	tagResource(rs.Resource(), acmeNew)
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i, events := range [][]string{{"retry", "exception"}, nil} {
		sp := spans.AppendEmpty()
		sp.SetTraceID(traceID(7))
		sp.SetSpanID(spanID(uint64(i + 1)))
		sp.SetName("charge")
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(t0))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Second)))
		for j, name := range events {
			e := sp.Events().AppendEmpty()
			e.SetName(name)
			e.SetTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(j+1) * time.Millisecond)))
			e.Attributes().PutStr("exception.message", "card \xff declined")
			e.Attributes().PutInt("attempt", int64(j+1))
		}
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, s, consumer.Batch{Signal: otlp.Traces, DeploymentID: acmeNew.id, Received: t0, Records: td.SpanCount(), Data: b})

	tr, err := s.Trace(context.Background(), traceHex(traceHiBits, 7))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Roots) != 2 {
		t.Fatalf("%d spans", len(tr.Roots))
	}
	ev := tr.Roots[0].Events
	if len(ev) != 2 || ev[0].Name != "retry" || ev[1].Name != "exception" || !ev[1].Time.Equal(t0.Add(2*time.Millisecond)) ||
		ev[1].Attributes["exception.message"] != "card \uFFFD declined" || ev[1].Attributes["attempt"] != float64(2) {
		t.Errorf("events %+v", ev)
	}
	if tr.Roots[1].Events != nil {
		t.Errorf("a span without events has %+v", tr.Roots[1].Events)
	}
}
