package demo

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/retry"
)

// The shape of the demo's application traffic.
const (
	// requestsPerMinute is each deployment's load: enough for steady percentiles,
	// little enough that half an hour of history is sent in a few seconds.
	requestsPerMinute = 40
	// baseErrorRate is how often a request fails in a release that works.
	baseErrorRate = 0.003
	// brokenCoupon is the coupon the faulty release cannot apply.
	brokenCoupon = "SUMMER24"
	// scopeName names the instrumentation scope of every record.
	scopeName = "lighthouse/instrumentation"
	// backfillChunk is how much history one export request carries: the
	// manager stores a few large batches much faster than many small ones, and
	// the demo must start in a few seconds.
	backfillChunk = 6 * time.Minute
)

// appService is one of the demo vendor's services, running replicas instances
// in every deployment.
type appService struct {
	name     string
	replicas int
}

// customers are the shoppers of the demo's vendor's customers: personal data the
// services log and the agent's redaction removes.
var customers = []string{"alice.jones@example.com", "bob@example.org", "carol.smith@example.net", "dave+orders@example.com"}

var appServices = []appService{{"checkout-api", 3}, {"cart", 2}, {"search", 2}}

// clientCall is a call a function makes to a database or another service.
type clientCall struct {
	name     string
	medianMS float64
	attrs    [][2]string
	// failure is its status message when the call fails.
	failure string
}

// step is one function a request runs, in order.
type step struct {
	function string
	medianMS float64
	client   *clientCall
	// failure is what the function reports on the rare failure of a working
	// release ("" when it never fails).
	failure string
	// coupon marks apply-discount: it runs only for carts with a coupon, and is
	// where the faulty release breaks.
	coupon bool
}

// route is one HTTP endpoint of a service; weight is its share of requests.
type route struct {
	service, method, route string
	weight                 int
	steps                  []step
}

var routes = []route{
	{"checkout-api", "POST", "/checkout", 4, []step{
		{function: "apply-discount", medianMS: 2, coupon: true, client: &clientCall{name: "POST coupon-service", medianMS: 6,
			attrs:   [][2]string{{"http.request.method", "POST"}, {"server.address", "coupon-service"}, {"url.full", "http://coupon-service/v2/redeem"}},
			failure: "HTTP 500"}},
		{function: "charge-card", medianMS: 4, failure: "card gateway timeout after 1s", client: &clientCall{name: "POST payments-gateway", medianMS: 60,
			attrs:   [][2]string{{"http.request.method", "POST"}, {"server.address", "payments-gateway"}, {"url.full", "https://payments-gateway/v1/charges"}},
			failure: "timeout after 1s"}},
	}},
	{"cart", "POST", "/cart", 3, []step{
		{function: "price-cart", medianMS: 5},
		{function: "reserve-stock", medianMS: 2, failure: "could not reserve stock: deadlock detected", client: &clientCall{name: "UPDATE stock", medianMS: 16,
			attrs:   [][2]string{{"db.system.name", "postgresql"}, {"db.operation.name", "UPDATE"}, {"db.collection.name", "stock"}},
			failure: "deadlock detected"}},
	}},
	{"search", "GET", "/search", 2, []step{
		{function: "rank-results", medianMS: 6, failure: "search index shard 3 unavailable", client: &clientCall{name: "GET search-index", medianMS: 35,
			attrs:   [][2]string{{"http.request.method", "GET"}, {"server.address", "search-index"}, {"url.full", "http://search-index:9200/products/_search"}},
			failure: "HTTP 503"}},
	}},
	{"checkout-api", "GET", "/api/orders/{id}", 1, []step{
		{function: "load-order", medianMS: 2, failure: "could not load order: connection reset by peer", client: &clientCall{name: "SELECT orders", medianMS: 8,
			attrs:   [][2]string{{"db.system.name", "postgresql"}, {"db.operation.name", "SELECT"}, {"db.collection.name", "orders"}},
			failure: "connection reset by peer"}},
	}},
}

