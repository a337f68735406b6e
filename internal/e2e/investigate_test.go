package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// investigated is one deployment of the investigation test and what it sends per
// release: requests (entry spans) of which errors fail, lasting latency, and
// errorLogs ERROR records among infoLogs INFO ones.
type investigated struct {
	id, customer, cloud, region string
	requests                    int
	errors                      map[string]int
	latency                     map[string]time.Duration
	infoLogs, errorLogs         map[string]int
}

// startReleaseAgent runs a periscope-agent process reporting release rel.
func startReleaseAgent(t *testing.T, managerURL, token, dataDir, rel string, d investigated) *agentProc {
	t.Helper()
	return runAgent(t, "off", freePort(t), "--manager", managerURL, "--token", token, "--release", rel,
		"--cloud", d.cloud, "--region", d.region, "--transport", "http", "--heartbeat-interval", "1s", "--data-dir", dataDir)
}

// stop ends the agent the way an upgrade does: SIGTERM, then wait.
func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not stop within 15s of SIGTERM\n%s", p.stderr)
	}
}

// app is one deployment's application, instrumented with the official SDK.
type app struct {
	tp *sdktrace.TracerProvider
	lp *sdklog.LoggerProvider
	mp *sdkmetric.MeterProvider
}

func newApp(t *testing.T, agentHTTP string) *app {
	t.Helper()
	ctx := context.Background()
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("k8s.pod.name", "checkout-1"))
	te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(agentHTTP), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	le, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(agentHTTP), otlploghttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	me, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(agentHTTP), otlpmetrichttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	return &app{
		tp: sdktrace.NewTracerProvider(sdktrace.WithBatcher(te), sdktrace.WithResource(res)),
		lp: sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(le)), sdklog.WithResource(res)),
		mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me)), sdkmetric.WithResource(res)),
	}
}

func (a *app) shutdown(t *testing.T) {
	t.Helper()
	for _, f := range []func(context.Context) error{a.tp.Shutdown, a.lp.Shutdown, a.mp.Shutdown} {
		if err := f(context.Background()); err != nil {
			t.Fatalf("SDK export to the agent failed: %v", err)
		}
	}
}

func (a *app) log(ctx context.Context, at time.Time, sev otellog.Severity, body, route string) {
	var rec otellog.Record
	rec.SetTimestamp(at)
	rec.SetSeverity(sev)
	rec.SetBody(attribute.StringValue(body))
	rec.AddAttributes(attribute.String("http.route", route))
	a.lp.Logger("checkout").Emit(ctx, rec)
}

