package demo

import (
	"bytes"
	"context"
	"fmt"
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
	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
	fleetmodel "github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// TestDemoScenario runs the default scenario ten times faster and follows it
// through the API as a newcomer would in the dashboard: the fleet starts on
// 1.7.2; 1.8.0 rolls out wave by wave through the agents' update hooks;
// globex-prod turns unhealthy with regressed-after-release, its failing
// spans (from the sample service's SDK) naming pricing.apply-discount, while the others run 1.8.0 healthy; around it
// a poller lags (pull-pending), wayne-prod goes stale and initech-eu stays
// pinned; pinning globex-prod back really rolls it back to a healthy 1.7.2.
func TestDemoScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := startDemo(t, ctx, Options{Speed: 10})
	api := apiclient.New(r.url, r.token)
	signInToDashboard(t, r.banner, r.url, r.token)

	// The fleet starts on Current, initech-eu pinned on Oldest, published
	// days ago.
	d, err := api.Deployment(ctx, pinnedOn)
	if err != nil {
		t.Fatal(err)
	}
	if d.Release != Oldest || !d.Pinned || d.SupersededAt == nil || time.Since(*d.SupersededAt) < 8*24*time.Hour {
		t.Errorf("%s runs %s pinned %v, superseded at %v; want %s pinned, superseded days ago", pinnedOn, d.Release, d.Pinned, d.SupersededAt, Oldest)
	}
	// hooli-prod's agent dropped logs from a full queue: shown beside its status.
	if h, err := api.Deployment(ctx, "hooli-prod"); err != nil || h.Loss != "telemetry-dropped" || h.TelemetryLoss == nil || h.TelemetryLoss.Records != 560 {
		t.Errorf("hooli-prod = %+v, %v; want telemetry-dropped with 560 records", h, err)
	}
	checkRemoteCommands(t, ctx, api)

	// Follow the fleet until globex-prod regresses, noting every behind
	// reason and status seen on the way.
	seen := map[string]map[string]bool{}
	note := func(id, what string) {
		if seen[id] == nil {
			seen[id] = map[string]bool{}
		}
		seen[id][what] = true
	}
	var fleetNow map[string]apitypes.Deployment
	awaitFleet(t, ctx, api, "globex-prod regressed on 1.8.0 and the early wave on 1.8.0", func(ds []apitypes.Deployment) bool {
		fleetNow = map[string]apitypes.Deployment{}
		for _, d := range ds {
			fleetNow[d.ID] = d
			note(d.ID, string(d.Behind))
			note(d.ID, string(d.Status))
		}
		g := fleetNow[regressedOn]
		if g.Release != Next || g.StatusReasonCode != "regressed-after-release" {
			return false
		}
		for _, s := range fleetSpec {
			if s.ring != "" && fleetNow[s.id].Release != Next {
				return false
			}
		}
		return true
	})
	g := fleetNow[regressedOn]
	t.Logf("%s: %s (%s)", regressedOn, g.Status, g.StatusReason)
	if g.Status != "unhealthy" {
		t.Errorf("%s is %s, want unhealthy", regressedOn, g.Status)
	}
	for _, s := range fleetSpec {
		d := fleetNow[s.id]
		switch {
		case s.ring == "" || s.id == "stark-prod":
			// The last wave, or the crash-looping worker's deployment.
		case d.Status != "healthy":
			t.Errorf("%s is %s on %s (%s), want healthy on %s", s.id, d.Status, d.Release, d.StatusReason, Next)
		}
	}
	if !seen[laggingOn][string(fleetmodel.BehindPullPending)] {
		t.Errorf("%s was never seen pull-pending: %v", laggingOn, seen[laggingOn])
	}
	if fleetNow[staleOn].Status != "stale" {
		t.Errorf("%s is %s, want stale", staleOn, fleetNow[staleOn].Status)
	}
	if p := fleetNow[pinnedOn]; p.Release != Oldest || !p.Pinned {
		t.Errorf("%s runs %s, pinned %v; want still pinned on %s", pinnedOn, p.Release, p.Pinned, Oldest)
	}

	// The rollout went through the waves in order, each member updated
	// through its hook.
	rs, err := api.Rollouts(ctx, Stack, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Release != Next || len(rs[0].Waves) != 3 {
		t.Fatalf("rollouts %+v, want one of %s in three waves", rs, Next)
	}
	ro := rs[0]
	for i, w := range ro.Waves {
		if w.OpenedAt.IsZero() {
			t.Errorf("wave %s never opened", w.Name)
		}
		if i > 0 && !ro.Waves[i-1].PassedAt.IsZero() && w.OpenedAt.Before(ro.Waves[i-1].PassedAt) {
			t.Errorf("wave %s opened at %v, before wave %s passed at %v", w.Name, w.OpenedAt, ro.Waves[i-1].Name, ro.Waves[i-1].PassedAt)
		}
	}
	if _, ok := ro.Waves[0].Members["acme-staging"]; !ok {
		t.Errorf("the canary wave took %v, want acme-staging among them", ro.Waves[0].Members)
	}
	if ro.Waves[1].PassedAt.IsZero() {
		t.Errorf("the early wave did not pass: %+v", ro.Waves[1])
	}

	// The history tells the story: the update, then the regression.
	evs, err := api.Events(ctx, regressedOn, 50)
	if err != nil {
		t.Fatal(err)
	}
	var updated, regressed bool
	for _, e := range evs {
		updated = updated || e.To == "updating" && strings.Contains(e.Reason, Next)
		regressed = regressed || e.ReasonCode == "regressed-after-release"
	}
	if !updated || !regressed {
		t.Errorf("%s's events %+v, want its update to %s and its regression", regressedOn, evs, Next)
	}

	investigate(t, ctx, api)

	// Pin it back: its agent's hook switches it to 1.7.2, healthy again.
	if _, err := api.PinDeployment(ctx, regressedOn, Current, "apply-discount fails on 1.8.0"); err != nil {
		t.Fatal(err)
	}
	awaitFleet(t, ctx, api, "globex-prod healthy on 1.7.2", func(ds []apitypes.Deployment) bool {
		for _, d := range ds {
			if d.ID == regressedOn {
				return d.Release == Current && d.Status == "healthy"
			}
		}
		return false
	})
	r.stop(t)
}

// investigate finds the fault as the tutorial does: 1.8.0 is worse than
// 1.7.2 on globex-prod, its failing spans name pricing.apply-discount, and the error
// log of such a trace names the coupon.
func investigate(t *testing.T, ctx context.Context, api *apiclient.Client) {
	t.Helper()
	cmp, err := api.CompareReleases(ctx, telquery.CompareQuery{Filter: telquery.Filter{Deployment: regressedOn}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s %+v against %s %+v", regressedOn, cmp.Current.Release, cmp.Current.Stats, cmp.Previous.Release, cmp.Previous.Stats)
	if cmp.Current.Release != Next || cmp.Previous.Release != Current {
		t.Errorf("compared %s with %s, want %s with %s", cmp.Current.Release, cmp.Previous.Release, Next, Current)
	}
	if cmp.ErrorRateChange <= 0.05 && cmp.P95Ratio <= 1.5 {
		t.Errorf("error rate change %.4f and p95 ratio %.2f: want 1.8.0 clearly worse", cmp.ErrorRateChange, cmp.P95Ratio)
	}
	spans, err := api.Spans(ctx, telquery.SpanQuery{Filter: telquery.Filter{Deployment: regressedOn, Release: Next}, ErrorsOnly: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var traceID string
	for _, s := range spans.Spans {
		if s.Context.Function == sampleapp.FnApplyDiscount && s.Kind == "internal" {
			traceID = s.TraceID
			break
		}
	}
	if traceID == "" {
		t.Fatalf("no failing "+sampleapp.FnApplyDiscount+" span among %d error spans of %s %s", len(spans.Spans), regressedOn, Next)
	}
	// The sample service's SDK log of the failed call, with the trace's id.
	// The SDK exports logs and spans in batches of their own, so the span
	// may be stored a round before its log: wait for the log, bounded.
	want := sampleapp.FnApplyDiscount + " failed: " + brokenFault().LogText
	wait, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		logs, err := api.Logs(wait, telquery.LogQuery{Filter: telquery.Filter{Deployment: regressedOn}, TraceID: traceID, MinSeverity: 17})
		if err == nil && len(logs.Logs) == 1 && logs.Logs[0].Body == want {
			break
		}
		select {
		case <-wait.Done():
			t.Fatalf("error logs of trace %s: %+v (%v), want %q", traceID, logs.Logs, err, want)
		case <-tick.C:
		}
	}
	red, err := api.RED(ctx, telquery.REDQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: time.Now().Add(-time.Hour)}, GroupBy: telquery.ByRelease})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range red.Series {
		if s.Total.ErrorRate > 0.05 {
			t.Errorf("acme-prod on %s: error rate %.4f, want few errors", s.Group, s.Total.ErrorRate)
		}
	}
}

// awaitFleet reads the fleet until ok holds of it, or fails the test when
// ctx ends first.
func awaitFleet(t *testing.T, ctx context.Context, api *apiclient.Client, what string, ok func([]apitypes.Deployment) bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ds, err := api.Deployments(ctx, apiclient.Filter{})
		if err == nil && ok(ds) {
			return
		}
		select {
		case <-ctx.Done():
			var state []string
			for _, d := range ds {
				state = append(state, fmt.Sprintf("%s %s %s %s %s", d.ID, d.Release, d.Status, d.StatusReasonCode, d.Behind))
			}
			t.Fatalf("waited in vain for %s (%v); the fleet: %s", what, err, strings.Join(state, "; "))
		case <-tick.C:
		}
	}
}

// checkRemoteCommands walks the tutorial's remote-command steps through the
// API: the support engineer's command of the start succeeded with df's output,
// cache-stats runs on a polling deployment with its secrets masked, the
// customer who disabled commands refuses them, and the audit log holds it all.
func checkRemoteCommands(t *testing.T, ctx context.Context, api *apiclient.Client) {
	t.Helper()

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
func startDemo(t *testing.T, ctx context.Context, o Options) *demoRun {
	t.Helper()
	type ready struct{ url, token string }
	var out bytes.Buffer // written before Ready, read after
	readyc := make(chan ready, 1)
	r := &demoRun{start: time.Now(), done: make(chan error, 1)}
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		o.Listen, o.Out, o.Logger, o.Rand = "127.0.0.1:0", &out, testLogger(t), rand.New(rand.NewPCG(7, 11))
		o.Ready = func(url, token string) { readyc <- ready{url, token} }
		r.done <- Run(ctx, o)
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

// TestDemoHaltScenario runs the halt scenario ten times faster: globex-prod
// takes 1.8.0 in the early wave, whose gate tolerates no regression, so the
// rollout halts, pins it back by itself and it turns healthy on 1.7.2,
// while the last wave never gets 1.8.0.
func TestDemoHaltScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := startDemo(t, ctx, Options{Speed: 10, Scenario: "halt"})
	api := apiclient.New(r.url, r.token)
	if !strings.Contains(r.banner, `Scenario "halt"`) {
		t.Errorf("the banner does not name the scenario:\n%s", r.banner)
	}
	var ro apitypes.Rollout
	awaitRollout := func(what string, ok func(apitypes.Rollout) bool) {
		t.Helper()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			rs, err := api.Rollouts(ctx, Stack, false, 10)
			if err == nil && len(rs) == 1 && ok(rs[0]) {
				ro = rs[0]
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("waited in vain for %s: %+v, %v", what, rs, err)
			case <-tick.C:
			}
		}
	}
	awaitRollout("the rollout halted", func(r apitypes.Rollout) bool { return r.Phase == "halted" })
	t.Logf("halted: %s", ro.Halt.Reason)
	if ro.Halt.Wave != ringEarly || len(ro.Halt.Offenders) != 1 || ro.Halt.Offenders[0] != regressedOn {
		t.Errorf("halt %+v, want the early wave halted for %s", ro.Halt, regressedOn)
	}
	awaitFleet(t, ctx, api, "globex-prod pinned back, healthy on 1.7.2", func(ds []apitypes.Deployment) bool {
		for _, d := range ds {
			if d.ID == regressedOn {
				return d.Pinned && d.Release == Current && d.Status == "healthy"
			}
		}
		return false
	})
	rs, err := api.Rollouts(ctx, Stack, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	if last := rs[0].Waves[2]; !last.OpenedAt.IsZero() {
		t.Errorf("the last wave opened at %v, want never", last.OpenedAt)
	}
	if d, err := api.Deployment(ctx, laggingOn); err != nil || d.Release != Current {
		t.Errorf("%s, of the last wave, = %+v, %v; want still on %s", laggingOn, d, err, Current)
	}
	r.stop(t)
}