// coupon draws the coupon a cart carries at checkout, "" for none. The broken
// one is the season's favourite, so the faulty release fails 14% of requests.
func (f *feed) coupon() string {
	switch u := f.rng.Float64(); {
	case u < 0.35:
		return brokenCoupon
	case u < 0.5:
		return "WELCOME10"
	case u < 0.6:
		return "FREESHIP"
	}
	return ""
}

// feed is one deployment's application: the requests its services serve and the
// telemetry they send about them. A feed is used by one goroutine at a time.
type feed struct {
	id, token, platform string
	// release is what the deployment runs; faulty makes its requests show the
	// regression the demo is about.
	release string
	faulty  bool
	rng     *rand.Rand
	// slowConsumer makes the backlog of its work queue grow: its consumer
	// cannot keep up.
	slowConsumer bool
	backlog      int
	// light feeds send a quarter of the load, every lightEvery rounds, and no
	// history: generated deployments, so that thousands fit in one process.
	light bool
	// sentUntil is the end of the last interval sent live (zero before).
	sentUntil time.Time
	// shop is the base URL of the deployment's ingress proxy, which live
	// requests go through; "" sends none.
	shop string
}

// count draws how many requests arrive in d at rate times the usual load.
func (f *feed) count(d time.Duration, rate float64) int {
	mean := rate * requestsPerMinute * d.Minutes() * (0.85 + 0.3*f.rng.Float64())
	return int(mean + f.rng.Float64())
}

// latency draws a duration around median milliseconds, skewed the way request
// latencies are.
func (f *feed) latency(medianMS float64) time.Duration {
	return time.Duration(medianMS * math.Exp(0.5*f.rng.NormFloat64()) * float64(time.Millisecond))
}

func (f *feed) id16() (id pcommon.TraceID) {
	for id.IsEmpty() {
		for i := range id {
			id[i] = byte(f.rng.UintN(256))
		}
	}
	return id
}

func (f *feed) id8() (id pcommon.SpanID) {
	for id.IsEmpty() {
		for i := range id {
			id[i] = byte(f.rng.UintN(256))
		}
	}
	return id
}

// replicaName names a service instance the way Kubernetes names a pod: the
// template hash changes with the release, so an upgrade shows new replicas.
func (f *feed) replicaName(svc string, i int) string {
	return fmt.Sprintf("%s-%s-%s", svc, shortHash(10, f.id, svc, f.release), shortHash(5, f.id, svc, f.release, fmt.Sprint(i)))
}

