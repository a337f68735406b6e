package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// xss is a user-controlled string that must come back escaped wherever shown.
const xss = `<script>alert(1)</script>`

// releaseFleet is the fixture's registry with stack "app" at 1.9.0 and 2.0.0
// (published a day apart) and stack "db" at 1.0.0:
//
//	acme-prod    acme     tier=gold  runs 2.0.0, ran 1.9.0 before
//	acme-dr      acme                runs 2.0.0, ran 1.9.0 before
//	globex-prod  globex   tier=gold  runs 1.9.0 (polls; behind the latest)
//	evil         <script> tier=<script> runs 2.0.0, pinned to 2.0.0 with an
//	                                 escaped-or-not reason by a token named <script>
//	db-1         acme     (stack db) runs 1.0.0
func releaseFleet(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, web.Settings{})
	ctx := context.Background()
	rel := func(stack, v string) {
		t.Helper()
		if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: stack, Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	rel("app", "1.9.0")
	rel("db", "1.0.0")
	_, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{
		{ID: "acme-prod", Name: "Acme production", Customer: "acme", Stack: "app", Labels: map[string]string{"tier": "gold"}},
		{ID: "acme-dr", Name: "Acme DR", Customer: "acme", Stack: "app"},
		{ID: "globex-prod", Name: "Globex", Customer: "globex", Stack: "app", Labels: map[string]string{"tier": "gold"}},
		{ID: "evil", Name: xss, Customer: xss, Stack: "app", Labels: map[string]string{"tier": xss}},
		{ID: "db-1", Name: "DB", Customer: "acme", Stack: "db"},
	})
	if err != nil {
		t.Fatal(err)
	}
	accepts := true
	checkin := func(id, release string) {
		t.Helper()
		if _, err := f.reg.Checkin(id, registry.Report{Mode: fleet.ModePull, AcceptsReleases: &accepts,
			Description: &registry.Description{Release: release}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"acme-prod", "acme-dr", "globex-prod", "evil"} {
		checkin(id, "1.9.0")
	}
	checkin("db-1", "1.0.0")
	f.clk.Advance(24 * time.Hour)
	rel("app", "2.0.0")
	for _, id := range []string{"acme-prod", "acme-dr", "evil"} {
		checkin(id, "2.0.0")
	}
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"evil"}}, Action: fleet.ActionPin,
		Release: "2.0.0", By: xss, Reason: "hold " + xss}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute)
	return f
}

// requests appends n server spans of deployment id on release at the fixture's
// clock minus ago, errs of them failed, each lasting dur.
func requests(t *testing.T, f *fixture, id, customer, release string, ago time.Duration, n, errs int, dur time.Duration) {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	a := rs.Resource().Attributes()
	a.PutStr(otlp.AttrDeploymentID, id)
	a.PutStr(otlp.AttrCustomer, customer)
	a.PutStr(otlp.AttrRelease, release)
	a.PutStr(otlp.AttrStack, "app")
	a.PutStr("service.name", "api")
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	at := f.clk.Now().Add(-ago)
	for i := range n {
		sp := ss.AppendEmpty()
		var tid [16]byte
		tid[0], tid[14], tid[15] = 0x7a, byte(i>>8), byte(i)
		tid[1] = byte(len(release))
		copy(tid[2:10], id)
		sp.SetTraceID(tid)
		sp.SetSpanID(pcommon.SpanID{1, byte(i >> 8), byte(i)})
		sp.SetName("GET /checkout")
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(i) * time.Millisecond)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(i)*time.Millisecond + dur)))
		if i < errs {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
	}
	data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.tel.Consume(ctx, consumer.Batch{Signal: otlp.Traces, DeploymentID: id, Received: f.clk.Now(), Records: n, Data: data}); err != nil {
		t.Fatal(err)
	}
	if err := f.tel.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// noRaw fails when the page carries the user-controlled string unescaped.
func noRaw(t *testing.T, page string) {
	t.Helper()
	if strings.Contains(page, xss) {
		t.Errorf("the page carries %s unescaped", xss)
	}
}

