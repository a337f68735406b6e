package web_test

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview/runtimetest"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/store"
)

const depEvilValue = `<script>alert(1)</script>`

// depTel is one deployment's resource for the telemetry the tests send.
type depTel struct{ id, customer, release, service string }

func (d depTel) tag(r pcommon.Resource) {
	a := r.Attributes()
	a.PutStr(otlp.AttrDeploymentID, d.id)
	a.PutStr(otlp.AttrCustomer, d.customer)
	a.PutStr(otlp.AttrRelease, d.release)
	a.PutStr(otlp.AttrStack, "shop")
	a.PutStr("service.name", d.service)
}

// depTraceID makes trace n's id.
func depTraceID(n uint64) pcommon.TraceID {
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], 0xab00000000000000)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// depRequests sends n entry spans over the minute starting at at, errs of them
// failed, each lasting dur, and one error log per failed span.
func (f *fixture) depRequests(d depTel, first uint64, n, errs int, at time.Time, dur time.Duration, name, body string) {
	f.t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	d.tag(rs.Resource())
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	d.tag(rl.Resource())
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i := range n {
		sp := ss.AppendEmpty()
		sp.SetTraceID(depTraceID(first + uint64(i)))
		var sid [8]byte
		binary.BigEndian.PutUint64(sid[:], first+uint64(i)+1)
		sp.SetSpanID(sid)
		sp.SetName(name)
		sp.SetKind(ptrace.SpanKindServer)
		start := at.Add(time.Duration(i) * 100 * time.Millisecond)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(dur)))
		if i < errs {
			sp.Status().SetCode(ptrace.StatusCodeError)
			lr := lrs.AppendEmpty()
			lr.SetTimestamp(pcommon.NewTimestampFromTime(start))
			lr.SetSeverityNumber(plog.SeverityNumberError)
			lr.Body().SetStr(body)
			lr.SetTraceID(depTraceID(first + uint64(i)))
		}
	}
	tb, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx := context.Background()
	batches := []consumer.Batch{{Signal: otlp.Traces, DeploymentID: d.id, Received: at, Records: td.SpanCount(), Data: tb}}
	if lrs.Len() > 0 {
		lb, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
		if err != nil {
			f.t.Fatal(err)
		}
		batches = append(batches, consumer.Batch{Signal: otlp.Logs, DeploymentID: d.id, Received: at, Records: ld.LogRecordCount(), Data: lb})
	}
	for _, b := range batches {
		if err := f.tel.Consume(ctx, b); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := f.tel.Flush(ctx); err != nil {
		f.t.Fatal(err)
	}
}

// twoReleases registers deployment acme-prod on stack shop with name, customer
// and label values given, which ran 1.0.0 from 10:30 and 1.1.0 from 11:30, and
// sends requests for both: 1.1.0 fails half of them and is four times slower.
func (f *fixture) twoReleases(name, customer, label, logBody, spanName string) {
	f.t.Helper()
	ctx := context.Background()
	now := f.clk.Now()
	f.clk.Set(now.Add(-2 * time.Hour))
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: v, Notes: depEvilValue}); err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "acme-prod", Name: name, Customer: customer,
		Platform: "kubernetes", Cloud: "aws", Region: "eu-west-1", Stack: "shop", Labels: map[string]string{"tier": label}}}); err != nil {
		f.t.Fatal(err)
	}
	accepts := true
	checkin := func(at time.Time, rel string) {
		f.clk.Set(at)
		if _, err := f.reg.Checkin("acme-prod", registry.Report{Mode: fleet.ModePush, Description: &registry.Description{Release: rel, AgentVersion: "0.9.0"}, AcceptsReleases: &accepts,
			Health: &fleet.Health{Reported: true, Healthy: true}}); err != nil {
			f.t.Fatal(err)
		}
	}
	checkin(now.Add(-90*time.Minute), "1.0.0")
	checkin(now.Add(-30*time.Minute), "1.1.0")
	f.clk.Set(now)
	checkin(now, "1.1.0")
	old := depTel{"acme-prod", customer, "1.0.0", "checkout"}
	cur := depTel{"acme-prod", customer, "1.1.0", "checkout"}
	for m := range 20 {
		f.depRequests(old, uint64(m*1000), 40, 1, now.Add(-50*time.Minute+time.Duration(m)*time.Minute), 100*time.Millisecond, spanName, logBody)
		f.depRequests(cur, uint64(100000+m*1000), 40, 20, now.Add(-28*time.Minute+time.Duration(m)*time.Minute), 400*time.Millisecond, spanName, logBody)
	}
}