// shortHashSum is a stable number for s.
func shortHashSum(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// shortHash spells a hash of parts in n of the characters Kubernetes uses for
// generated names.
func shortHash(n int, parts ...string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	v := h.Sum64()
	var b strings.Builder
	for range n {
		b.WriteByte(alphabet[v%uint64(len(alphabet))])
		v /= uint64(len(alphabet))
	}
	return b.String()
}

// batch is one export request per signal of a feed's telemetry over an interval.
type batch struct {
	f       *feed
	traces  ptrace.Traces
	logs    plog.Logs
	metrics pmetric.Metrics
	out     map[string]*replicaOut
	// served are its requests as they reach the deployment's ingress.
	served []served
}

// served is one request as the shop's ingress sees it, with the status the
// simulation drew for it.
type served struct {
	method, path string
	status       int
}

// replicaOut is where one service instance's records go in each signal.
type replicaOut struct {
	svc      string
	spans    ptrace.SpanSlice
	logs     plog.LogRecordSlice
	metrics  pmetric.MetricSlice
	requests map[string]int64 // by route
}

// batch returns f's traffic over [from, to) at rate times the usual load:
// its requests, and the metrics its services report every minute.
func (f *feed) batch(from, to time.Time, rate float64) *batch {
	b := f.newBatch()
	for m := from; m.Before(to); m = m.Add(time.Minute) {
		end := m.Add(time.Minute)
		if end.After(to) {
			end = to
		}
		b.add(m, end, f.count(end.Sub(m), rate))
	}
	return b
}

func (f *feed) newBatch() *batch {
	return &batch{f: f, traces: ptrace.NewTraces(), logs: plog.NewLogs(), metrics: pmetric.NewMetrics(), out: map[string]*replicaOut{}}
}

// add adds n requests spread over [from, to), and the metrics the services
// report at to.
func (b *batch) add(from, to time.Time, n int) {
	width := float64(to.Sub(from))
	for range n {
		b.request(from.Add(time.Duration(b.f.rng.Float64() * width)))
	}
	b.report(from, to)
}

// replica returns the outputs of instance i of svc, adding its resource to every
// signal the first time.
func (b *batch) replica(svc string, i int) *replicaOut {
	name := b.f.replicaName(svc, i)
	if o := b.out[name]; o != nil {
		return o
	}
	rs := b.traces.ResourceSpans().AppendEmpty()
	rl := b.logs.ResourceLogs().AppendEmpty()
	rm := b.metrics.ResourceMetrics().AppendEmpty()
	for _, res := range []pcommon.Resource{rs.Resource(), rl.Resource(), rm.Resource()} {
		b.f.describe(res.Attributes(), svc, name)
	}
	ss, sl, sm := rs.ScopeSpans().AppendEmpty(), rl.ScopeLogs().AppendEmpty(), rm.ScopeMetrics().AppendEmpty()
	ss.Scope().SetName(scopeName)
	sl.Scope().SetName(scopeName)
	sm.Scope().SetName(scopeName)
	o := &replicaOut{svc: svc, spans: ss.Spans(), logs: sl.LogRecords(), metrics: sm.Metrics(), requests: map[string]int64{}}
	b.out[name] = o
	return o
}

// describe writes what an application's SDK puts on its resource. The deployment
// context is left out: the agent and then the manager add it.
func (f *feed) describe(a pcommon.Map, svc, instance string) {
	a.PutStr("service.name", svc)
	a.PutStr("service.version", f.release)
	a.PutStr("service.instance.id", instance)
	a.PutStr("container.name", svc)
	if strings.Contains(f.platform, "kubernetes") || strings.HasSuffix(f.platform, "_eks") || strings.HasSuffix(f.platform, "_aks") {
		a.PutStr("k8s.namespace.name", Stack)
		a.PutStr("k8s.pod.name", instance)
	}
}

// pick draws a route by weight.
func (f *feed) pick() route {
	total := 0
	for _, r := range routes {
		total += r.weight
	}
	n := f.rng.IntN(total)
	for _, r := range routes {
		if n < r.weight {
			return r
		}
		n -= r.weight
	}
	return routes[len(routes)-1]
}

// failure is how a request failed: in which function's span, and why.
type failure struct {
	span     ptrace.Span
	function string
	message  string
	coupon   string
}

// request adds one request starting at start: a SERVER span for the route, an
// INTERNAL span per function it runs with a CLIENT span for the call each makes,
// and its log lines.
func (b *batch) request(start time.Time) {
	f := b.f
	r := f.pick()
	out := b.replica(r.service, f.rng.IntN(replicasOf(r.service)))
	out.requests[r.route]++
	trace := f.id16()
	root := out.spans.AppendEmpty()
	root.SetTraceID(trace)
	root.SetSpanID(f.id8())
	root.SetName(r.method + " " + r.route)
	root.SetKind(ptrace.SpanKindServer)
	path := strings.Replace(r.route, "{id}", "ord_"+shortHash(8, trace.String()), 1)
	// What a real service puts in its telemetry without meaning to: who the customer
	// is, where they called from, their session in the URL. The agent removes it.
	customer := customers[int(trace[0])%len(customers)]
	session := shortHash(12, "session", trace.String())
	putStrs(root.Attributes(), [][2]string{{"http.request.method", r.method}, {"http.route", r.route}, {"url.path", path},
		{"url.full", "https://shop.example.com" + path + "?session=" + session}, {"client.address", fmt.Sprintf("198.51.100.%d", trace[1])}})

	// A working release fails now and then, in the last function that can.
	failAt := -1
	if f.rng.Float64() < baseErrorRate {
		for i, s := range r.steps {
			if s.failure != "" {
				failAt = i
			}
		}
	}
	var failed *failure
	at := start.Add(time.Duration(200+f.rng.IntN(800)) * time.Microsecond)
	for i, s := range r.steps {
		coupon := ""
		if s.coupon {
			if coupon = f.coupon(); coupon == "" {
				continue
			}
		}
		sp := out.spans.AppendEmpty()
		sp.SetTraceID(trace)
		sp.SetSpanID(f.id8())
		sp.SetParentSpanID(root.SpanID())
		sp.SetName(s.function)
		sp.SetKind(ptrace.SpanKindInternal)
		sp.Attributes().PutStr("code.function.name", s.function)
		if coupon != "" {
			sp.Attributes().PutStr("coupon.code", coupon)
		}
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
		own := f.latency(s.medianMS)
		at = at.Add(own / 2)
		fails := i == failAt
		message := s.failure
		if s.client != nil {
			d := f.latency(s.client.medianMS)
			if fails {
				d = time.Second + f.latency(3)
			}
			if s.coupon && f.faulty {
				// The new checkout pipeline redeems coupons synchronously with
				// retries; the coupon service answers 500 for the summer coupon.
				d = f.latency(150)
				if coupon == brokenCoupon {
					fails, message = true, "coupon service returned 500 for coupon="+coupon
					d = f.latency(330)
				}
			}
			cl := out.spans.AppendEmpty()
			cl.SetTraceID(trace)
			cl.SetSpanID(f.id8())
			cl.SetParentSpanID(sp.SpanID())
			cl.SetName(s.client.name)
			cl.SetKind(ptrace.SpanKindClient)
			putStrs(cl.Attributes(), s.client.attrs)
			// Instrumentation records the calling function on client spans, so a
			// failing call is found under the function that made it.
			cl.Attributes().PutStr("code.function.name", s.function)
			cl.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
			cl.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(d)))
			if fails {
				cl.Status().SetCode(ptrace.StatusCodeError)
				cl.Status().SetMessage(s.client.failure)
			}
			at = at.Add(d)
			if s.coupon && !fails && d > 250*time.Millisecond {
				b.log(out, at, plog.SeverityNumberWarn, fmt.Sprintf("%s: coupon service took %dms for coupon=%s (budget 100ms)", s.function, d.Milliseconds(), coupon),
					trace, sp.SpanID(), [][2]string{{"code.function.name", s.function}, {"coupon.code", coupon}})
			}
		}
		at = at.Add(own - own/2)
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(at))
		if fails {
			failed = &failure{span: sp, function: s.function, message: message, coupon: coupon}
			break // the request gives up at its first failure
		}
	}
	at = at.Add(time.Duration(100+f.rng.IntN(900)) * time.Microsecond)
	root.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	root.SetEndTimestamp(pcommon.NewTimestampFromTime(at))

	status := int64(200)
	sev := plog.SeverityNumberInfo
	if failed != nil {
		status, sev = 500, plog.SeverityNumberWarn
		for _, sp := range []ptrace.Span{failed.span, root} {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage(failed.message)
		}
		attrs := [][2]string{{"code.function.name", failed.function}}
		if failed.coupon != "" {
			attrs = append(attrs, [2]string{"coupon.code", failed.coupon})
		}
		b.log(out, failed.span.EndTimestamp().AsTime(), plog.SeverityNumberError, failed.function+": "+failed.message, trace, failed.span.SpanID(), attrs)
	}
	root.Attributes().PutInt("http.response.status_code", status)
	b.served = append(b.served, served{method: r.method, path: path, status: int(status)})
	b.log(out, at, sev, fmt.Sprintf("%s %s %d in %dms for %s", r.method, path, status, at.Sub(start).Milliseconds(), customer), trace, root.SpanID(),
		[][2]string{{"http.request.method", r.method}, {"http.route", r.route}, {"enduser.id", customer}})
}