// requests sends n server spans at at, the first errs failing, each lasting d.
// With tree set, the last request is a three-level trace whose middle span, the
// charge_card function, fails; its trace id is returned.
func (a *app) requests(at time.Time, n, errs int, d time.Duration, tree bool) trace.TraceID {
	tr := a.tp.Tracer("checkout")
	var treeID trace.TraceID
	for i := 0; i < n; i++ {
		start := at.Add(time.Duration(i) * 500 * time.Millisecond)
		ctx, root := tr.Start(context.Background(), "POST /pay", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.route", "/pay")))
		if tree && i == n-1 {
			treeID = root.SpanContext().TraceID()
			cctx, charge := tr.Start(ctx, "charge", trace.WithTimestamp(start.Add(5*time.Millisecond)),
				trace.WithAttributes(attribute.String("code.function.name", "charge_card")))
			_, call := tr.Start(cctx, "HTTP POST", trace.WithTimestamp(start.Add(10*time.Millisecond)), trace.WithSpanKind(trace.SpanKindClient))
			call.SetStatus(codes.Error, "402 from the payment provider")
			call.End(trace.WithTimestamp(start.Add(d - 10*time.Millisecond)))
			charge.SetStatus(codes.Error, "card declined")
			charge.End(trace.WithTimestamp(start.Add(d - 5*time.Millisecond)))
			a.log(cctx, start.Add(d-5*time.Millisecond), otellog.SeverityError, "charge_card: card declined by provider", "/pay")
		}
		if i < errs || (tree && i == n-1) {
			root.SetStatus(codes.Error, "payment failed")
		}
		root.End(trace.WithTimestamp(start.Add(d)))
	}
	return treeID
}

// TestInvestigationQueries walks PRODUCT.md's investigation over the API: two
// deployments, each upgraded from 1.0.0 to 1.1.0 with real agents and the official
// SDK, then every query the investigation needs, with exact expected answers.
func TestInvestigationQueries(t *testing.T) { testInvestigation(t, "") }

// TestInvestigationQueriesOnPostgres walks the same investigation with the
// manager's fleet and telemetry on PostgreSQL: the same answers.
func TestInvestigationQueriesOnPostgres(t *testing.T) {
	testInvestigation(t, testenv.PostgresDatabase(t))
}

// testInvestigation walks the investigation with the manager's storage set to
// storage ("" for the embedded stores).
func testInvestigation(t *testing.T, storage string) {
	ctx := context.Background()
	m := startTelemetryManagerWith(t, func(cfg *config.Manager) {
		cfg.Listen, cfg.DataDir, cfg.Storage = "127.0.0.1:0", t.TempDir(), storage
	})
	defer m.Shutdown(ctx)
	api := apiclient.New(m.URL(), adminToken)
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	deps := []investigated{
		{id: "acme-prod", customer: "acme", cloud: "aws", region: "us-east-1", requests: 40,
			errors: map[string]int{"1.0.0": 2, "1.1.0": 12}, latency: map[string]time.Duration{"1.0.0": 20 * time.Millisecond, "1.1.0": 80 * time.Millisecond},
			infoLogs: map[string]int{"1.0.0": 10, "1.1.0": 10}, errorLogs: map[string]int{"1.0.0": 2, "1.1.0": 11}},
		{id: "umbrella-dr", customer: "umbrella", cloud: "gcp", region: "europe-west1", requests: 30,
			errors: map[string]int{"1.0.0": 0, "1.1.0": 3}, latency: map[string]time.Duration{"1.0.0": 30 * time.Millisecond, "1.1.0": 30 * time.Millisecond},
			infoLogs: map[string]int{"1.0.0": 5, "1.1.0": 5}, errorLogs: map[string]int{"1.0.0": 0, "1.1.0": 1}},
	}
	tokens, dirs := map[string]string{}, map[string]string{}
	for _, d := range deps {
		created, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: d.id, Customer: d.customer, Stack: "shop", Cloud: d.cloud, Region: d.region})
		if err != nil {
			t.Fatal(err)
		}
		tokens[d.id], dirs[d.id] = created.Token, t.TempDir()
	}

	// Each release gets its own whole minute, so the comparison windows are exact.
	base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	var treeID trace.TraceID
	var agents []*agentProc
	for phase, rel := range []string{"1.0.0", "1.1.0"} {
		for _, p := range agents {
			p.stop(t) // the upgrade
		}
		agents = agents[:0]
		for _, d := range deps {
			agents = append(agents, startReleaseAgent(t, m.URL(), tokens[d.id], dirs[d.id], rel, d))
		}
		for _, d := range deps {
			eventually(t, 15*time.Second, d.id+" reports "+rel, func() error {
				got, err := api.Deployment(ctx, d.id)
				if err != nil || got.Release != rel {
					return fmt.Errorf("release %q (%v)", got.Release, err)
				}
				return nil
			})
		}
		at := base.Add(time.Duration(phase) * time.Minute)
		for i, d := range deps {
			a := newApp(t, agents[i].http)
			tree := d.id == "acme-prod" && rel == "1.1.0"
			errs := d.errors[rel]
			if tree {
				errs-- // the tree trace's root fails too, below
			}
			id := a.requests(at, d.requests, errs, d.latency[rel], tree)
			if tree {
				treeID = id
			}
			lctx := context.Background()
			for j := 0; j < d.infoLogs[rel]; j++ {
				a.log(lctx, at.Add(time.Duration(j)*time.Second), otellog.SeverityInfo, fmt.Sprintf("order %d paid", j), "/pay")
			}
			for j := 0; j < d.errorLogs[rel]; j++ {
				if tree && j == 0 {
					continue // logged inside the tree trace
				}
				a.log(lctx, at.Add(time.Duration(j)*time.Second), otellog.SeverityError, fmt.Sprintf("payment declined for order %d", j), "/pay")
			}
			if rel == "1.1.0" {
				c, _ := a.mp.Meter("checkout").Int64Counter("checkout.requests")
				c.Add(context.Background(), int64(d.requests))
			}
			a.shutdown(t)
		}
		if treeIDRoot := treeID; rel == "1.1.0" && !treeIDRoot.IsValid() {
			t.Fatal("no tree trace sent")
		}
		// Everything of this release is stored before the next upgrade, as the
		// manager tags what it receives with the release the deployment runs.
		for _, d := range deps {
			eventually(t, 20*time.Second, d.id+" "+rel+" stored", func() error {
				red, err := api.RED(ctx, telquery.REDQuery{Filter: telquery.Filter{Deployment: d.id, Release: rel, Since: base}})
				if err != nil {
					return err
				}
				if len(red.Series) != 1 || red.Series[0].Total.Requests != int64(d.requests) {
					return fmt.Errorf("RED %+v", red.Series)
				}
				page, err := api.Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Deployment: d.id, Release: rel, Since: base}, Limit: 1000})
				if err != nil {
					return err
				}
				if want := d.infoLogs[rel] + d.errorLogs[rel]; len(page.Logs) != want {
					return fmt.Errorf("%d logs, want %d", len(page.Logs), want)
				}
				return nil
			})
		}
	}
	since := base.Add(-time.Minute)

	t.Run("logs", func(t *testing.T) {
		q := telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod", Release: "1.1.0", Since: since}, MinSeverity: 17, Limit: 5}
		seen := map[string]bool{}
		pages := 0
		for {
			page, err := api.Logs(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, l := range page.Logs {
				key := l.Body + l.Time.String()
				if seen[key] || l.Context.Deployment != "acme-prod" || l.Context.Release != "1.1.0" || l.Severity < 17 {
					t.Fatalf("page %d: unexpected or repeated record %+v", pages, l)
				}
				seen[key] = true
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
		if len(seen) != 11 || pages != 3 {
			t.Fatalf("acme-prod 1.1.0 errors: %d records over %d pages, want 11 over 3", len(seen), pages)
		}
		for _, c := range []struct {
			q    telquery.LogQuery
			want int
		}{
			{telquery.LogQuery{Filter: telquery.Filter{Since: since}, Contains: "DECLINED"}, 2 + 11 + 1},
			{telquery.LogQuery{Filter: telquery.Filter{Customer: "umbrella", Since: since}, Attrs: map[string]string{"http.route": "/pay"}}, 11},
			{telquery.LogQuery{Filter: telquery.Filter{Release: "1.0.0", Since: since}, MinSeverity: 9}, 17},
			{telquery.LogQuery{Filter: telquery.Filter{Since: since}, TraceID: treeID.String()}, 1},
			{telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: base, Until: base.Add(5 * time.Second)}}, 5 + 2},
		} {
			c.q.Limit = 1000
			page, err := api.Logs(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Logs) != c.want {
				t.Errorf("logs %+v: %d records, want %d", c.q, len(page.Logs), c.want)
			}
		}
	})

	t.Run("tail", func(t *testing.T) {
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		got := make(chan telquery.Log, 16)
		go func() {
			_ = api.TailLogs(tctx, telquery.LogQuery{Filter: telquery.Filter{Deployment: "umbrella-dr"}, MinSeverity: 13},
				func(l telquery.Log) error { got <- l; return nil })
		}()
		a := newApp(t, agents[1].http)
		deadline := time.After(20 * time.Second)
		for i := 0; ; i++ {
			a.log(ctx, time.Now(), otellog.SeverityInfo, "quiet", "/pay")
			a.log(ctx, time.Now(), otellog.SeverityWarn, fmt.Sprintf("live warning %d", i), "/pay")
			if err := a.lp.ForceFlush(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case l := <-got:
				if l.Severity < 13 || l.Context.Deployment != "umbrella-dr" {
					t.Fatalf("tail returned %+v", l)
				}
				a.shutdown(t)
				return
			case <-time.After(500 * time.Millisecond):
			case <-deadline:
				t.Fatal("the live tail showed nothing in 20s")
			}
		}
	})

	t.Run("spans", func(t *testing.T) {
		page, err := api.Spans(ctx, telquery.SpanQuery{Filter: telquery.Filter{Deployment: "acme-prod", Release: "1.1.0", Since: since}, ErrorsOnly: true, RootsOnly: true, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Spans) != 12 {
			t.Errorf("failed acme-prod 1.1.0 requests: %d, want 12", len(page.Spans))
		}
		page, err = api.Spans(ctx, telquery.SpanQuery{Filter: telquery.Filter{Since: since}, RootsOnly: true, MinDuration: 50 * time.Millisecond, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Spans) != 40 {
			t.Errorf("requests of at least 50ms: %d, want acme-prod's 40 on 1.1.0", len(page.Spans))
		}
		for _, s := range page.Spans {
			if s.Context.Release != "1.1.0" || s.Context.Function != "/pay" || s.Context.Customer != "acme" || s.Context.Cloud != "aws" {
				t.Fatalf("slow request with the wrong context: %+v", s.Context)
			}
		}
		page, err = api.Spans(ctx, telquery.SpanQuery{Filter: telquery.Filter{Function: "charge_card", Since: since}, ErrorsOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Spans) != 1 || page.Spans[0].TraceID != treeID.String() {
			t.Errorf("failed charge_card spans: %+v, want the one in trace %s", page.Spans, treeID)
		}
	})

	t.Run("trace", func(t *testing.T) {
		tr, err := api.Trace(ctx, treeID.String())
		if err != nil {
			t.Fatal(err)
		}
		if tr.SpanCount != 3 || tr.Errors != 3 || len(tr.Roots) != 1 || len(tr.Services) != 1 || tr.Services[0] != "checkout" {
			t.Fatalf("trace %+v: want 3 spans, 3 errors, one root, service checkout", tr)
		}
		root := tr.Roots[0]
		if root.Context.Function != "/pay" || root.Context.Deployment != "acme-prod" || len(root.Children) != 1 {
			t.Fatalf("root %+v", root)
		}
		charge := root.Children[0]
		if charge.Context.Function != "charge_card" || charge.Status != telquery.StatusError || charge.OffsetMS != 5 ||
			charge.StatusMessage != "card declined" || len(charge.Children) != 1 || charge.Children[0].Kind != "client" {
			t.Fatalf("the failing function's span: %+v", charge)
		}
		if math.Abs(tr.DurationMS-80) > 0.001 {
			t.Errorf("trace lasts %vms, want 80", tr.DurationMS)
		}
		var apiErr *apiclient.Error
		if _, err := api.Trace(ctx, "0123456789abcdef0123456789abcdef"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
			t.Errorf("unknown trace: %v, want 404", err)
		}
	})

	t.Run("red", func(t *testing.T) {
		red, err := api.RED(ctx, telquery.REDQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: since}, GroupBy: telquery.ByRelease})
		if err != nil {
			t.Fatal(err)
		}
		if len(red.Series) != 2 || red.Series[0].Group != "1.0.0" || red.Series[1].Group != "1.1.0" {
			t.Fatalf("series %+v", red.Series)
		}
		old, cur := red.Series[0].Total, red.Series[1].Total
		if old.Requests != 40 || old.Errors != 2 || cur.Requests != 40 || cur.Errors != 12 {
			t.Fatalf("acme-prod: 1.0.0 %d/%d, 1.1.0 %d/%d; want 40/2 and 40/12", old.Requests, old.Errors, cur.Requests, cur.Errors)
		}
		near(t, "1.0.0 p95", old.P95, 20)
		near(t, "1.1.0 p95", cur.P95, 80)
		byDep, err := api.RED(ctx, telquery.REDQuery{Filter: telquery.Filter{Since: since, Release: "1.1.0"}, GroupBy: telquery.ByDeployment})
		if err != nil {
			t.Fatal(err)
		}
		if len(byDep.Series) != 2 || byDep.Series[1].Group != "umbrella-dr" || byDep.Series[1].Total.Requests != 30 || byDep.Series[1].Total.Errors != 3 {
			t.Fatalf("by deployment on 1.1.0: %+v", byDep.Series)
		}
		raw, err := api.RED(ctx, telquery.REDQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: since}, GroupBy: telquery.ByRelease, Raw: true})
		if err != nil {
			t.Fatal(err)
		}
		if raw.Series[1].Total.Requests != 40 || raw.Series[1].Total.P95 != 80 {
			t.Errorf("raw 1.1.0 totals %+v, want 40 requests at p95 80ms", raw.Series[1].Total)
		}
	})

	t.Run("compare", func(t *testing.T) {
		c, err := api.CompareReleases(ctx, telquery.CompareQuery{Filter: telquery.Filter{Deployment: "acme-prod"}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Current.Release != "1.1.0" || c.Previous.Release != "1.0.0" || c.Current.Requests != 40 || c.Previous.Requests != 40 {
			t.Fatalf("comparison %+v", c)
		}
		if math.Abs(c.ErrorRateChange-0.25) > 1e-9 {
			t.Errorf("error rate change %v, want +0.25 (5%% → 30%%)", c.ErrorRateChange)
		}
		near(t, "p95 ratio", c.P95Ratio, 4)
		fleetCmp, err := api.CompareReleases(ctx, telquery.CompareQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if fleetCmp.Current.Requests != 70 || fleetCmp.Current.Errors != 15 || fleetCmp.Previous.Requests != 70 || fleetCmp.Previous.Errors != 2 {
			t.Errorf("fleet comparison %+v, want 70/15 against 70/2", fleetCmp)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		eventually(t, 10*time.Second, "request counters", func() error {
			mt, err := api.Metric(ctx, telquery.MetricQuery{Filter: telquery.Filter{Since: since}, Name: "checkout.requests", GroupBy: "deployment"})
			if err != nil {
				return err
			}
			got := map[string]float64{}
			for _, s := range mt.Series {
				got[s.Group] = s.Points[len(s.Points)-1].Value
			}
			if got["acme-prod"] != 40 || got["umbrella-dr"] != 30 || mt.Agg != telquery.AggLast {
				return fmt.Errorf("last values %v by %s", got, mt.Agg)
			}
			return nil
		})
	})
}

// near checks a latency read from histogram rollups: within their 9% resolution.
func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 0.1*want {
		t.Errorf("%s = %v, want %v ±10%%", what, got, want)
	}
}
