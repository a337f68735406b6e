package demo

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// TestDemoInvestigation runs the demo and walks the investigation of PRODUCT.md
// through the API: globex-prod is unhealthy on 1.8.0, worse than on 1.7.2, and
// its failing spans name apply-discount, while a healthy deployment is quiet.
func TestDemoInvestigation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := startDemo(t, ctx)
	api := apiclient.New(r.url, r.token)
	signInToDashboard(t, r.banner, r.url, r.token)
	start := r.start

	d, err := api.Deployment(ctx, "globex-prod")
	if err != nil {
		t.Fatal(err)
	}
	if d.Release != "1.8.0" || d.Status != "unhealthy" {
		t.Errorf("globex-prod runs %s and is %s, want 1.8.0 and unhealthy", d.Release, d.Status)
	}

	// hooli-prod's agent dropped logs from a full queue: shown beside its status.
	if h, err := api.Deployment(ctx, "hooli-prod"); err != nil || h.Loss != "telemetry-dropped" || h.TelemetryLoss == nil || h.TelemetryLoss.Records != 560 {
		t.Errorf("hooli-prod = %+v, %v; want telemetry-dropped with 560 records", h, err)
	}

	cmp, err := api.CompareReleases(ctx, telquery.CompareQuery{Filter: telquery.Filter{Deployment: "globex-prod"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("globex-prod: %s %+v against %s %+v", cmp.Current.Release, cmp.Current.Stats, cmp.Previous.Release, cmp.Previous.Stats)
	if cmp.Current.Release != "1.8.0" || cmp.Previous.Release != "1.7.2" {
		t.Errorf("compared %s with %s, want 1.8.0 with 1.7.2", cmp.Current.Release, cmp.Previous.Release)
	}
	if cmp.ErrorRateChange <= 0.08 {
		t.Errorf("error rate change %.4f, want more than 0.08", cmp.ErrorRateChange)
	}
	if cmp.P95Ratio <= 2 {
		t.Errorf("p95 ratio %.2f, want more than 2", cmp.P95Ratio)
	}

	spans, err := api.Spans(ctx, telquery.SpanQuery{Filter: telquery.Filter{Deployment: "globex-prod", Release: "1.8.0"}, ErrorsOnly: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var traceID string
	for _, s := range spans.Spans {
		if s.Context.Function == "apply-discount" && s.Kind == "internal" {
			traceID = s.TraceID
			break
		}
	}
	if traceID == "" {
		t.Fatalf("no failing apply-discount span among %d error spans of globex-prod 1.8.0", len(spans.Spans))
	}
	logs, err := api.Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Deployment: "globex-prod"}, TraceID: traceID, MinSeverity: 17})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs.Logs) != 1 || logs.Logs[0].Body != "apply-discount: coupon service returned 500 for coupon=SUMMER24" {
		t.Errorf("error logs of trace %s: %+v, want the coupon failure", traceID, logs.Logs)
	}

	checkRemoteCommands(t, ctx, api, r.banner)

	red, err := api.RED(ctx, telquery.REDQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: start.Add(-time.Hour)}, GroupBy: telquery.ByRelease})
	if err != nil {
		t.Fatal(err)
	}
	if len(red.Series) != 1 {
		t.Fatalf("acme-prod has %d releases in its telemetry, want 1", len(red.Series))
	}
	if tot := red.Series[0].Total; tot.Requests < 600 || tot.ErrorRate > 0.02 {
		t.Errorf("acme-prod: %d requests with error rate %.4f, want half an hour of them and few errors", tot.Requests, tot.ErrorRate)
	}

	r.stop(t)
}

