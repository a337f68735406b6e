package regression_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/regression"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

func side(rel string, req int64, errRate, p95 float64) telquery.ReleaseWindow {
	return telquery.ReleaseWindow{Release: rel, Stats: telquery.Stats{Requests: req, ErrorRate: errRate, P95: p95}}
}

func TestJudgeNeedsAClearWorsening(t *testing.T) {
	d := regression.New(nil, nil, regression.Settings{})
	for _, tc := range []struct {
		name      string
		cur, prev telquery.ReleaseWindow
		worse     []string
	}{
		{"errors up 1% to 30%", side("2", 100, 0.30, 50), side("1", 100, 0.01, 50), []string{"error_rate"}},
		{"p95 50 ms to 400 ms", side("2", 100, 0.01, 400), side("1", 100, 0.01, 50), []string{"p95"}},
		{"both", side("2", 100, 0.5, 400), side("1", 100, 0.0, 50), []string{"error_rate", "p95"}},
		{"errors tripled but tiny (0.1% to 0.3%)", side("2", 1000, 0.003, 50), side("1", 1000, 0.001, 50), nil},
		{"errors up 6 points but not doubled (20% to 26%)", side("2", 100, 0.26, 50), side("1", 100, 0.20, 50), nil},
		{"p95 doubled but only 2 ms to 4 ms", side("2", 100, 0, 4), side("1", 100, 0, 2), nil},
		{"too few requests on the new release", side("2", 19, 1, 900), side("1", 100, 0, 50), nil},
		{"better", side("2", 100, 0, 20), side("1", 100, 0.2, 50), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.Judge(telquery.Comparison{Current: tc.cur, Previous: tc.prev})
			if (r == nil) != (tc.worse == nil) {
				t.Fatalf("Judge = %+v, want worse %v", r, tc.worse)
			}
			if r != nil && (len(r.Worse) != len(tc.worse) || r.Worse[0] != tc.worse[0] || r.Release != "2" || r.Previous != "1") {
				t.Fatalf("Judge = %+v, want worse %v of 2 against 1", r, tc.worse)
			}
		})
	}
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// requests sends n server spans of deployment id on release, errs of them
// failing, each lasting dur, spread over the minute from at.
func requests(t *testing.T, s *telstore.Store, id, release string, at time.Time, n, errs int, dur time.Duration) {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	a := rs.Resource().Attributes()
	a.PutStr(otlp.AttrDeploymentID, id)
	a.PutStr(otlp.AttrRelease, release)
	a.PutStr("service.name", "checkout")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		sp := spans.AppendEmpty()
		var tid [16]byte
		binary.BigEndian.PutUint64(tid[:8], uint64(at.UnixNano()))
		binary.BigEndian.PutUint64(tid[8:], uint64(i+1))
		sp.SetTraceID(tid)
		sp.SetSpanID([8]byte{1, byte(i >> 8), byte(i)})
		sp.SetName("POST /pay")
		sp.SetKind(ptrace.SpanKindServer)
		start := at.Add(time.Duration(i) * 100 * time.Millisecond)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(dur)))
		if i < errs {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Consume(context.Background(), consumer.Batch{Signal: otlp.Traces, DeploymentID: id, Received: at, Records: n, Data: b}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckMarksTheRegressedDeploymentOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	st, err := duckdb.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, err := registry.New(st, registry.Settings{Clock: clk, FlushInterval: time.Hour, EvalInterval: time.Hour,
		Params: fleet.Params{HeartbeatInterval: time.Minute, StaleAfter: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer reg.Shutdown(ctx)
	tel, err := telstore.Open(ctx, dir, telstore.Settings{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	if _, err := reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "good", Stack: "app"}, {ID: "bad", Stack: "app"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"good", "bad"} {
		if _, err := reg.Checkin(id, registry.Report{Mode: fleet.ModePull, Description: &registry.Description{Release: "1.0"}}); err != nil {
			t.Fatal(err)
		}
		for m := range 3 {
			requests(t, tel, id, "1.0", t0.Add(time.Duration(m)*time.Minute), 40, 0, 20*time.Millisecond)
		}
	}
	clk.Advance(3 * time.Minute)
	for _, id := range []string{"good", "bad"} {
		if _, err := reg.Checkin(id, registry.Report{Description: &registry.Description{Release: "2.0"}}); err != nil {
			t.Fatal(err)
		}
	}
	for m := 3; m < 6; m++ {
		requests(t, tel, "good", "2.0", t0.Add(time.Duration(m)*time.Minute), 40, 0, 20*time.Millisecond)
		requests(t, tel, "bad", "2.0", t0.Add(time.Duration(m)*time.Minute), 40, 12, 20*time.Millisecond)
	}
	if err := tel.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Minute)
	d := regression.New(reg, tel, regression.Settings{Clock: clk, Window: 10 * time.Minute})
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
	bad, _ := reg.Get("bad")
	if bad.Evaluation.Status != fleet.StatusUnhealthy || bad.Evaluation.ReasonCode != fleet.ReasonRegressed {
		t.Fatalf("bad: %s (%s) %q; want unhealthy, regressed-after-release", bad.Evaluation.Status, bad.Evaluation.ReasonCode, bad.Evaluation.Reason)
	}
	if r := bad.Deployment.Regression; r.Requests != 120 || r.PreviousRequests != 120 || r.ErrorRate != 0.3 || r.PreviousErrorRate != 0 {
		t.Fatalf("evidence %+v; want 36/120 errors against 0/120", r)
	}
	if good, _ := reg.Get("good"); good.Evaluation.Status != fleet.StatusHealthy {
		t.Fatalf("good: %s %q; want healthy", good.Evaluation.Status, good.Evaluation.Reason)
	}
	// Back on 1.0 the verdict about 2.0 no longer applies.
	if _, err := reg.Checkin("bad", registry.Report{Description: &registry.Description{Release: "1.0"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if bad, _ := reg.Get("bad"); bad.Evaluation.Status != fleet.StatusHealthy {
		t.Fatalf("bad back on 1.0: %s %q; want healthy", bad.Evaluation.Status, bad.Evaluation.Reason)
	}
}