// log adds a log record about span.
func (b *batch) log(out *replicaOut, at time.Time, sev plog.SeverityNumber, body string, trace pcommon.TraceID, span pcommon.SpanID, attrs [][2]string) {
	lr := out.logs.AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(at))
	lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(at))
	lr.SetSeverityNumber(sev)
	lr.SetSeverityText(strings.ToUpper(sev.String()))
	lr.Body().SetStr(body)
	lr.SetTraceID(trace)
	lr.SetSpanID(span)
	putStrs(lr.Attributes(), attrs)
}

// report adds what every replica reports at the end of the interval: its work
// queue's depth and its requests per route since from.
func (b *batch) report(from, to time.Time) {
	start, now := pcommon.NewTimestampFromTime(from), pcommon.NewTimestampFromTime(to)
	for _, svc := range appServices {
		for i := range svc.replicas {
			out := b.replica(svc.name, i)
			depth := b.f.rng.IntN(6)
			switch {
			case b.f.faulty && svc.name == "checkout-api":
				// Checkouts waiting on coupon retries pile up.
				depth = 20 + b.f.rng.IntN(40)
			case b.f.slowConsumer && svc.name == "cart" && i == 0:
				// The cart's stock reservations are consumed slower than
				// they arrive: about 30 more jobs wait every minute.
				b.f.backlog += int(30*to.Sub(from).Minutes()) + b.f.rng.IntN(3)
				depth = b.f.backlog
			}
			g := out.metrics.AppendEmpty()
			g.SetName("queue.depth")
			g.SetUnit("{job}")
			g.SetDescription("Jobs waiting in the service's work queue.")
			p := g.SetEmptyGauge().DataPoints().AppendEmpty()
			p.SetTimestamp(now)
			p.SetIntValue(int64(depth))
			if len(out.requests) == 0 {
				continue
			}
			m := out.metrics.AppendEmpty()
			m.SetName("http.server.requests")
			m.SetUnit("{request}")
			m.SetDescription("Requests served, by route.")
			sum := m.SetEmptySum()
			sum.SetIsMonotonic(true)
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
			for route, n := range out.requests {
				p := sum.DataPoints().AppendEmpty()
				p.SetStartTimestamp(start)
				p.SetTimestamp(now)
				p.SetIntValue(n)
				p.Attributes().PutStr("http.route", route)
			}
			clear(out.requests)
		}
	}
}

