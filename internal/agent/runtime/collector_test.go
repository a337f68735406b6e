package runtime_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/consumer/consumertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource reports depth as a gauge, or fails with err after appending it.
type fakeSource struct {
	name, kind string
	depth      int64
	err        error
	// block, when set, makes Collect wait for it; with ignoreCtx it does not
	// even watch its context, like a client stuck in a read without deadline.
	block     chan struct{}
	ignoreCtx bool
}

func (f *fakeSource) Name() string { return f.name }
func (f *fakeSource) Kind() string { return f.kind }
func (f *fakeSource) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	if f.block != nil {
		if f.ignoreCtx {
			<-f.block
		} else {
			select {
			case <-f.block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	runtime.Point(runtime.Gauge(ms, "periscope.queue.depth", "{messages}", "depth"), now, f.depth, "messaging.destination.name", f.name)
	return f.err
}

type fakeWatcher struct {
	fakeSource
	comps []runtime.Component
}

func (w *fakeWatcher) Components() []runtime.Component { return w.comps }

type healthCall struct {
	name    string
	healthy bool
	lastErr string
}

type healthSink struct {
	mu    sync.Mutex
	calls []healthCall
}

func (h *healthSink) SetComponentHealth(name string, healthy bool, lastError string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, healthCall{name, healthy, lastError})
	return nil
}

func (h *healthSink) take() []healthCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.calls
	h.calls = nil
	return c
}

// point is one decoded data point: metric name, value and attributes.
type point struct {
	metric string
	value  int64
	attrs  map[string]string
}

func decode(t *testing.T, rec *consumertest.Recorder, i int) (scope string, res map[string]string, pts []point) {
	t.Helper()
	if len(rec.Got) <= i {
		t.Fatalf("consumer got %d requests, want more than %d", len(rec.Got), i)
	}
	r := rec.Got[i]
	if r.Signal != otlp.Metrics {
		t.Fatalf("signal %v, want metrics", r.Signal)
	}
	md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(r.Body)
	if err != nil {
		t.Fatalf("decode request: %v", err)
	}
	if md.ResourceMetrics().Len() != 1 || md.ResourceMetrics().At(0).ScopeMetrics().Len() != 1 {
		t.Fatalf("want one resource with one scope, got %d resources", md.ResourceMetrics().Len())
	}
	rm := md.ResourceMetrics().At(0)
	res = map[string]string{}
	for k, v := range rm.Resource().Attributes().All() {
		res[k] = v.AsString()
	}
	sm := rm.ScopeMetrics().At(0)
	for _, m := range sm.Metrics().All() {
		for _, dp := range m.Gauge().DataPoints().All() {
			p := point{metric: m.Name(), value: dp.IntValue(), attrs: map[string]string{}}
			for k, v := range dp.Attributes().All() {
				p.attrs[k] = v.AsString()
			}
			pts = append(pts, p)
		}
	}
	return sm.Scope().Name(), res, pts
}

func upPoints(pts []point) map[string]point {
	out := map[string]point{}
	for _, p := range pts {
		if p.metric == runtime.MetricSourceUp {
			out[p.attrs[runtime.AttrSourceName]] = p
		}
	}
	return out
}

func TestRoundSendsOneRequestWithEverySourceAndItsUpGauge(t *testing.T) {
	rec := &consumertest.Recorder{}
	h := &healthSink{}
	fc := clock.NewFake(time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC))
	good := &fakeSource{name: "nats/orders", kind: "nats", depth: 300}
	bad := &fakeSource{name: "redis-stream/jobs", kind: "redis-stream", depth: 7, err: errors.New("dial tcp 127.0.0.1:1: connection refused")}
	c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{good, bad}, Consumer: rec, Health: h, Clock: fc,
		Resource: map[string]string{"service.name": "periscope-agent"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Round(context.Background())

	scope, res, pts := decode(t, rec, 0)
	if scope != runtime.ScopeName || res["service.name"] != "periscope-agent" {
		t.Errorf("scope %q resource %v", scope, res)
	}
	depths := map[string]int64{}
	for _, p := range pts {
		if p.metric == "periscope.queue.depth" {
			depths[p.attrs["messaging.destination.name"]] = p.value
		}
	}
	// What a failing source appended before failing is still sent.
	if depths["nats/orders"] != 300 || depths["redis-stream/jobs"] != 7 {
		t.Errorf("depths %v", depths)
	}
	up := upPoints(pts)
	if p := up["nats/orders"]; p.value != 1 || p.attrs[runtime.AttrSourceKind] != "nats" || p.attrs[runtime.AttrSourceError] != "" {
		t.Errorf("good source up point %+v", p)
	}
	if p := up["redis-stream/jobs"]; p.value != 0 || p.attrs[runtime.AttrSourceKind] != "redis-stream" ||
		!strings.Contains(p.attrs[runtime.AttrSourceError], "connection refused") {
		t.Errorf("bad source up point %+v", p)
	}
	calls := h.take()
	want := map[healthCall]bool{
		{"source nats/orders", true, ""}:                                                true,
		{"source redis-stream/jobs", false, "dial tcp 127.0.0.1:1: connection refused"}: true,
	}
	if len(calls) != 2 || !want[calls[0]] || !want[calls[1]] {
		t.Errorf("health calls %+v", calls)
	}

	// Unchanged health is not sent again; a recovery is.
	c.Round(context.Background())
	if calls := h.take(); len(calls) != 0 {
		t.Errorf("unchanged health sent again: %+v", calls)
	}
	bad.err = nil
	c.Round(context.Background())
	if calls := h.take(); len(calls) != 1 || calls[0] != (healthCall{"source redis-stream/jobs", true, ""}) {
		t.Errorf("recovery reported as %+v", calls)
	}
	_, _, pts = decode(t, rec, 2)
	if p := upPoints(pts)["redis-stream/jobs"]; p.value != 1 {
		t.Errorf("recovered source up point %+v", p)
	}
}

