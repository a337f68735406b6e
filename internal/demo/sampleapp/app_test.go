package sampleapp_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime/ingress"
	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/demo/infra"
	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
)

// world is the demo's embedded infrastructure and an OTLP receiver.
type world struct {
	nats *infra.NATS
	s3   *infra.S3
	sink *sink
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ctx := context.Background()
	n, err := infra.NewNATS(infra.NATSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	s, err := infra.NewS3(infra.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return &world{nats: n, s3: s, sink: newSink(t)}
}

func (w *world) config(release string, seed uint64) sampleapp.Config {
	return sampleapp.Config{
		Deployment: "acme-prod", Customer: "acme", Release: release,
		OTLPEndpoint: w.sink.url, ExportInterval: time.Hour, // only Shutdown's flush exports: the test reads what it flushed
		Queue:  sampleapp.Queue{URL: w.nats.URL(), Stream: "ORDERS_ACME", Rate: 0.001},
		Bucket: sampleapp.Bucket{Endpoint: w.s3.URL(), Name: "acme-invoices", AccessKeyID: infra.S3AccessKeyID, SecretAccessKey: infra.S3SecretAccessKey},
		Rand:   rand.New(rand.NewPCG(seed, 7)),
	}
}

func start(t *testing.T, cfg sampleapp.Config) *sampleapp.App {
	t.Helper()
	a, err := sampleapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(context.Background()) })
	return a
}