// location is where a redirect goes, without the fragment a browser keeps to itself.
func location(res *httptest.ResponseRecorder) string {
	l, _, _ := strings.Cut(res.Header().Get("Location"), "#")
	return l
}

func TestDeploymentPageShowsStatusEvidenceAndActions(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.twoReleases("Acme production", "acme", "gold", "payment declined for card", "POST /pay")
	if err := f.reg.SetRegression("acme-prod", &fleet.Regression{Release: "1.1.0", Previous: "1.0.0", Requests: 800, PreviousRequests: 800,
		ErrorRate: 0.5, PreviousErrorRate: 0.025, P95: 400, PreviousP95: 100, Worse: []string{"error_rate", "p95"}, Since: f.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	b := f.signIn(auth.RoleOperator)
	res := b.get("/deployments/acme-prod")
	page := body(t, res)
	if res.Code != http.StatusOK {
		t.Fatalf("status %d:\n%s", res.Code, page)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`<div id="status"[^>]*>\s*<span class="badge st-unhealthy">unhealthy</span>`),
		regexp.MustCompile(`id="status-reason"[^>]*>[^<]*regress`),
		regexp.MustCompile(`<svg class="chart" data-chart="error-rate"`),
		regexp.MustCompile(`<svg class="chart" data-chart="throughput"`),
		regexp.MustCompile(`<svg class="chart" data-chart="latency"`),
		regexp.MustCompile(`data-series="1.0.0" data-release="1.0.0"`),
		regexp.MustCompile(`data-series="1.1.0" data-release="1.1.0"`),
		regexp.MustCompile(`data-series="1.1.0 p95" data-release="1.1.0"`),
		regexp.MustCompile(`data-marker="release" data-at="\d+" data-label="1.1.0"`),
		regexp.MustCompile(`(?s)<section id="comparison"[^>]*>.*regressed.*</section>`),
		regexp.MustCompile(`(?s)<section id="comparison".*<th scope="row">Error rate</th><td class="num">50%</td><td class="num">2.5%</td>`),
		regexp.MustCompile(`<a id="error-logs" href="/logs\?deployment=acme-prod&(amp;)?release=1.1.0&(amp;)?min_severity=error">`),
		regexp.MustCompile(`payment declined for card`),
		// The SDK sent no severity text: the word comes from the number.
		regexp.MustCompile(`<td class="sev">ERROR</td>`),
		regexp.MustCompile(`(?s)<section id="traces".*<a href="/traces/ab00000000000000[0-9a-f]{16}">POST /pay</a>`),
		regexp.MustCompile(`<form id="pin-form" data-action="pin" method="post"`),
		regexp.MustCompile(`<select id="pin-release" name="release"`),
		regexp.MustCompile(`<option value="1.0.0" selected>1.0.0 \(previous\)</option>`),
		regexp.MustCompile(`<textarea id="pin-reason" name="reason"`),
		regexp.MustCompile(`<button type="submit" id="pin-submit"`),
		regexp.MustCompile(`<summary id="pin-open"`),
		regexp.MustCompile(`<strong>Acme production</strong> will be pinned to <span class="ver" id="pin-effect-release">1.0.0</span>; its agent applies it at once \(push\)`),
		regexp.MustCompile(`<form id="rollback-form" data-action="rollback"`),
		regexp.MustCompile(`<section id="pins"`),
	} {
		if !want.MatchString(page) {
			t.Errorf("page lacks %s", want)
		}
	}
	// One release change in the range, marked once on each of the three charts.
	if n := strings.Count(page, `data-marker="release"`); n != 3 {
		t.Errorf("%d release markers, want one on each of the 3 charts", n)
	}
	if strings.Contains(page, `id="unpin-form"`) || strings.Contains(page, `class="badge outline pinned"`) {
		t.Error("an unpinned deployment offers unpin or shows the pinned badge")
	}
}

func TestPinUnpinAndRollbackThroughTheForms(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.twoReleases("Acme production", "acme", "gold", "boom", "POST /pay")
	b := f.signIn(auth.RoleOperator)
	csrf := b.csrf()

	// A pin without a reason is refused in words, and nothing changes.
	res := b.post("/deployments/acme-prod/pin", url.Values{"csrf": {csrf}, "release": {"1.0.0"}})
	if page := body(t, res); res.Code != http.StatusBadRequest || !strings.Contains(page, "Nothing was changed: say why") {
		t.Fatalf("pin without reason: %d\n%s", res.Code, page)
	}
	// Pin: 303 back to the page, whose flash shows the audit entry.
	res = b.post("/deployments/acme-prod/pin", url.Values{"csrf": {csrf}, "release": {"1.0.0"}, "reason": {"errors up on 1.1.0"}})
	if res.Code != http.StatusSeeOther || !strings.HasPrefix(res.Header().Get("Location"), "/deployments/acme-prod?done=chg-") {
		t.Fatalf("pin: %d %s", res.Code, res.Header().Get("Location"))
	}
	page := body(t, b.get(location(res)))
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?s)<div id="flash"[^>]*>.*pin by alice-operator at .*1.1.0</span> → <span class="ver">1.0.0</span>, because “errors up on 1.1.0”`),
		regexp.MustCompile(`<span class="badge outline pinned"`),
		regexp.MustCompile(`<tr data-pin="chg-[^"]+"><td>.*</td><td>pin</td>`),
		regexp.MustCompile(`<form id="unpin-form" data-action="unpin"`),
	} {
		if !want.MatchString(page) {
			t.Errorf("after pin, page lacks %s", want)
		}
	}
	v, _ := f.reg.Get("acme-prod")
	if v.Deployment.Pin == nil || v.Deployment.Pin.Release != "1.0.0" || v.Deployment.Pin.By != "alice-operator" {
		t.Fatalf("registry pin after the form: %+v", v.Deployment.Pin)
	}
	// Pinning again to the same release changes nothing and says so.
	res = b.post("/deployments/acme-prod/pin", url.Values{"csrf": {csrf}, "release": {"1.0.0"}, "reason": {"again"}})
	if page := body(t, res); res.Code != http.StatusOK || !strings.Contains(page, "Nothing changed") {
		t.Errorf("same pin again: %d", res.Code)
	}
	// Unpin.
	res = b.post("/deployments/acme-prod/unpin", url.Values{"csrf": {csrf}, "reason": {"fix shipped"}})
	if res.Code != http.StatusSeeOther {
		t.Fatalf("unpin: %d\n%s", res.Code, body(t, res))
	}
	page = body(t, b.get(location(res)))
	if !regexp.MustCompile(`(?s)<div id="flash".*unpin by alice-operator`).MatchString(page) || strings.Contains(page, `class="badge outline pinned"`) {
		t.Errorf("after unpin:\n%s", page)
	}
	// Rollback pins the release it ran before.
	res = b.post("/deployments/acme-prod/rollback", url.Values{"csrf": {csrf}, "reason": {"back off"}})
	if res.Code != http.StatusSeeOther {
		t.Fatalf("rollback: %d\n%s", res.Code, body(t, res))
	}
	if v, _ := f.reg.Get("acme-prod"); v.Deployment.Pin == nil || v.Deployment.Pin.Release != "1.0.0" {
		t.Fatalf("rollback pinned %+v", v.Deployment.Pin)
	}
	if n := len(regexp.MustCompile(`<tr data-pin=`).FindAllString(body(t, b.get("/deployments/acme-prod")), -1)); n != 3 {
		t.Errorf("pins history has %d rows, want 3", n)
	}
	// A release the stack does not have is refused in words.
	res = b.post("/deployments/acme-prod/pin", url.Values{"csrf": {csrf}, "release": {"9.9.9"}, "reason": {"x"}})
	if page := body(t, res); res.Code != http.StatusBadRequest || !strings.Contains(page, `release &#34;9.9.9&#34; is not published`) {
		t.Errorf("unknown release: %d\n%s", res.Code, page)
	}
}

