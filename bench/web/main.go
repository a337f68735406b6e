// Command web times the dashboard's pages over a real fleet: a registry of
// 10,000 deployments (or -deployments 100000) on the embedded DuckDB store, a
// day of demo-like telemetry in the telemetry store, and the dashboard served
// over loopback HTTP. It signs in with an operator token and requests every
// page of the URL contract many times, printing per page the server time
// (p50, p95, p99: from the request reaching the dashboard's handler to its
// last byte written) and the page's size.
//
//	go run ./bench/web                          # 10,000 deployments
//	go run ./bench/web -deployments 100000
//	go run ./bench/web -spans 200000 -requests 20   # a quick look
//
// Pages still being built answer their stub (501); they are timed all the
// same and marked, so the figures are re-run once every page has landed.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/tokens"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

type config struct {
	deployments int
	spans       int
	requests    int
	dir         string
	seed        uint64
	profile     string
}

func main() {
	var c config
	flag.IntVar(&c.deployments, "deployments", 10000, "fleet size")
	flag.IntVar(&c.spans, "spans", 1_000_000, "spans of telemetry over the last day (four per request, plus a log line per request and one per failure); scale it to finish in a few minutes")
	flag.IntVar(&c.requests, "requests", 100, "requests per page, after 5 not timed")
	flag.StringVar(&c.dir, "dir", "", "data directory (default: a temporary one, removed afterwards)")
	flag.Uint64Var(&c.seed, "seed", 1, "random seed of the fleet and its telemetry")
	flag.StringVar(&c.profile, "cpuprofile", "", "write a CPU profile of the timed requests to this file")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const stack = "shop"

// releases of the stack, oldest first, with how long before now each was
// published; a deployment runs one of the last three.
var releases = []struct {
	version string
	age     time.Duration
}{{"1.8.0", 30 * 24 * time.Hour}, {"1.9.0", 7 * 24 * time.Hour}, {"2.0.0", 6 * time.Hour}}

// dep is one deployment as the generator sees it.
type dep struct {
	id, customer string
	// release is what it runs now; previous what it ran before switchAt.
	release, previous string
	switchAt          time.Time
	// broken deployments fail often on 2.0.0 (the demo's regression).
	broken bool
}

func run(c config) error {
	ctx := context.Background()
	dir := c.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "bench-web-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	now := time.Now().UTC().Truncate(time.Second)
	clk := clock.NewFake(now.Add(-releases[0].age))
	st, err := duckdb.Open(ctx, dir)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	reg, err := registry.New(st, registry.Settings{Clock: clk, FlushInterval: time.Hour, EvalInterval: time.Hour})
	if err != nil {
		return err
	}
	if err := reg.Start(ctx); err != nil {
		return err
	}
	defer reg.Shutdown(context.Background())
	rng := rand.New(rand.NewPCG(c.seed, 7))

	start := time.Now()
	deps, err := buildFleet(ctx, reg, clk, now, c.deployments, rng)
	if err != nil {
		return err
	}
	if err := reg.Flush(ctx); err != nil {
		return err
	}
	fmt.Printf("fleet: %d deployments, releases %s, built in %v\n", len(deps), versions(), time.Since(start).Round(time.Millisecond))

	tel, err := telstore.Open(ctx, dir, telstore.Settings{Clock: clk})
	if err != nil {
		return fmt.Errorf("open telemetry store: %w", err)
	}
	defer tel.Close()
	start = time.Now()
	spans, logs, err := ingest(ctx, tel, deps, now, c.spans, rng)
	if err != nil {
		return err
	}
	fmt.Printf("telemetry: %d spans and %d log records over the last 24 h, stored in %v\n", spans, logs, time.Since(start).Round(time.Millisecond))

	keys := tokens.New(st, nil, clk)
	secret, _, err := keys.Create(ctx, auth.APIToken{}, "bench", auth.RoleOperator)
	if err != nil {
		return err
	}
	dash, err := web.New(reg, keys, web.Settings{Clock: clk, Telemetry: tel, Audit: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer dash.Close()
	timer := &timings{by: map[string][]sample{}}
	srv := httptest.NewServer(timer.wrap(dash.Handler()))
	defer srv.Close()
	client, err := signIn(srv.URL, secret)
	if err != nil {
		return err
	}
	pages, err := contract(ctx, tel, deps, now)
	if err != nil {
		return err
	}
	if c.profile != "" {
		f, err := os.Create(c.profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("\n%d requests per page (after 5 untimed), server time from handler entry to last byte:\n\n", c.requests)
	fmt.Printf("%-22s %-60s %6s %9s %9s %9s %10s\n", "page", "URL", "status", "p50", "p95", "p99", "bytes")
	for _, p := range pages {
		for i := range c.requests + 5 {
			if i == 5 {
				timer.reset(p.url)
			}
			res, err := client.Get(srv.URL + p.url)
			if err != nil {
				return fmt.Errorf("GET %s: %w", p.url, err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		ss := timer.get(p.url)
		shown := p.url
		if len(shown) > 60 {
			shown = shown[:57] + "..."
		}
		note := ""
		if ss[0].status == http.StatusNotImplemented {
			note = "  (not built yet)"
		}
		fmt.Printf("%-22s %-60s %6d %9s %9s %9s %10d%s\n", p.name, shown, ss[0].status,
			ms(pct(ss, 0.50)), ms(pct(ss, 0.95)), ms(pct(ss, 0.99)), ss[len(ss)-1].bytes, note)
	}
	return nil
}

func versions() string {
	var vs []string
	for _, r := range releases {
		vs = append(vs, r.version)
	}
	return strings.Join(vs, ", ")
}

// buildFleet publishes the releases at their times and creates the fleet: most
// deployments on the latest (switched from the one before within its six
// hours), some behind, a few pinned back, a few with rotated tokens.
func buildFleet(ctx context.Context, reg *registry.Registry, clk *clock.Fake, now time.Time, n int, rng *rand.Rand) ([]dep, error) {
	deps := make([]dep, n)
	nds := make([]registry.NewDeployment, n)
	clouds := []string{"aws", "gcp", "azure"}
	regions := []string{"eu-west-1", "us-east-1", "ap-south-1", "us-west-2"}
	for i := range deps {
		cust := fmt.Sprintf("cust-%04d", i/3)
		id := fmt.Sprintf("%s-%s", cust, []string{"prod", "staging", "dr"}[i%3])
		deps[i] = dep{id: id, customer: cust}
		nds[i] = registry.NewDeployment{ID: id, Name: strings.ToUpper(cust[:1]) + cust[1:] + " " + []string{"production", "staging", "DR"}[i%3],
			Customer: cust, Platform: "kubernetes", Cloud: clouds[i%3], Region: regions[i%4], Stack: stack,
			Labels: map[string]string{"tier": []string{"gold", "silver", "bronze"}[i%3], "env": []string{"prod", "staging", "dr"}[i%3]}}
	}
	for start := 0; start < n; start += 10000 {
		end := min(start+10000, n)
		if _, err := reg.CreateDeployments(ctx, nds[start:end]); err != nil {
			return nil, fmt.Errorf("create deployments: %w", err)
		}
	}
	accepts := true
	checkin := func(id, rel string, healthy bool) error {
		h := &fleet.Health{Reported: true, Healthy: healthy}
		_, err := reg.Checkin(id, registry.Report{Mode: fleet.ModePull, AcceptsReleases: &accepts, Health: h,
			Description: &registry.Description{Release: rel}})
		return err
	}
	for k, rel := range releases {
		clk.Set(now.Add(-rel.age))
		if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: stack, Version: rel.version, Notes: "release " + rel.version}); err != nil {
			return nil, err
		}
		// Everyone takes 1.8.0 and 1.9.0 when published; 2.0.0 reaches 70%.
		for i := range deps {
			d := &deps[i]
			if k == 2 && rng.Float64() >= 0.7 {
				continue
			}
			if k > 0 && rng.Float64() < 0.05 {
				continue // a few stay behind
			}
			if d.release != "" {
				d.previous = d.release
			}
			d.release = rel.version
			d.switchAt = now.Add(-rel.age + time.Duration(rng.Int64N(int64(30*time.Minute))))
			d.broken = k == 2 && rng.Float64() < 0.03
		}
	}
	clk.Set(now.Add(-time.Minute))
	for _, d := range deps {
		if d.previous != "" {
			if err := checkin(d.id, d.previous, true); err != nil {
				return nil, err
			}
		}
		if err := checkin(d.id, d.release, !d.broken); err != nil {
			return nil, err
		}
	}
	// Some of those on 2.0.0 pinned back to 1.9.0, a handful at a time; a
	// few tokens rotated: the audit trail has entries of both kinds.
	for i := 0; i < len(deps); i += 97 {
		if deps[i].release != "2.0.0" {
			continue
		}
		if _, err := reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{deps[i].id}}, Action: fleet.ActionPin,
			Release: "1.9.0", By: "oncall", Reason: "2.0.0 fails checkouts with coupon SUMMER24"}); err != nil {
			return nil, err
		}
	}
	for i := 0; i < len(deps); i += 499 {
		if _, err := reg.RotateToken(ctx, registry.RotateRequest{ID: deps[i].id, By: "secops", Reason: "quarterly rotation"}); err != nil {
			return nil, err
		}
	}
	clk.Set(now)
	return deps, nil
}

// functions a request passes through, with their median latency in ms.
var functions = []struct {
	name   string
	median float64
}{{"cart.load", 8}, {"pricing.apply", 15}, {"payments.charge", 40}}

// ingest stores about spanCount spans (four per request) spread over the
// last day, each deployment's requests on the release it ran at the time.
func ingest(ctx context.Context, tel *telstore.Store, deps []dep, now time.Time, spanCount int, rng *rand.Rand) (spans, logs int, err error) {
	perBatch := 50 // requests in one export request of one deployment
	batches := max(1, spanCount/(4*perBatch))
	for b := range batches {
		d := deps[rng.IntN(len(deps))]
		td := ptrace.NewTraces()
		ld := plog.NewLogs()
		byRelease := map[string][2]int{} // release → resource index in td, ld
		for range perBatch {
			at := now.Add(-time.Duration(rng.Int64N(int64(24 * time.Hour))))
			rel := d.release
			if at.Before(d.switchAt) && d.previous != "" {
				rel = d.previous
			}
			idx, ok := byRelease[rel]
			if !ok {
				idx = [2]int{td.ResourceSpans().Len(), ld.ResourceLogs().Len()}
				byRelease[rel] = idx
				tag(td.ResourceSpans().AppendEmpty().Resource(), d, rel)
				td.ResourceSpans().At(idx[0]).ScopeSpans().AppendEmpty()
				tag(ld.ResourceLogs().AppendEmpty().Resource(), d, rel)
				ld.ResourceLogs().At(idx[1]).ScopeLogs().AppendEmpty()
			}
			ss := td.ResourceSpans().At(idx[0]).ScopeSpans().At(0).Spans()
			lrs := ld.ResourceLogs().At(idx[1]).ScopeLogs().At(0).LogRecords()
			failRate := 0.004
			if rel == "2.0.0" && d.broken {
				failRate = 0.3
			}
			failed := rng.Float64() < failRate
			var tid pcommon.TraceID
			var root pcommon.SpanID
			fill(rng, tid[:])
			fill(rng, root[:])
			offset := time.Duration(0)
			var total time.Duration
			for k, fn := range functions {
				sp := ss.AppendEmpty()
				var sid pcommon.SpanID
				fill(rng, sid[:])
				dur := time.Duration(fn.median*(0.5+rng.Float64())) * time.Millisecond
				if failed && k == 1 {
					dur *= 4
					sp.Status().SetCode(ptrace.StatusCodeError)
					sp.Status().SetMessage("coupon SUMMER24 cannot be applied")
				}
				sp.SetTraceID(tid)
				sp.SetSpanID(sid)
				sp.SetParentSpanID(root)
				sp.SetName(fn.name)
				sp.SetKind(ptrace.SpanKindInternal)
				sp.Attributes().PutStr("faas.name", fn.name)
				sp.SetStartTimestamp(pcommon.NewTimestampFromTime(at.Add(offset)))
				sp.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(offset + dur)))
				offset += dur
				total += dur
			}
			sp := ss.AppendEmpty()
			sp.SetTraceID(tid)
			sp.SetSpanID(root)
			sp.SetName("POST /checkout")
			sp.SetKind(ptrace.SpanKindServer)
			sp.Attributes().PutStr("http.route", "/checkout")
			code := int64(200)
			if failed {
				code = 500
				sp.Status().SetCode(ptrace.StatusCodeError)
			}
			sp.Attributes().PutInt("http.response.status_code", code)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(total + 2*time.Millisecond)))
			lr := lrs.AppendEmpty()
			lr.SetTimestamp(pcommon.NewTimestampFromTime(at.Add(total)))
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
			lr.Body().SetStr(fmt.Sprintf("POST /checkout completed in %dms status=%d", (total + 2*time.Millisecond).Milliseconds(), code))
			lr.SetTraceID(tid)
			lr.SetSpanID(root)
			if failed {
				lr := lrs.AppendEmpty()
				lr.SetTimestamp(pcommon.NewTimestampFromTime(at.Add(total)))
				lr.SetSeverityNumber(plog.SeverityNumberError)
				lr.SetSeverityText("ERROR")
				lr.Body().SetStr("pricing.apply failed: coupon SUMMER24 cannot be applied to cart " + hex.EncodeToString(tid[:4]))
				lr.SetTraceID(tid)
				lr.SetSpanID(root)
			}
		}
		tb, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			return spans, logs, err
		}
		lb, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
		if err != nil {
			return spans, logs, err
		}
		if err := tel.Consume(ctx, consumer.Batch{Signal: otlp.Traces, DeploymentID: d.id, Received: now, Records: td.SpanCount(), Data: tb}); err != nil {
			return spans, logs, fmt.Errorf("store spans: %w", err)
		}
		if err := tel.Consume(ctx, consumer.Batch{Signal: otlp.Logs, DeploymentID: d.id, Received: now, Records: ld.LogRecordCount(), Data: lb}); err != nil {
			return spans, logs, fmt.Errorf("store logs: %w", err)
		}
		spans += td.SpanCount()
		logs += ld.LogRecordCount()
		if b%2000 == 1999 {
			fmt.Printf("  … %d spans\n", spans)
		}
	}
	return spans, logs, tel.Flush(ctx)
}