func replicasOf(svc string) int {
	for _, s := range appServices {
		if s.name == svc {
			return s.replicas
		}
	}
	return 1
}

func putStrs(m pcommon.Map, kvs [][2]string) {
	for _, kv := range kvs {
		m.PutStr(kv[0], kv[1])
	}
}

// traffic sends the feeds' telemetry to the manager's OTLP/HTTP endpoints with
// each deployment's token: exactly what a deployment's agent forwards, without
// running the agents' telemetry pipeline a dozen times in one process. It passes
// every request through the agents' own redaction with the default policy first,
// so the personal data the demo's services log is removed as an agent removes it.
type traffic struct {
	url    string
	hc     *http.Client
	clk    clock.Clock
	log    *slog.Logger
	redact *redact.Policy
	// speed multiplies the live load, as it divides the scenario's timeline.
	speed float64

	mu     sync.Mutex
	feeds  map[string]*feed // the deployments still serving requests
	rounds int              // live rounds sent
}

// lightEvery is how many live rounds a light feed sends once in, and
// lightRate the share of the usual load it sends.
const (
	lightEvery = 10
	lightRate  = 0.25
)

func newTraffic(url string, clk clock.Clock, log *slog.Logger, speed float64) (*traffic, error) {
	red, err := redact.Compile(redactpolicy.Resolve(redactpolicy.Policy{}), nil)
	if err != nil {
		return nil, err
	}
	return &traffic{url: url, hc: &http.Client{Timeout: 10 * time.Second}, clk: clk, log: log, redact: red, speed: speed,
		feeds: map[string]*feed{}}, nil
}