func TestViewerSeesNoActionsAndIsRefused(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.twoReleases("Acme production", "acme", "gold", "boom", "POST /pay")
	b := f.signIn(auth.RoleViewer)
	page := body(t, b.get("/deployments/acme-prod"))
	if strings.Contains(page, "data-action") || strings.Contains(page, "pin-form") {
		t.Fatal("a viewer sees action forms")
	}
	csrf := b.csrf()
	for _, action := range []string{"pin", "unpin", "rollback"} {
		res := b.post("/deployments/acme-prod/"+action, url.Values{"csrf": {csrf}, "release": {"1.0.0"}, "reason": {"x"}})
		if res.Code != http.StatusForbidden {
			t.Errorf("viewer %s: %d, want 403", action, res.Code)
		}
	}
	if v, _ := f.reg.Get("acme-prod"); v.Deployment.Pin != nil {
		t.Fatal("a viewer's POST pinned the deployment")
	}
}

func TestDeploymentPageEscapesEveryOutsideString(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.twoReleases(depEvilValue+"name", depEvilValue+"customer", depEvilValue+"label", depEvilValue+"logbody", depEvilValue+"span")
	b := f.signIn(auth.RoleOperator)
	res := b.post("/deployments/acme-prod/pin", url.Values{"csrf": {b.csrf()}, "release": {"1.0.0"}, "reason": {depEvilValue + "reason"}})
	if res.Code != http.StatusSeeOther {
		t.Fatalf("pin: %d", res.Code)
	}
	page := body(t, b.get(location(res)))
	if strings.Contains(page, "<script>alert") {
		t.Fatalf("raw script on the page:\n%s", page)
	}
	for _, what := range []string{"name", "customer", "label", "logbody", "span", "reason"} {
		if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;"+what) {
			t.Errorf("escaped %s missing", what)
		}
	}
}