func section(t *testing.T, page, stack string) string {
	t.Helper()
	start := strings.Index(page, `<section class="stack" data-stack="`+stack+`"`)
	if start < 0 {
		t.Fatalf("no section for stack %s:\n%s", stack, page)
	}
	end := strings.Index(page[start:], "</section>")
	return page[start : start+end]
}

var releaseRowRE = regexp.MustCompile(`<tr data-release="([^"]+)">`)

func TestReleasesPageShowsAdoptionHealthAndBehind(t *testing.T) {
	f := releaseFleet(t)
	requests(t, f, "acme-prod", "acme", "2.0.0", 10*time.Minute, 100, 20, 300*time.Millisecond)
	requests(t, f, "globex-prod", "globex", "1.9.0", 20*time.Minute, 100, 1, 50*time.Millisecond)
	b := f.signIn(auth.RoleOperator)
	res := b.get("/releases")
	page := body(t, res)
	if res.Code != http.StatusOK {
		t.Fatalf("GET /releases: %d\n%s", res.Code, page)
	}
	noRaw(t, page)
	app := section(t, page, "app")
	var versions []string
	for _, m := range releaseRowRE.FindAllStringSubmatch(app, -1) {
		versions = append(versions, m[1])
	}
	if want := []string{"2.0.0", "1.9.0"}; !slices.Equal(versions, want) {
		t.Errorf("app's releases %v, want newest first %v", versions, want)
	}
	row := func(v string) string {
		i := strings.Index(app, `<tr data-release="`+v+`">`)
		j := strings.Index(app[i:], "</tr>")
		return app[i : i+j]
	}
	r2, r1 := row("2.0.0"), row("1.9.0")
	for _, want := range []string{
		`<td class="num">3</td>`, // running: acme-prod, acme-dr, evil
		"75%",                    // of the stack's four
		"20%",                    // error rate
		"&#43;19.0 pts errors",   // against 1.9.0's 1%
		`class="delta worse"`,
		"vs <span class=\"ver\">1.9.0</span> <span class=\"reqs\">(100 vs 100 req)</span>",
	} {
		if !strings.Contains(r2, want) {
			t.Errorf("2.0.0's row lacks %q:\n%s", want, r2)
		}
	}
	// globex-prod runs 1.9.0 but should run 2.0.0 and has not polled since.
	if !strings.Contains(r1, `href="/?stack=app&amp;release=1.9.0&amp;behind=pull-pending">1 pull-pending</a>`) {
		t.Errorf("1.9.0's row does not link its behind deployment to the fleet page:\n%s", r1)
	}
	if !strings.Contains(r1, "no earlier release to compare") {
		t.Errorf("1.9.0's row should say it has nothing to compare with:\n%s", r1)
	}
	if !strings.Contains(section(t, page, "db"), `<tr data-release="1.0.0">`) {
		t.Error("stack db has no row for 1.0.0")
	}
	if !strings.Contains(page, `<form id="bulk-form" method="get" action="/releases/bulk"`) {
		t.Error("no bulk form")
	}
	// A viewer cannot change pins, so the page does not offer to.
	if strings.Contains(body(t, f.signIn(auth.RoleViewer).get("/releases")), `id="bulk-form"`) {
		t.Error("a viewer is offered the bulk form")
	}
}

func TestReleasesPageEmptyAndWithoutTelemetry(t *testing.T) {
	f := newFixture(t, web.Settings{})
	page := body(t, f.signIn(auth.RoleViewer).get("/releases"))
	if !strings.Contains(page, "No releases yet") || !strings.Contains(page, "periscope releases create 1.0.0 --stack app") {
		t.Errorf("an empty manager's releases page does not teach how to publish one:\n%s", page)
	}
}

// previewIDs lists the deployments a preview page says will change.
var previewRE = regexp.MustCompile(`<li data-deployment="([^"]+)">`)

func previewIDs(page string) []string {
	var ids []string
	for _, m := range previewRE.FindAllStringSubmatch(page, -1) {
		ids = append(ids, m[1])
	}
	sort.Strings(ids)
	return ids
}