func shopper(t *testing.T, url string, seed uint64) *sampleapp.Shopper {
	t.Helper()
	s, err := sampleapp.NewShopper(sampleapp.ShopperConfig{BaseURL: url, Rand: rand.New(rand.NewPCG(seed, 1))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lag reads the stream's depth and the worker's lag through the agent's own
// NATS JetStream runtime source, configured as the demo configures it.
func lag(t *testing.T, q config.QueueSource) (depth, pending int64) {
	t.Helper()
	src, err := queues.FromConfig(q, nil)
	if err != nil {
		t.Fatal(err)
	}
	ms := pmetric.NewMetricSlice()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := src.Collect(ctx, time.Now(), ms); err != nil {
		t.Fatalf("the agent's NATS source: %v", err)
	}
	for _, m := range ms.All() {
		for _, p := range m.Gauge().DataPoints().All() {
			switch m.Name() {
			case queues.MetricDepth:
				depth = p.IntValue()
			case queues.MetricPending:
				pending = p.IntValue()
			}
		}
	}
	return depth, pending
}

func invoices(t *testing.T, b sampleapp.Bucket) int {
	t.Helper()
	c := s3.New(s3.Options{Region: "us-east-1", UsePathStyle: true, BaseEndpoint: aws.String(b.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(b.AccessKeyID, b.SecretAccessKey, "")})
	n := 0
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(b.Name), Prefix: aws.String(sampleapp.InvoicePrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list invoices: %v", err)
		}
		n += len(page.Contents)
	}
	return n
}

// TestFaultyReleaseThroughTheIngressProxy drives the shop through the agent's
// ingress proxy on a release that breaks payments.charge, and finds in what
// the SDK sent, in the queue and in the bucket what an operator would.
func TestFaultyReleaseThroughTheIngressProxy(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("1.8.0", 42)
	const pattern = "card gateway refused charge: merchant account missing"
	cfg.Faults = []sampleapp.Fault{
		{Release: "1.8.0", Function: sampleapp.FnPaymentsCharge, ErrorShare: 0.3, LogText: pattern},
		{Release: "1.7.0", Function: sampleapp.FnCatalogList, ErrorShare: 1, LogText: "not this release"},
	}
	app := start(t, cfg)

	proxy, err := ingress.New(config.IngressProxy{Name: "shop", Listen: "127.0.0.1:0", Upstream: app.URL(), Routes: sampleapp.Routes}, ingress.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer proxy.Shutdown(context.Background())

	sh := shopper(t, "http://"+proxy.Addr(), 3)
	const n = 200
	if err := sh.Send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if err := app.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	tally := sh.Tally()
	placed, broken := tally.Status["POST /checkout 201"], tally.Status["POST /checkout 500"]
	if tally.Failed != 0 || placed == 0 || broken == 0 || tally.Status["GET /products 200"] == 0 || tally.Status["POST /login 200"] == 0 {
		t.Fatalf("shopper's tally = %+v", tally)
	}
	// About the configured share of checkouts fail (binomial, 3 sigma).
	if share := float64(broken) / float64(placed+broken); share < 0.12 || share > 0.48 {
		t.Errorf("%d of %d checkouts failed (%.2f), want about 0.3", broken, placed+broken, share)
	}

	spans := w.sink.spans()
	byFn := map[string]int{}
	failedFn := map[string]int{}
	servers := 0
	for _, s := range spans {
		if s.release != "1.8.0" {
			t.Fatalf("span %s has service.version %q", s.name, s.release)
		}
		byFn[s.function]++
		if s.failed {
			failedFn[s.function]++
		}
		if s.kind == 2 /* server */ {
			servers++
		}
	}
	if servers != n {
		t.Errorf("%d server spans, want one per request (%d)", servers, n)
	}
	for _, fn := range []string{sampleapp.FnCatalogList, sampleapp.FnCartLoad, sampleapp.FnApplyDiscount, sampleapp.FnVerifyPassword,
		sampleapp.FnInventoryReserve, sampleapp.FnPaymentsCharge, sampleapp.FnInvoiceStore, sampleapp.FnOrdersPublish} {
		if byFn[fn] == 0 {
			t.Errorf("no span for function %s (got %v)", fn, byFn)
		}
	}
	// Every checkout charged; exactly the failed ones failed there, and nothing
	// else failed; only the charged ones went on to store an invoice.
	if byFn[sampleapp.FnPaymentsCharge] != placed+broken || failedFn[sampleapp.FnPaymentsCharge] != broken ||
		len(failedFn) != 2 /* payments.charge and "" (the server spans) */ || byFn[sampleapp.FnInvoiceStore] != placed {
		t.Errorf("charge spans %d (failed %d), invoice spans %d, failed by function %v; want %d (%d), %d",
			byFn[sampleapp.FnPaymentsCharge], failedFn[sampleapp.FnPaymentsCharge], byFn[sampleapp.FnInvoiceStore], failedFn, placed+broken, broken, placed)
	}

	var errLogs, pii int
	for _, l := range w.sink.logRecords() {
		if !l.traced {
			t.Errorf("log %q has no trace id", l.body)
		}
		if l.severity == "ERROR" && l.function == sampleapp.FnPaymentsCharge && strings.Contains(l.body, pattern) {
			errLogs++
		}
		if strings.Contains(l.body, "@example.") && strings.Contains(l.body, "203.0.113.") {
			pii++
		}
	}
	if errLogs != broken {
		t.Errorf("%d error logs with the pattern, want one per failed checkout (%d)", errLogs, broken)
	}
	if want := tally.Status["POST /login 200"] + placed; pii != want {
		t.Errorf("%d logs carry an e-mail and a client IP, want one per sign-in and order (%d)", pii, want)
	}

	if got := w.sink.histogramCount("http.server.request.duration"); got != n {
		t.Errorf("http.server.request.duration counted %d requests, want %d", got, n)
	}
	if got := w.sink.sumOf("shop.orders", "outcome", "placed"); got != int64(placed) {
		t.Errorf("shop.orders placed = %d, want %d", got, placed)
	}

	// The worker barely runs: every order waits in the stream.
	depth, pending := lag(t, cfg.Queue.RuntimeSource("orders"))
	if depth != int64(placed) || pending < int64(placed)-1 {
		t.Errorf("stream depth %d, consumer lag %d; want %d orders waiting", depth, pending, placed)
	}
	if got := invoices(t, cfg.Bucket); got != placed {
		t.Errorf("%d invoices in the bucket, want one per placed order (%d)", got, placed)
	}
}

// TestSameSeedSameFailures shows a seeded run is reproducible: the same
// requests fail the same way, which the demo's scenario relies on.
func TestSameSeedSameFailures(t *testing.T) {
	w := newWorld(t)
	run := func(stream string) map[string]int {
		cfg := w.config("2.0.0", 9)
		cfg.Queue.Stream = stream
		cfg.Faults = []sampleapp.Fault{{Release: "2.0.0", Function: sampleapp.FnApplyDiscount, ErrorShare: 0.5, LogText: "discount table locked"}}
		app := start(t, cfg)
		sh := shopper(t, app.URL(), 5)
		if err := sh.Send(context.Background(), 60); err != nil {
			t.Fatal(err)
		}
		if err := app.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		return sh.Tally().Status
	}
	first, second := run("ORDERS_A"), run("ORDERS_B")
	if first["GET /cart 500"]+first["POST /checkout 500"] == 0 {
		t.Fatalf("no request failed: %v", first)
	}
	for k, v := range first {
		if second[k] != v {
			t.Errorf("%s: %d then %d with the same seeds", k, v, second[k])
		}
	}
}

// TestReleaseSwitchLosesNothingAndTheLagGrows switches release the way the
// demo's update hook does (Shutdown, then a new instance) and finds every
// request of both releases; the old release's slow worker let a lag grow
// that the new release's fast worker drains.
func TestReleaseSwitchLosesNothingAndTheLagGrows(t *testing.T) {
	w := newWorld(t)
	old := w.config("1.7.0", 1)
	old.Queue.Rate = 0.001
	a := start(t, old)
	sh := shopper(t, a.URL(), 11)
	src := old.Queue.RuntimeSource("orders")

	if err := sh.Send(context.Background(), 40); err != nil {
		t.Fatal(err)
	}
	_, lag1 := lag(t, src)
	if err := sh.Send(context.Background(), 40); err != nil {
		t.Fatal(err)
	}
	_, lag2 := lag(t, src)
	if lag1 == 0 || lag2 <= lag1 {
		t.Errorf("consumer lag %d then %d: a slow worker's lag must grow", lag1, lag2)
	}
	listen := strings.TrimPrefix(a.URL(), "http://")
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	next := w.config("1.8.0", 2)
	next.Listen = listen // the agent's ingress proxy keeps its upstream
	next.Queue.Rate = 1000
	b := start(t, next)
	if b.URL() != "http://"+listen {
		t.Fatalf("new release listens on %s, want %s", b.URL(), listen)
	}
	sh2 := shopper(t, b.URL(), 12)
	if err := sh2.Send(context.Background(), 30); err != nil {
		t.Fatal(err)
	}
	// The fast worker drains the backlog: poll the agent's source as the
	// agent would, every collection, with a deadline.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, pending := lag(t, src)
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag still %d after the fast worker's release started", pending)
		}
		time.Sleep(100 * time.Millisecond) // a collection interval, not a synchronisation
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	servers := map[string]int{}
	fulfilled := 0
	for _, s := range w.sink.spans() {
		if s.route != "" {
			servers[s.release]++
		}
		if s.name == sampleapp.FnOrdersFulfil && s.kind == 5 /* consumer */ {
			fulfilled++
		}
	}
	if servers["1.7.0"] != 80 || servers["1.8.0"] != 30 {
		t.Errorf("server spans by release %v, want 80 of 1.7.0 and 30 of 1.8.0", servers)
	}
	placed := sh.Tally().Status["POST /checkout 201"] + sh2.Tally().Status["POST /checkout 201"]
	if fulfilled != placed {
		t.Errorf("%d orders fulfilled, want all %d placed", fulfilled, placed)
	}
	if got := w.sink.sumOf("shop.orders.fulfilled", "", ""); got != int64(placed) {
		t.Errorf("shop.orders.fulfilled = %d, want %d", got, placed)
	}
	if !slices.ContainsFunc(w.sink.logRecords(), func(l logRecord) bool { return l.release == "1.7.0" }) {
		t.Error("no log of the old release arrived")
	}
}

// TestFaultAddsLatencyToItsFunctionOnly: a fault with latency and no errors
// slows every call of its function on its release, and nothing else.
func TestFaultAddsLatencyToItsFunctionOnly(t *testing.T) {
	w := newWorld(t)
	const slow = 40 * time.Millisecond
	cfg := w.config("3.1.0", 6)
	cfg.Faults = []sampleapp.Fault{{Release: "3.1.0", Function: sampleapp.FnCartLoad, Latency: slow}}
	app := start(t, cfg)
	if err := shopper(t, app.URL(), 2).Send(context.Background(), 30); err != nil {
		t.Fatal(err)
	}
	if err := app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	slowed := 0
	for _, s := range w.sink.spans() {
		if s.failed {
			t.Errorf("span %s failed; the fault adds latency only", s.name)
		}
		switch {
		case s.function == sampleapp.FnCartLoad && s.duration < slow:
			t.Errorf("cart.load took %v, want at least %v", s.duration, slow)
		case s.function == sampleapp.FnCartLoad:
			slowed++
		case s.function == sampleapp.FnCatalogList && s.duration >= slow:
			t.Errorf("catalog.list took %v: only cart.load is slowed", s.duration)
		}
	}
	if slowed == 0 {
		t.Error("no cart.load span arrived")
	}
}