func TestErrorTextIsBounded(t *testing.T) {
	rec := &consumertest.Recorder{}
	h := &healthSink{}
	long := strings.Repeat("é", 2000)
	c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{&fakeSource{name: "rabbitmq/x", err: errors.New(long)}},
		Consumer: rec, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	c.Round(context.Background())
	_, _, pts := decode(t, rec, 0)
	got := upPoints(pts)["rabbitmq/x"].attrs[runtime.AttrSourceError]
	if len(got) > runtime.MaxErrorBytes || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") {
		t.Errorf("error attribute of %d bytes: %.40q…", len(got), got)
	}
	// The kind falls back to the name's first part.
	if k := upPoints(pts)["rabbitmq/x"].attrs[runtime.AttrSourceKind]; k != "rabbitmq" {
		t.Errorf("kind %q", k)
	}
	if calls := h.take(); len(calls) != 1 || len(calls[0].lastErr) > runtime.MaxErrorBytes {
		t.Errorf("health calls %+v", calls)
	}
}

func TestOverrunningCollectIsAbandonedAndReportedFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &consumertest.Recorder{}
		h := &healthSink{}
		// hung ignores its context: the round must not wait for it.
		hung := &fakeSource{name: "nats/hung", block: make(chan struct{}), ignoreCtx: true}
		slow := &fakeSource{name: "nats/slow", block: make(chan struct{})}
		fine := &fakeSource{name: "nats/fine", depth: 1}
		c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{hung, slow, fine}, Consumer: rec, Health: h,
			Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.Round(context.Background())
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("round took %s, want the 2s timeout", took)
		}
		_, _, pts := decode(t, rec, 0)
		up := upPoints(pts)
		for _, n := range []string{"nats/hung", "nats/slow"} {
			if p := up[n]; p.value != 0 || !strings.Contains(p.attrs[runtime.AttrSourceError], "timed out after 2s") {
				t.Errorf("%s up point %+v", n, p)
			}
		}
		if up["nats/fine"].value != 1 {
			t.Errorf("fine source %+v", up["nats/fine"])
		}
		for _, p := range pts {
			if p.metric == "periscope.queue.depth" && p.attrs["messaging.destination.name"] != "nats/fine" {
				t.Errorf("an abandoned source's figures were sent: %+v", p)
			}
		}

		// Still hung next round: not started a second time, reported failed.
		c.Round(context.Background())
		_, _, pts = decode(t, rec, 1)
		if p := upPoints(pts)["nats/hung"]; p.value != 0 || !strings.Contains(p.attrs[runtime.AttrSourceError], "previous collect") {
			t.Errorf("hung source in round two %+v", p)
		}
		close(hung.block)
		synctest.Wait()
		c.Round(context.Background())
		_, _, pts = decode(t, rec, 2)
		if p := upPoints(pts)["nats/hung"]; p.value != 1 {
			t.Errorf("released source %+v", p)
		}
	})
}

func TestConcurrencyIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		running, peak := 0, 0
		var srcs []runtime.Source
		for i := range 6 {
			srcs = append(srcs, &countingSource{name: "x/" + string(rune('a'+i)), enter: func(d int) {
				mu.Lock()
				running += d
				peak = max(peak, running)
				mu.Unlock()
			}})
		}
		c, err := runtime.New(runtime.Settings{Sources: srcs, Consumer: &consumertest.Recorder{}, Concurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.Round(context.Background())
		if peak != 2 || time.Since(start) != 3*time.Second {
			t.Errorf("peak %d sources at once, round took %s; want 2 and 3s", peak, time.Since(start))
		}
	})
}

// countingSource takes a second and says when it runs.
type countingSource struct {
	name  string
	enter func(int)
}