var planRE = regexp.MustCompile(`name="plan" value="([^"]+)"`)

// confirmForm is the form a preview page would POST, with the reason.
func confirmForm(t *testing.T, b *browser, sel url.Values, page, reason string) url.Values {
	t.Helper()
	m := planRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the preview has no plan to confirm:\n%s", page)
	}
	form := url.Values{"csrf": {b.csrf()}, "plan": {m[1]}, "reason": {reason}}
	for k, v := range sel {
		form[k] = v
	}
	return form
}

func TestBulkPinPreviewListsExactlyWhatTheConfirmationChanges(t *testing.T) {
	f := releaseFleet(t)
	b := f.signIn(auth.RoleOperator)
	// Every app deployment running 2.0.0, pinned to 1.9.0: evil is already
	// pinned to 2.0.0 and moves too; globex-prod runs 1.9.0 and is not selected.
	sel := url.Values{"action": {"pin"}, "stack": {"app"}, "release": {"2.0.0"}, "target": {"1.9.0"}}
	res := b.get("/releases/bulk?" + sel.Encode())
	page := body(t, res)
	if res.Code != http.StatusOK {
		t.Fatalf("preview: %d\n%s", res.Code, page)
	}
	noRaw(t, page)
	want := []string{"acme-dr", "acme-prod", "evil"}
	if got := previewIDs(page); !slices.Equal(got, want) {
		t.Fatalf("preview lists %v, want %v", got, want)
	}
	if !strings.Contains(page, `<span class="ver">2.0.0</span> →`) || !strings.Contains(page, `pinned to <span class="ver">1.9.0</span>`) {
		t.Errorf("the preview does not say how each changes:\n%s", page)
	}
	if !strings.Contains(page, `id="bulk-confirm"`) {
		t.Fatal("an operator sees no confirm button")
	}

	res = b.post("/releases/bulk", confirmForm(t, b, sel, page, "2.0.0 fails checkouts "+xss))
	if res.Code != http.StatusSeeOther {
		t.Fatalf("confirm: %d, want 303\n%s", res.Code, body(t, res))
	}
	loc := res.Header().Get("Location")
	if !strings.HasPrefix(loc, "/audit?change=") {
		t.Fatalf("confirm redirects to %q, want the audit trail of the change", loc)
	}
	var changed []string
	views, _ := f.reg.List(fleet.Filter{Stack: "app"}, registry.Page{})
	for _, v := range views {
		if p := v.Deployment.Pin; p != nil && p.Release == "1.9.0" {
			changed = append(changed, v.Deployment.ID)
			if p.By != "alice-operator" {
				t.Errorf("%s pinned by %q, want the token's name", v.Deployment.ID, p.By)
			}
		}
	}
	sort.Strings(changed)
	if !slices.Equal(changed, want) {
		t.Errorf("pinned to 1.9.0: %v, want exactly the preview's %v", changed, want)
	}

	// The audit page the redirect names lists exactly that change.
	audit := body(t, b.get(loc))
	noRaw(t, audit)
	rows := auditRows(audit)
	if len(rows) != 3 {
		t.Fatalf("the change's audit page has %d rows, want 3:\n%s", len(rows), audit)
	}
	for _, r := range rows {
		for _, w := range []string{`data-action="pin.pin"`, "alice-operator", "2.0.0 fails checkouts &lt;script&gt;alert(1)&lt;/script&gt;", "pinned to 1.9.0"} {
			if !strings.Contains(r, w) {
				t.Errorf("audit row lacks %q:\n%s", w, r)
			}
		}
	}
}