// checkRemoteCommands walks the banner's remote-command lines through the
// API: the support engineer's command of the start succeeded with df's output,
// cache-stats runs on a polling deployment with its secrets masked, the
// customer who disabled commands refuses them, and the audit log holds it all.
func checkRemoteCommands(t *testing.T, ctx context.Context, api *apiclient.Client, banner string) {
	t.Helper()
	for _, line := range []string{
		"periscope exec acme-prod disk-usage --reason",
		"periscope exec hooli-prod cache-stats --reason",
		"periscope exec umbrella-prod disk-usage --reason",
		"periscope commands list",
		"periscope audit --since 1h",
	} {
		if !strings.Contains(banner, line) {
			t.Errorf("the banner does not show %q", line)
		}
	}

	first, err := api.Commands(ctx, apiclient.CommandFilter{Deployment: firstCommandOn})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Items) != 1 {
		t.Fatalf("%s has %d invocations at start, want the support engineer's one: %+v", firstCommandOn, len(first.Items), first.Items)
	}
	if inv := first.Items[0]; inv.Command != "disk-usage" || inv.State != command.StateSucceeded || inv.Actor != supportEngineer ||
		inv.ActorRole != "operator" || inv.Reason != firstReason || inv.ExitCode == nil || *inv.ExitCode != 0 || !strings.Contains(inv.Output, "Filesystem") {
		t.Errorf("the first command: %+v, want disk-usage succeeded by %s with df's output", inv, supportEngineer)
	}

	// hooli-prod polls: the invocation waits for its next check-in.
	inv, err := api.RunCommand(ctx, "hooli-prod", apitypes.NewInvocation{Command: "cache-stats", Reason: "ticket 4712: slow sign-ins"})
	if err != nil {
		t.Fatal(err)
	}
	if inv, err = api.WaitCommand(ctx, inv.ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("cache-stats on hooli-prod, %s:\n%s", inv.State, inv.Output)
	if inv.State != command.StateSucceeded || inv.HTTPStatus != 200 || !strings.Contains(inv.Output, `"hit_rate": 0.94`) {
		t.Errorf("cache-stats on hooli-prod: %+v, want succeeded with the cache's figures", inv)
	}
	for _, secret := range []string{"Tr0ub4dor-3", "alice.jones@example.com"} {
		if strings.Contains(inv.Output, secret) {
			t.Errorf("cache-stats output carries %q unmasked:\n%s", secret, inv.Output)
		}
	}
	if inv.Redacted["password"] != 1 || inv.Redacted["email"] != 1 {
		t.Errorf("cache-stats output redacted %v, want one password and one e-mail", inv.Redacted)
	}

	refused, err := api.RunCommand(ctx, disabledOn, apitypes.NewInvocation{Command: "disk-usage", Reason: "ticket 4713"})
	if err != nil {
		t.Fatal(err)
	}
	if refused.State != command.StateRefused || !strings.Contains(refused.StateReason, "customer has disabled commands") {
		t.Errorf("disk-usage on %s: %s %q, want refused by the customer's rule", disabledOn, refused.State, refused.StateReason)
	}

	// The manager writes an outcome's audit entry before it answers those
	// waiting for the outcome, so one read finds them all. Result entries
	// name the operator whose command it was.
	const admin = "admin (from configuration)"
	page, err := api.Audit(ctx, apitypes.AuditQuery{Action: "command.", Since: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range page.Items {
		got[e.Action+" "+e.DeploymentID+" "+e.Outcome+" "+e.Actor+": "+e.Reason] = true
	}
	for _, w := range []string{
		"command.invoke acme-prod queued " + supportEngineer + ": " + firstReason,
		"command.result acme-prod succeeded " + supportEngineer + ": " + firstReason,
		"command.invoke hooli-prod queued " + admin + ": ticket 4712: slow sign-ins",
		"command.result hooli-prod succeeded " + admin + ": ticket 4712: slow sign-ins",
		"command.invoke " + disabledOn + " refused " + admin + ": ticket 4713",
	} {
		if !got[w] {
			t.Errorf("the audit log has no entry %q; it holds %v", w, got)
		}
	}
}

// signInToDashboard checks the demo's banner names the dashboard and a token,
// and that the token signs in there.
func signInToDashboard(t *testing.T, banner, managerURL, token string) {
	t.Helper()
	m := regexp.MustCompile(`Dashboard: (\S+)  \(sign in with token (psk_\S+)\)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("the demo's banner does not give the dashboard and a sign-in token:\n%s", banner)
	}
	if m[1] != managerURL+"/" || m[2] != token {
		t.Errorf("banner: dashboard %s with token %s, want %s/ with the admin token", m[1], m[2], managerURL)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.PostForm(m[1]+"login", url.Values{"token": {m[2]}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != "/" || !strings.Contains(string(body), `action="/logout"`) {
		t.Errorf("signing in with the banner's token ended at %s (%d), want the signed-in fleet at /", resp.Request.URL, resp.StatusCode)
	}
}

// demoRun is a demo started by startDemo.
type demoRun struct {
	url, token string
	// banner is what the demo printed at the start.
	banner string
	// dir is its data directory, a temporary one as a newcomer's is.
	dir   string
	start time.Time
	// cancel stops the demo; done receives Run's result.
	cancel context.CancelFunc
	done   chan error
}

// startDemo runs the demo until ctx ends or stop is called, and returns once
// it is ready.
func startDemo(t *testing.T, ctx context.Context) *demoRun {
	t.Helper()
	type ready struct{ url, token string }
	var out bytes.Buffer // written before Ready, read after
	readyc := make(chan ready, 1)
	r := &demoRun{start: time.Now(), done: make(chan error, 1)}
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		r.done <- Run(ctx, Options{Listen: "127.0.0.1:0", Out: &out, Logger: testLogger(t),
			Rand: rand.New(rand.NewPCG(7, 11)), Ready: func(url, token string) { readyc <- ready{url, token} }})
	}()
	select {
	case rd := <-readyc:
		r.url, r.token = rd.url, rd.token
	case err := <-r.done:
		t.Fatalf("demo ended before it was ready: %v", err)
	case <-ctx.Done():
		t.Fatal("demo not ready in time")
	}
	r.banner = out.String()
	m := regexp.MustCompile(`(?m)^  Data: +(\S+)$`).FindStringSubmatch(r.banner)
	if m == nil {
		t.Fatalf("the banner does not give the data directory:\n%s", r.banner)
	}
	r.dir = m[1]
	t.Logf("demo ready in %v", time.Since(r.start).Round(time.Millisecond))
	t.Cleanup(func() {
		r.cancel()
		<-r.done
	})
	return r
}

// testLogger sends the demo's warnings and errors to the test's log, so a
// part that does not stop is named there. Lines after the test's end are
// dropped: testing panics on them.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.ended = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	t     *testing.T
	mu    sync.Mutex
	ended bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ended {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// stop stops the demo and checks it ends cleanly and in time.
func (r *demoRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	began := time.Now()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		t.Logf("demo stopped in %v", time.Since(began).Round(time.Millisecond))
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(20 * time.Second):
		// What is still running says which part does not stop.
		var stacks bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("demo did not stop in 20s; goroutines:\n%s", stacks.String())
	}
}