func tag(r pcommon.Resource, d dep, release string) {
	a := r.Attributes()
	a.PutStr(otlp.AttrDeploymentID, d.id)
	a.PutStr(otlp.AttrCustomer, d.customer)
	a.PutStr(otlp.AttrCloudProvider, "aws")
	a.PutStr(otlp.AttrCloudRegion, "eu-west-1")
	a.PutStr(otlp.AttrRelease, release)
	a.PutStr(otlp.AttrStack, stack)
	a.PutStr("service.name", "checkout")
	a.PutStr("k8s.pod.name", d.id+"-checkout-1")
}

func fill(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
}

// page is one URL of the contract to time.
type page struct{ name, url string }

// contract lists the pages of the URL contract, with real ids in them: the
// deployment with the most failures on 2.0.0, one of its failed traces.
func contract(ctx context.Context, tel *telstore.Store, deps []dep, now time.Time) ([]page, error) {
	var broken dep
	for _, d := range deps {
		if d.broken {
			broken = d
			break
		}
	}
	if broken.id == "" {
		broken = deps[0]
	}
	traceID := "00000000000000000000000000000000"
	sp, err := tel.Spans(ctx, telquery.SpanQuery{Filter: telquery.Filter{Since: now.Add(-24 * time.Hour)}, ErrorsOnly: true, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("find a failed trace: %w", err)
	}
	if len(sp.Spans) > 0 {
		traceID = sp.Spans[0].TraceID
	}
	q := url.QueryEscape
	return []page{
		{"fleet", "/"},
		{"fleet, unhealthy", "/?status=unhealthy"},
		{"fleet, search", "/?q=" + q(deps[len(deps)/2].customer)},
		{"deployment", "/deployments/" + broken.id},
		{"logs", "/logs"},
		{"logs, one deployment", "/logs?deployment=" + q(broken.id) + "&release=2.0.0"},
		{"traces", "/traces"},
		{"trace", "/traces/" + traceID},
		{"metrics", "/metrics/"},
		{"metric", "/metrics/http.server.request.duration"},
		{"releases", "/releases"},
		{"bulk preview", "/releases/bulk?action=pin&stack=" + stack + "&release=2.0.0&target=1.9.0"},
		{"audit", "/audit"},
		{"audit, one actor", "/audit?actor=oncall"},
		{"notifications", "/notifications"},
	}, nil
}

// signIn posts the token to /login and keeps the session cookie.
func signIn(base, token string) (*http.Client, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		return nil, fmt.Errorf("sign in: %s, want 303 to /", res.Status)
	}
	return c, nil
}

// sample is one timed request.
type sample struct {
	d      time.Duration
	status int
	bytes  int
}

// timings records each request's server time by URL.
type timings struct {
	mu sync.Mutex
	by map[string][]sample
}

func (t *timings) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &counting{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		h.ServeHTTP(cw, r)
		d := time.Since(start)
		t.mu.Lock()
		t.by[r.URL.RequestURI()] = append(t.by[r.URL.RequestURI()], sample{d, cw.status, cw.n})
		t.mu.Unlock()
	})
}

func (t *timings) reset(u string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.by, u)
}

func (t *timings) get(u string) []sample {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]sample(nil), t.by[u]...)
}

type counting struct {
	http.ResponseWriter
	status, n int
}

func (c *counting) WriteHeader(s int) { c.status = s; c.ResponseWriter.WriteHeader(s) }
func (c *counting) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += n
	return n, err
}

func pct(ss []sample, p float64) time.Duration {
	ds := make([]time.Duration, len(ss))
	for i, s := range ss {
		ds[i] = s.d
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[min(len(ds)-1, int(p*float64(len(ds))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