// add starts sending f's telemetry in the live loop.
func (t *traffic) add(f *feed) {
	t.mu.Lock()
	t.feeds[f.id] = f
	t.mu.Unlock()
}

// remove ends f's traffic, as when its release stops or its agent stops
// forwarding; a newer feed of the same deployment keeps running.
func (t *traffic) remove(f *feed) {
	t.mu.Lock()
	if t.feeds[f.id] == f {
		delete(t.feeds, f.id)
	}
	t.mu.Unlock()
}

// running returns the running feeds, and the number of the round to send.
func (t *traffic) running() ([]*feed, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fs := make([]*feed, 0, len(t.feeds))
	for _, f := range t.feeds {
		fs = append(fs, f)
	}
	t.rounds++
	return fs, t.rounds
}

// backfill sends the feeds' traffic of [from, to), feeds in parallel and
// one export request per signal per backfillChunk.
func (t *traffic) backfill(ctx context.Context, feeds []*feed, from, to time.Time) error {
	errs := make([]error, len(feeds))
	var wg sync.WaitGroup
	for i, f := range feeds {
		wg.Go(func() {
			for m := from; m.Before(to); m = m.Add(backfillChunk) {
				end := m.Add(backfillChunk)
				if end.After(to) {
					end = to
				}
				if err := t.send(ctx, f, f.batch(m, end, 1), true); err != nil {
					errs[i] = fmt.Errorf("history of %s: %w", f.id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// run sends, every interval until ctx ends, each running feed's requests since
// the previous round, starting from since.
func (t *traffic) run(ctx context.Context, since time.Time, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := since
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := t.clk.Now()
		t.round(ctx, last, now)
		last = now
	}
}

// roundGrace is how long a round of live traffic may go on once its context
// ends: a request to the manager cut off mid-way makes it log a batch it could
// not keep, but a manager too busy to answer must not hold up the demo's stop.
const roundGrace = 1500 * time.Millisecond

// round sends each running feed's requests of [from, to): its telemetry to the
// manager, finished within roundGrace when ctx ends meanwhile, and its shop's
// requests through the ingress proxy, which stop with ctx.
func (t *traffic) round(ctx context.Context, from, to time.Time) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		grace := time.NewTimer(roundGrace)
		defer grace.Stop()
		select {
		case <-grace.C:
			cancel()
		case <-sctx.Done():
		}
	})
	defer stop()
	feeds, n := t.running()
	// Feeds are sent roundParallel at a time: one after the other, a
	// thousand deployments' requests take longer than a round on a busy
	// machine, and the live data falls behind for good.
	sem := make(chan struct{}, roundParallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range feeds {
		rate := t.speed
		if f.light {
			// Each light feed has its own round of lightEvery, so a
			// thousand of them spread over the rounds, not all in one.
			if (n+int(shortHashSum(f.id)%lightEvery))%lightEvery != 0 {
				continue
			}
			rate *= lightRate
		}
		select {
		case sem <- struct{}{}:
		case <-sctx.Done():
			t.log.Warn("the manager was too slow to take the demo's last round of telemetry; the rest is left out")
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			// A feed sends from where it left off: a light one skipped
			// rounds, and one started since the last round (a release
			// switched) sends from when it started.
			start := from
			if !f.sentUntil.IsZero() {
				start = f.sentUntil
			}
			f.sentUntil = to
			b := f.batch(start, to, rate)
			if err := t.send(sctx, f, b, false); err != nil {
				t.log.Warn("the manager refused demo telemetry", "deployment", f.id, "error", err)
			}
			t.serve(ctx, f, b.served)
		})
	}
}

// roundParallel is how many feeds a live round sends at once.
const roundParallel = 8

// serve sends the requests through the feed's ingress proxy to its shop, so
// the proxy's figures show the traffic the telemetry describes.
func (t *traffic) serve(ctx context.Context, f *feed, reqs []served) {
	if f.shop == "" {
		return
	}
	for _, r := range reqs {
		req, err := http.NewRequestWithContext(ctx, r.method, f.shop+r.path, nil)
		if err != nil {
			t.log.Warn("a demo request is malformed", "deployment", f.id, "path", r.path, "error", err)
			continue
		}
		req.Header.Set(statusHeader, strconv.Itoa(r.status))
		resp, err := t.hc.Do(req)
		if err != nil {
			// Its agent stopped (the deployment going stale): nothing to serve.
			t.log.Debug("a demo request did not reach the shop", "deployment", f.id, "error", err)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
	}
}

// sink is a deployment's runtime collector's way to the manager: each round,
// redacted as the agent's pipeline redacts it, then sent with the
// deployment's token like its application telemetry.
func (t *traffic) sink(token string) consumer.Consumer {
	return consumer.ConsumerFunc(func(ctx context.Context, r consumer.Request) error {
		data, err := t.redact.Request(r.Signal, nil, r.Body, nil)
		if err != nil {
			return fmt.Errorf("redact %s: %w", r.Signal, err)
		}
		return t.post(ctx, token, r.Signal, data)
	})
}

// send posts a batch's three signals, leaving out any it holds nothing of;
// retrying, it tries each again while the manager is busy (the history,
// which the demo needs; a live round is followed by the next).
func (t *traffic) send(ctx context.Context, f *feed, b *batch, retrying bool) error {
	for _, e := range []struct {
		sig     otlp.Signal
		records int
		marshal func() ([]byte, error)
	}{
		{otlp.Traces, b.traces.SpanCount(), func() ([]byte, error) { return (&ptrace.ProtoMarshaler{}).MarshalTraces(b.traces) }},
		{otlp.Logs, b.logs.LogRecordCount(), func() ([]byte, error) { return (&plog.ProtoMarshaler{}).MarshalLogs(b.logs) }},
		{otlp.Metrics, b.metrics.DataPointCount(), func() ([]byte, error) { return (&pmetric.ProtoMarshaler{}).MarshalMetrics(b.metrics) }},
	} {
		if e.records == 0 {
			continue
		}
		data, err := e.marshal()
		if err != nil {
			return fmt.Errorf("encode %s: %w", e.sig, err)
		}
		if data, err = t.redact.Request(e.sig, nil, data, nil); err != nil {
			return fmt.Errorf("redact %s: %w", e.sig, err)
		}
		post := t.post
		if retrying {
			post = t.postRetrying
		}
		if err := post(ctx, f.token, e.sig, data); err != nil {
			return err
		}
	}
	return nil
}

// post sends one OTLP/HTTP export request, gzipped as agents send it.
func (t *traffic) post(ctx context.Context, token string, sig otlp.Signal, data []byte) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+sig.Path(), &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", otlp.ContentTypeProto)
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := t.hc.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", sig, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("post %s: manager answered %s: %s", sig, resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			// A busy manager: worth another try, after what it asks for.
			d, _ := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), t.clk.Now())
			return retry.Throttle(err, d)
		}
		return err
	}
	return nil
}

// postAttempts is how many times the history's requests are tried: a
// fleet of a thousand agents and fifty SDKs starting together can find the
// manager at its limit of requests in progress, and the demo cannot start
// without its history.
const postAttempts = 8

// postRetrying is post, tried up to postAttempts times while the manager
// throttles it.
func (t *traffic) postRetrying(ctx context.Context, token string, sig otlp.Signal, data []byte) error {
	b := retry.Centred(200*time.Millisecond, 3*time.Second)
	for attempt := 1; ; attempt++ {
		err := t.post(ctx, token, sig, data)
		if _, throttled := retry.RetryAfter(err); err == nil || attempt == postAttempts || !throttled {
			return err
		}
		if !clock.Sleep(ctx, b.Delay(attempt, err)) {
			return fmt.Errorf("post %s: %w", sig, ctx.Err())
		}
	}
}
