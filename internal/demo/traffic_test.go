package demo

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/otlp"
)

// shape sums up a batch's requests.
type shape struct {
	requests, errors int
	p95              time.Duration
	// brokenIn counts failing internal spans by function.
	brokenIn map[string]int
}

func measure(t *testing.T, b *batch, from, to time.Time) shape {
	t.Helper()
	s := shape{brokenIn: map[string]int{}}
	var durs []time.Duration
	perTrace := map[string]int{}
	rss := b.traces.ResourceSpans()
	for i := range rss.Len() {
		res := rss.At(i).Resource().Attributes()
		if _, ok := res.Get("service.name"); !ok {
			t.Fatal("a resource has no service.name")
		}
		for _, k := range otlp.ContextKeys {
			if _, ok := res.Get(k); ok {
				t.Errorf("the application set %s, which only the agent and manager write", k)
			}
		}
		spans := rss.At(i).ScopeSpans().At(0).Spans()
		for j := range spans.Len() {
			sp := spans.At(j)
			perTrace[sp.TraceID().String()]++
			failed := sp.Status().Code() == ptrace.StatusCodeError
			switch sp.Kind() {
			case ptrace.SpanKindServer:
				if st := sp.StartTimestamp().AsTime(); st.Before(from) || !st.Before(to) {
					t.Fatalf("request at %v outside [%v, %v)", st, from, to)
				}
				s.requests++
				durs = append(durs, sp.EndTimestamp().AsTime().Sub(sp.StartTimestamp().AsTime()))
				if failed {
					s.errors++
				}
			case ptrace.SpanKindInternal:
				if failed {
					fn, _ := sp.Attributes().Get("code.function.name")
					s.brokenIn[fn.Str()]++
				}
			}
		}
	}
	for id, n := range perTrace {
		if n < 2 || n > 5 {
			t.Fatalf("trace %s has %d spans, want 2 to 5", id, n)
		}
	}
	slices.Sort(durs)
	s.p95 = durs[len(durs)*95/100]
	return s
}

// TestTrafficTellsTheStory checks the request model: a working release fails
// rarely and answers fast; the faulty one fails about one request in seven, in
// apply-discount, and is several times slower at p95.
func TestTrafficTellsTheStory(t *testing.T) {
	from := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	newFeed := func(faulty bool) *feed {
		return &feed{id: "globex-prod", platform: "gcp_kubernetes_engine", release: "1.8.0", faulty: faulty, rng: rand.New(rand.NewPCG(1, 2))}
	}
	batch := func(f *feed) *batch {
		b := f.newBatch()
		b.add(from, to, 10000)
		return b
	}
	good := measure(t, batch(newFeed(false)), from, to)
	bad := measure(t, batch(newFeed(true)), from, to)
	t.Logf("working: %d requests, %d errors, p95 %v; faulty: %d errors, p95 %v, failing in %v",
		good.requests, good.errors, good.p95, bad.errors, bad.p95, bad.brokenIn)

	if rate := float64(good.errors) / float64(good.requests); rate > 0.01 {
		t.Errorf("working release error rate %.4f, want about 0.003", rate)
	}
	if good.p95 < 80*time.Millisecond || good.p95 > 180*time.Millisecond {
		t.Errorf("working release p95 %v, want about 120ms", good.p95)
	}
	if rate := float64(bad.errors) / float64(bad.requests); rate < 0.11 || rate > 0.18 {
		t.Errorf("faulty release error rate %.4f, want about 0.14", rate)
	}
	if bad.p95 < 3*good.p95 {
		t.Errorf("faulty release p95 %v, want several times %v", bad.p95, good.p95)
	}
	if bad.brokenIn["apply-discount"] < 9*bad.errors/10 {
		t.Errorf("faulty release fails in %v, want nearly all in apply-discount", bad.brokenIn)
	}
}

// TestSlowConsumerBacklogGrows checks the queue backlog the lagging
// consumer's deployment shows: the cart's queue depth rises minute after
// minute, while a working consumer's stays small.
func TestSlowConsumerBacklogGrows(t *testing.T) {
	from := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	depths := func(slow bool) []int64 {
		f := &feed{id: "tyrell-prod", release: "1.7.2", slowConsumer: slow, rng: rand.New(rand.NewPCG(5, 6))}
		var out []int64
		for m := range 5 {
			b := f.batch(from.Add(time.Duration(m)*time.Minute), from.Add(time.Duration(m+1)*time.Minute), 1)
			out = append(out, maxDepth(b, "cart"))
		}
		return out
	}
	slow, ok := depths(true), depths(false)
	for i := 1; i < len(slow); i++ {
		if slow[i] < slow[i-1]+25 {
			t.Errorf("the slow consumer's backlog by minute %v, want it to grow by about 30 a minute", slow)
			break
		}
	}
	for _, d := range ok {
		if d > 5 {
			t.Errorf("a working consumer's queue depth by minute %v, want at most 5", ok)
			break
		}
	}
}

// maxDepth is the largest queue.depth any replica of svc reports in b.
func maxDepth(b *batch, svc string) int64 {
	var max int64
	rms := b.metrics.ResourceMetrics()
	for i := range rms.Len() {
		if name, _ := rms.At(i).Resource().Attributes().Get("service.name"); name.Str() != svc {
			continue
		}
		ms := rms.At(i).ScopeMetrics().At(0).Metrics()
		for j := range ms.Len() {
			if ms.At(j).Name() != "queue.depth" {
				continue
			}
			for k := range ms.At(j).Gauge().DataPoints().Len() {
				if v := ms.At(j).Gauge().DataPoints().At(k).IntValue(); v > max {
					max = v
				}
			}
		}
	}
	return max
}

// TestTrafficLogsNameTheFault checks that a failing request's error log says
// what failed and points at the failing span.
func TestTrafficLogsNameTheFault(t *testing.T) {
	from := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	f := &feed{id: "globex-prod", release: "1.8.0", faulty: true, rng: rand.New(rand.NewPCG(3, 4))}
	b := f.newBatch()
	b.add(from, from.Add(time.Minute), 200)
	found := 0
	rls := b.logs.ResourceLogs()
	for i := range rls.Len() {
		lrs := rls.At(i).ScopeLogs().At(0).LogRecords()
		for j := range lrs.Len() {
			lr := lrs.At(j)
			if lr.SeverityNumber() != plog.SeverityNumberError || !strings.HasPrefix(lr.Body().Str(), "apply-discount:") {
				continue
			}
			found++
			if want := "apply-discount: coupon service returned 500 for coupon=SUMMER24"; lr.Body().Str() != want {
				t.Errorf("error log %q, want %q", lr.Body().Str(), want)
			}
			if lr.TraceID().IsEmpty() || lr.SpanID().IsEmpty() {
				t.Error("an error log carries no trace or span id")
			}
			if fn, _ := lr.Attributes().Get("code.function.name"); fn.Str() != "apply-discount" {
				t.Errorf("error log function %q, want apply-discount", fn.Str())
			}
		}
	}
	if found == 0 {
		t.Fatal("no apply-discount error logs in 200 requests of the faulty release")
	}
	if n := b.metrics.DataPointCount(); n == 0 {
		t.Error("no metric data points")
	}
}