func (s *countingSource) Name() string { return s.name }
func (s *countingSource) Collect(ctx context.Context, _ time.Time, _ pmetric.MetricSlice) error {
	s.enter(1)
	defer s.enter(-1)
	select {
	case <-time.After(time.Second):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestWatcherComponentsGoToHealth(t *testing.T) {
	h := &healthSink{}
	w := &fakeWatcher{fakeSource: fakeSource{name: "supervisor/worker"}, comps: []runtime.Component{
		{Name: "worker/0", Healthy: true, Status: "running"},
		{Name: "worker/1", Healthy: false, Status: "crash-loop", Restarts: 4, LastError: "exit status 2: panic: boom"},
	}}
	c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{w}, Consumer: &consumertest.Recorder{}, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	c.Round(context.Background())
	got := map[string]healthCall{}
	for _, call := range h.take() {
		got[call.name] = call
	}
	if got["worker/0"] != (healthCall{"worker/0", true, "running; restarts 0"}) {
		t.Errorf("worker/0: %+v", got["worker/0"])
	}
	if got["worker/1"] != (healthCall{"worker/1", false, "crash-loop; restarts 4; last error exit status 2: panic: boom"}) {
		t.Errorf("worker/1: %+v", got["worker/1"])
	}
	if !got["source supervisor/worker"].healthy {
		t.Errorf("the watcher itself: %+v", got["source supervisor/worker"])
	}
	w.comps[1].Restarts = 5
	c.Round(context.Background())
	if calls := h.take(); len(calls) != 1 || calls[0].name != "worker/1" || !strings.Contains(calls[0].lastErr, "restarts 5") {
		t.Errorf("second round health %+v", calls)
	}
}

func TestReportSendsAChangeAtOnceAndRoundsDoNotRepeatIt(t *testing.T) {
	h := &healthSink{}
	w := &fakeWatcher{fakeSource: fakeSource{name: "supervisor"}, comps: []runtime.Component{{Name: "worker/0", Healthy: true, Status: "running"}}}
	c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{w}, Consumer: &consumertest.Recorder{}, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	crash := runtime.Component{Name: "worker/0", Status: "crash-loop", Restarts: 1, LastError: "exit status 3"}
	c.Report(crash)
	want := healthCall{"worker/0", false, "crash-loop; restarts 1; last error exit status 3"}
	if calls := h.take(); len(calls) != 1 || calls[0] != want {
		t.Fatalf("Report sent %+v, want %+v", calls, want)
	}
	c.Report(crash)
	w.comps = []runtime.Component{crash}
	c.Round(context.Background())
	for _, call := range h.take() {
		if call.name == "worker/0" {
			t.Errorf("an unchanged component was sent again: %+v", call)
		}
	}
}

// counter counts the requests it takes, for tests that read while the
// collector runs.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) Consume(context.Context, consumer.Request) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return nil
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestStartCollectsEveryIntervalUntilShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &counter{}
		c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{&fakeSource{name: "nats/a"}}, Consumer: rec,
			Interval: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if rec.count() != 1 {
			t.Fatalf("after start: %d requests, want the first round at once", rec.count())
		}
		time.Sleep(90 * time.Second) // fake time in the bubble: three intervals
		synctest.Wait()
		if rec.count() != 4 {
			t.Errorf("after 90s: %d requests, want 4", rec.count())
		}
		if err := c.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := c.Shutdown(context.Background()); err != nil {
			t.Errorf("second shutdown: %v", err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if rec.count() != 4 {
			t.Errorf("collected after shutdown: %d requests", rec.count())
		}
	})
}

func TestShutdownHonoursItsDeadlineWithAHungSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hung := &fakeSource{name: "nats/hung", block: make(chan struct{}), ignoreCtx: true}
		c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{hung}, Consumer: &consumertest.Recorder{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("shutdown with a hung source: %v", err)
		}
		close(hung.block)
		if err := c.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown once it returned: %v", err)
		}
	})
}

func TestNewRefusesBadSettings(t *testing.T) {
	rec := &consumertest.Recorder{}
	for name, s := range map[string]runtime.Settings{
		"no consumer": {},
		"duplicate":   {Consumer: rec, Sources: []runtime.Source{&fakeSource{name: "a"}, &fakeSource{name: "a"}}},
		"unnamed":     {Consumer: rec, Sources: []runtime.Source{&fakeSource{}}},
		"negative":    {Consumer: rec, Timeout: -1},
	} {
		if _, err := runtime.New(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := runtime.New(runtime.Settings{Consumer: rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown without start: %v", err)
	}
}

// The manager's store tells series apart by their resource as written: the
// same resource in another order would make each round a series of its own.
func TestTheResourceIsWrittenInTheSameOrderEveryRound(t *testing.T) {
	rec := &consumertest.Recorder{}
	res := map[string]string{"service.name": "periscope-agent", "service.version": "1.0.0", "host.name": "vm", "a": "1", "z": "2"}
	c, err := runtime.New(runtime.Settings{Sources: []runtime.Source{&fakeSource{name: "nats/orders", kind: "nats"}}, Consumer: rec, Resource: res})
	if err != nil {
		t.Fatal(err)
	}
	var first []string
	for i := range 20 {
		c.Round(context.Background())
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(rec.Got[i].Body)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range md.ResourceMetrics().At(0).Resource().Attributes().All() {
			keys = append(keys, k)
		}
		if i == 0 {
			first = keys
		} else if strings.Join(keys, ",") != strings.Join(first, ",") {
			t.Fatalf("round %d wrote the resource as %v, round 0 as %v", i, keys, first)
		}
	}
}