func TestDeploymentWithoutTelemetryTeachesTheSetup(t *testing.T) {
	f := newFixture(t, web.Settings{})
	ctx := context.Background()
	if _, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "quiet", Customer: "q", Stack: "shop"}}); err != nil {
		t.Fatal(err)
	}
	b := f.signIn(auth.RoleOperator)
	page := body(t, b.get("/deployments/quiet"))
	if !strings.Contains(page, "OTEL_EXPORTER_OTLP_ENDPOINT=http://&lt;agent&gt;:4318") || !strings.Contains(page, "no data in this range") {
		t.Errorf("empty state does not teach:\n%s", page)
	}
	if res := b.get("/deployments/nope"); res.Code != http.StatusNotFound {
		t.Errorf("unknown deployment: %d", res.Code)
	}
	if res := b.get("/deployments/quiet?since=nonsense"); res.Code != http.StatusBadRequest {
		t.Errorf("bad range: %d", res.Code)
	}
}

// oneNote answers one notification for every deployment asked about.
type oneNote struct{ asked *store.NotificationQuery }

func (n oneNote) List(_ context.Context, q store.NotificationQuery) ([]store.Notification, error) {
	*n.asked = q
	return []store.Notification{{ID: "n1", Kind: "status", State: "entered", Status: fleet.StatusUnhealthy,
		Reason: depEvilValue + "note", At: time.Date(2026, 3, 1, 11, 45, 0, 0, time.UTC)}}, nil
}

func TestDeploymentPageListsItsNotifications(t *testing.T) {
	var asked store.NotificationQuery
	f := newFixture(t, web.Settings{Notifications: oneNote{&asked}})
	f.twoReleases("Acme production", "acme", "gold", "boom", "POST /pay")
	page := body(t, f.signIn(auth.RoleViewer).get("/deployments/acme-prod"))
	if asked.Deployment != "acme-prod" {
		t.Errorf("notifications asked for %+v", asked)
	}
	if !regexp.MustCompile(`(?s)<section id="notifications".*<span class="badge st-unhealthy">unhealthy</span></td><td>&lt;script&gt;alert\(1\)&lt;/script&gt;note</td>`).MatchString(page) {
		t.Errorf("notification missing or not escaped:\n%s", page)
	}
}