func TestBulkConfirmRefusedWhenTheFleetMovedSincePreview(t *testing.T) {
	f := releaseFleet(t)
	b := f.signIn(auth.RoleOperator)
	sel := url.Values{"action": {"rollback"}, "customer": {"acme"}, "stack": {"app"}}
	page := body(t, b.get("/releases/bulk?"+sel.Encode()))
	if got, want := previewIDs(page), []string{"acme-dr", "acme-prod"}; !slices.Equal(got, want) {
		t.Fatalf("rollback preview lists %v, want %v", got, want)
	}
	form := confirmForm(t, b, sel, page, "bad release")
	// Someone pins acme-dr meanwhile: the plan is not what was previewed.
	if _, err := f.reg.Pin(context.Background(), registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-dr"}},
		Action: fleet.ActionPin, Release: "1.9.0", By: "bob", Reason: "manual"}); err != nil {
		t.Fatal(err)
	}
	res := b.post("/releases/bulk", form)
	page = body(t, res)
	if res.Code != http.StatusConflict || !strings.Contains(page, "The fleet changed since this preview") {
		t.Fatalf("confirming a stale preview: %d, want 409 saying so\n%s", res.Code, page)
	}
	if v, _ := f.reg.Get("acme-prod"); v.Deployment.Pin != nil {
		t.Errorf("acme-prod was pinned by a refused confirmation: %+v", v.Deployment.Pin)
	}
	// The new preview lists only acme-prod, and confirming it works.
	if got := previewIDs(page); !slices.Equal(got, []string{"acme-prod"}) {
		t.Errorf("the new preview lists %v, want [acme-prod]", got)
	}
	if res := b.post("/releases/bulk", confirmForm(t, b, sel, page, "bad release")); res.Code != http.StatusSeeOther {
		t.Fatalf("confirming the new preview: %d\n%s", res.Code, body(t, res))
	}
	if v, _ := f.reg.Get("acme-prod"); v.Deployment.Pin == nil || v.Deployment.Pin.Release != "1.9.0" {
		t.Errorf("acme-prod after the rollback: pin %+v, want 1.9.0", v.Deployment.Pin)
	}
}

func TestBulkNeedsAReasonAndSaysWhatCannotApply(t *testing.T) {
	f := releaseFleet(t)
	b := f.signIn(auth.RoleOperator)
	sel := url.Values{"action": {"pin"}, "stack": {"app"}, "target": {"1.9.0"}}
	page := body(t, b.get("/releases/bulk?"+sel.Encode()))
	res := b.post("/releases/bulk", confirmForm(t, b, sel, page, "  "))
	if res.Code != http.StatusBadRequest || !strings.Contains(body(t, res), "needs a reason") {
		t.Errorf("a pin without a reason: %d, want 400 asking why", res.Code)
	}
	// db has no release 3.0.0; globex-prod never ran anything before 1.9.0.
	for q, want := range map[string]string{
		"action=pin&stack=db&target=3.0.0":          "release 3.0.0 is not published for its stack db",
		"action=rollback&stack=app&customer=globex": "globex-prod: no earlier release to roll back to",
		"action=pin&labels=tier":                    "is not key=value",
		"action=unpin":                              "choose which deployments",
	} {
		page := body(t, b.get("/releases/bulk?"+q))
		if !strings.Contains(page, want) || strings.Contains(page, `id="bulk-confirm"`) {
			t.Errorf("preview of %s: want %q and no confirm button\n%s", q, want, page)
		}
	}
}

func TestBulkViewerSeesNoConfirmAndIsRefused(t *testing.T) {
	f := releaseFleet(t)
	sel := url.Values{"action": {"unpin"}, "labels": {"tier=" + xss}}
	op := f.signIn(auth.RoleOperator)
	opPage := body(t, op.get("/releases/bulk?"+sel.Encode()))
	if got := previewIDs(opPage); !slices.Equal(got, []string{"evil"}) {
		t.Fatalf("unpin preview by label lists %v, want [evil]", got)
	}
	viewer := f.signIn(auth.RoleViewer)
	page := body(t, viewer.get("/releases/bulk?"+sel.Encode()))
	noRaw(t, page)
	if strings.Contains(page, "bulk-confirm") || !slices.Equal(previewIDs(page), []string{"evil"}) {
		t.Errorf("a viewer should see the preview without a confirm button:\n%s", page)
	}
	res := viewer.post("/releases/bulk", confirmForm(t, viewer, sel, opPage, "viewer"))
	if res.Code != http.StatusForbidden {
		t.Errorf("a viewer's confirmation: %d, want 403", res.Code)
	}
	if v, _ := f.reg.Get("evil"); v.Deployment.Pin == nil {
		t.Error("a viewer's confirmation unpinned evil")
	}
	// Without the CSRF token, an operator's POST is refused too.
	form := confirmForm(t, op, sel, opPage, "")
	form.Del("csrf")
	if res := op.post("/releases/bulk", form); res.Code != http.StatusForbidden {
		t.Errorf("a confirmation without the CSRF token: %d, want 403", res.Code)
	}
	if v, _ := f.reg.Get("evil"); v.Deployment.Pin == nil {
		t.Error("a forged confirmation unpinned evil")
	}
}

func TestBulkPreviewOfManyListsTheFirstAndAllOnRequest(t *testing.T) {
	f := releaseFleet(t)
	ctx := context.Background()
	const n = 520
	nds := make([]registry.NewDeployment, n)
	for i := range nds {
		nds[i] = registry.NewDeployment{ID: fmt.Sprintf("bulk-%03d", i), Customer: "bulk", Stack: "app"}
	}
	if _, err := f.reg.CreateDeployments(ctx, nds); err != nil {
		t.Fatal(err)
	}
	b := f.signIn(auth.RoleOperator)
	sel := url.Values{"action": {"pin"}, "customer": {"bulk"}, "target": {"1.9.0"}}
	page := body(t, b.get("/releases/bulk?"+sel.Encode()))
	if got := len(previewIDs(page)); got != 500 || !strings.Contains(page, "Showing the first 500 of 520") {
		t.Fatalf("a preview of %d lists %d, want the first 500 and says so", n, got)
	}
	all := body(t, b.get("/releases/bulk?"+sel.Encode()+"&all=1"))
	ids := previewIDs(all)
	if len(ids) != n || ids[0] != "bulk-000" || ids[n-1] != fmt.Sprintf("bulk-%03d", n-1) {
		t.Fatalf("the full preview lists %d, want all %d", len(ids), n)
	}
	if res := b.post("/releases/bulk", confirmForm(t, b, sel, page, "hold the new customer")); res.Code != http.StatusSeeOther {
		t.Fatalf("confirm: %d\n%s", res.Code, body(t, res))
	}
	views, _ := f.reg.List(fleet.Filter{Customer: "bulk", Pinned: "true"}, registry.Page{})
	if len(views) != n {
		t.Errorf("%d pinned after the confirmation, want the %d the preview counted", len(views), n)
	}
}

// conflicting is the registry with another pin change holding acme-prod, as
// registry.Pin reports it.
type conflicting struct{ *registry.Registry }

func (conflicting) Pin(context.Context, registry.PinRequest) (registry.PinResult, error) {
	return registry.PinResult{}, fmt.Errorf("deployment acme-prod is being changed by pin change chg-other; retry once it is done: %w", registry.ErrConflict)
}

func TestBulkConflictIsSaidInWords(t *testing.T) {
	f := releaseFleet(t)
	w, err := web.New(conflicting{f.reg}, f.keys, web.Settings{Clock: f.clk, Telemetry: f.tel, Audit: f.st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	f.h = w.Handler()
	b := f.signIn(auth.RoleOperator)
	sel := url.Values{"action": {"rollback"}, "customer": {"acme"}, "stack": {"app"}}
	page := body(t, b.get("/releases/bulk?"+sel.Encode()))
	res := b.post("/releases/bulk", confirmForm(t, b, sel, page, "bad release"))
	page = body(t, res)
	want := "Another change holds part of this selection right now, so nothing was changed: deployment acme-prod is being changed by pin change chg-other; retry once it is done."
	if res.Code != http.StatusConflict || !strings.Contains(page, want) || strings.Contains(page, "already exists") {
		t.Errorf("a conflicting confirmation: %d, want 409 saying %q\n%s", res.Code, want, page)
	}
}