func TestDeploymentPageShowsTheRedactionPolicyItsAgentRuns(t *testing.T) {
	f := newFixture(t, web.Settings{})
	ctx := context.Background()
	if _, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "quiet", Customer: "q", Stack: "shop"}}); err != nil {
		t.Fatal(err)
	}
	b := f.signIn(auth.RoleViewer)
	if page := body(t, b.get("/deployments/quiet")); !strings.Contains(page, "has not reported a redaction policy") {
		t.Errorf("no report yet, but the page does not say so:\n%s", page)
	}
	hashEmail := map[string]string{"email": redactpolicy.ActionHash}
	e := redactpolicy.Merge(redactpolicy.Policy{Detectors: hashEmail, Attributes: redactpolicy.Attributes{Deny: []string{"user.ssn"}}},
		redactpolicy.Policy{Detectors: hashEmail})
	rep := &redactpolicy.Report{VendorHash: "0123456789abcdef", Effective: e, EffectiveHash: e.Hash(), Error: depEvilValue + "refusal"}
	if _, err := f.reg.Checkin("quiet", registry.Report{Redaction: &registry.RedactionReport{Report: rep}}); err != nil {
		t.Fatal(err)
	}
	page := body(t, b.get("/deployments/quiet"))
	for _, want := range []string{`id="redaction-fact"`, "email: hash", "card: mask", "user.ssn", "Out of sync", "0123456789abcdef", e.Hash(),
		"&lt;script&gt;alert(1)&lt;/script&gt;refusal"} {
		if !strings.Contains(page, want) {
			t.Errorf("the redaction section lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert") {
		t.Fatal("raw script on the page")
	}
}

func TestDeploymentPageShowsItsRuntimeState(t *testing.T) {
	f := newFixture(t, web.Settings{})
	ctx := context.Background()
	if _, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "acme-prod", Customer: "acme", Stack: "shop"}}); err != nil {
		t.Fatal(err)
	}
	b := f.signIn(auth.RoleViewer)
	page := body(t, b.get("/deployments/acme-prod"))
	if !strings.Contains(page, `id="runtime-empty"`) || !strings.Contains(page, "docs/signals.md") || !strings.Contains(page, "runtime:\n  interval: 30s") {
		t.Errorf("a deployment without runtime signals does not teach the configuration:\n%s", page)
	}

	runtimetest.Feed(t, f.tel, f.clk.Now().Add(-12*time.Minute), "acme-prod")
	h := &fleet.Health{Reported: true, Components: map[string]fleet.ComponentHealth{
		"worker/0": {Healthy: true, Status: "running", Watched: true},
		"worker/1": {Healthy: false, Status: "crash-loop", Restarts: 4, LastError: depEvilValue + "exit status 3", Watched: true},
	}}
	if _, err := f.reg.Checkin("acme-prod", registry.Report{Health: h}); err != nil {
		t.Fatal(err)
	}
	page = body(t, b.get("/deployments/acme-prod"))
	i := strings.Index(page, `<section id="runtime"`)
	if i < 0 {
		t.Fatalf("no runtime section:\n%s", page)
	}
	sec := page[i : i+strings.Index(page[i:], "</section>")]
	for _, want := range []*regexp.Regexp{
		// The crash-looping replica comes first, in the status vocabulary, escaped.
		regexp.MustCompile(`(?s)<tr class="down"><td class="mono">worker/1</td><td><span class="badge st-unhealthy">unhealthy</span></td><td>crash-loop</td><td class="num">4</td><td class="body">&lt;script&gt;alert\(1\)&lt;/script&gt;exit status 3</td><td class="nowrap"><time title="2026-03-01T12:00:00Z">[^<]*</time></td></tr>.*worker/0`),
		regexp.MustCompile(`(?s)Sources down.*redis/cache.*NOAUTH Authentication required`),
		// 220 requests over the window: 200 2xx, 20 5xx, mean 18.2 ms; from
		// the buckets p50 7.75 ms, p95 86.25 ms, p99 97.25 ms.
		regexp.MustCompile(`<td>shop</td><td class="mono">/orders/\{id\}</td><td class="num">220</td><td class="num">200</td><td class="num">0</td><td class="num">0</td><td class="num worse">20</td><td class="num">18.2 ms</td><td class="num">7.8 ms</td><td class="num">86.2 ms</td><td class="num">97.2 ms</td>`),
		regexp.MustCompile(`<span class="mono">ORDERS</span></td><td class="mono">billing</td><td class="num">—</td><td class="num">300</td><td class="num">5</td>`),
		regexp.MustCompile(`/var/lib/app <span class="muted">on /var</span></td><td class="num">600 B</td><td>300 B free of 1000 B`),
		regexp.MustCompile(`customer-exports</td><td class="num">3.9 MiB</td><td>1000 objects <span class="badge outline partial-badge"[^>]*>at least</span>`),
		regexp.MustCompile(`<span class="mono">public.orders</span> 4.8 MiB, <span class="mono">public.users</span> 2.9 MiB`),
	} {
		if !want.MatchString(sec) {
			t.Errorf("runtime section lacks %s:\n%s", want, sec)
		}
	}
	if strings.Contains(sec, "runtime-empty") {
		t.Error("the empty state shows beside the figures")
	}
}

// A queue's oldest message shows in units a reader compares at a glance, not
// as a float of seconds ("14.596096725 s").
func TestQueueAgesAreRounded(t *testing.T) {
	for _, c := range []struct {
		secs float64
		want string
	}{{14.596096725, "15 s"}, {59.4, "59 s"}, {90, "2 min"}, {3599, "60 min"}, {5400, "1.5 h"}, {0.2, "0 s"}} {
		if got := web.Age(c.secs); got != c.want {
			t.Errorf("age of %v s = %q, want %q", c.secs, got, c.want)
		}
	}
}
