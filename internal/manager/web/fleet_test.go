package web_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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

// fleetOf creates deployments of stack "shop" (customer: the id's first
// word), publishes 1.0 and 2.0, and has them check in as asked.
func fleetOf(t testing.TB, f *fixture, ids ...string) {
	t.Helper()
	ctx := context.Background()
	var nds []registry.NewDeployment
	for _, id := range ids {
		cust, _, _ := strings.Cut(id, "-")
		nds = append(nds, registry.NewDeployment{ID: id, Customer: cust, Stack: "shop", Cloud: "aws", Region: "eu-west-1", Platform: "ecs"})
	}
	if _, err := f.reg.CreateDeployments(ctx, nds); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0", "2.0"} {
		if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: v}); err != nil && !strings.Contains(err.Error(), "exist") {
			t.Fatal(err)
		}
	}
}

func checkin(t testing.TB, f *fixture, id, release string, rep registry.Report) {
	t.Helper()
	yes := true
	rep.Mode, rep.AcceptsReleases = fleet.ModePull, &yes
	if release != "" {
		rep.Description = &registry.Description{Release: release}
	}
	if _, err := f.reg.Checkin(id, rep); err != nil {
		t.Fatal(err)
	}
}

// mixedFleet has a deployment in each situation the table ranks: created in
// id order, which is not the order the page shows them in.
func mixedFleet(t testing.TB, f *fixture) {
	t.Helper()
	fleetOf(t, f, "acme-healthy", "beta-pending", "cyan-updating", "delta-behind", "echo-stale", "fox-failed", "globex-unhealthy")
	checkin(t, f, "echo-stale", "2.0", registry.Report{})
	f.clk.Advance(10 * time.Minute)
	checkin(t, f, "acme-healthy", "2.0", registry.Report{})
	checkin(t, f, "delta-behind", "1.0", registry.Report{})
	checkin(t, f, "cyan-updating", "1.0", registry.Report{Update: &fleet.UpdateState{Phase: fleet.UpdateApplying, Release: "2.0"}})
	checkin(t, f, "fox-failed", "1.0", registry.Report{Update: &fleet.UpdateState{Phase: fleet.UpdateFailed, Release: "2.0", Error: "hook exited 1"}})
	checkin(t, f, "globex-unhealthy", "2.0", registry.Report{Health: &fleet.Health{Reported: true, LastError: "database unreachable"}})
	if _, err := f.reg.Pin(context.Background(), registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-healthy"}},
		Action: fleet.ActionPin, Release: "2.0", By: "alice", Reason: "freeze"}); err != nil {
		t.Fatal(err)
	}
}

var rowRE = regexp.MustCompile(`<tr data-deployment="([^"]+)"`)

// rows lists the deployments of the table in the page's order.
func rows(page string) []string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

func get(t testing.TB, b *browser, target string) string {
	t.Helper()
	res := b.get(target)
	if res.Code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", target, res.Code, res.Body.String())
	}
	return body(t, res)
}

func TestFleetCountsLinkToFilters(t *testing.T) {
	f := newFixture(t, web.Settings{})
	mixedFleet(t, f)
	b := f.signIn(auth.RoleViewer)
	page := get(t, b, "/")
	for st, n := range map[string]int{"healthy": 2, "unhealthy": 1, "updating": 1, "failed": 1, "stale": 1, "pending": 1} {
		re := regexp.MustCompile(`<a class="count st-` + st + `[^"]*" href="/\?status=` + st + `" data-status-count="` + st + `"><span class="n">(\d+)</span>`)
		m := re.FindStringSubmatch(page)
		if m == nil || m[1] != fmt.Sprint(n) {
			t.Errorf("count of %s: %v; want a link to /?status=%s saying %d", st, m, st, n)
		}
	}
	for hook, want := range map[string]string{`href="/?pinned=true" data-count="pinned"><span class="n">1<`: "pinned",
		`href="/?behind=any" data-count="behind"><span class="n">2<`: "behind"} {
		if !strings.Contains(page, hook) {
			t.Errorf("no %s count link with its number (%s)", want, hook)
		}
	}
	if !strings.Contains(page, "3 deployments need attention: 1 unhealthy, 1 failed, 1 stale.") {
		t.Errorf("the summary line does not say what is wrong:\n%s", page)
	}

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"status=unhealthy", []string{"globex-unhealthy"}},
		{"status=healthy", []string{"delta-behind", "acme-healthy"}},
		{"pinned=true", []string{"acme-healthy"}},
		{"behind=any", []string{"fox-failed", "delta-behind"}},
		{"customer=fox", []string{"fox-failed"}},
		{"q=GLOBEX", []string{"globex-unhealthy"}},
		{"release=1.0&stack=shop", []string{"fox-failed", "delta-behind", "cyan-updating"}},
		{"cloud=gcp", nil},
	} {
		page := get(t, b, "/?"+tc.query)
		if got := rows(page); !slices.Equal(got, tc.want) {
			t.Errorf("/?%s lists %v; want %v", tc.query, got, tc.want)
		}
		if tc.want == nil && !strings.Contains(page, "No deployment matches these filters.") {
			t.Errorf("/?%s: an empty result does not say so", tc.query)
		}
	}
	// The active filter is shown as a chip that removes it, and the counts
	// still show the whole fleet.
	page = get(t, b, "/?status=failed&customer=fox")
	if !strings.Contains(page, `href="/?customer=fox" title="Remove this filter"><span class="k">status</span> <span class="v">failed</span>`) {
		t.Errorf("no chip removing the status filter")
	}
	if !strings.Contains(page, `data-status-count="failed" aria-current="true">`) || !strings.Contains(page, `data-status-count="healthy"><span class="n">2<`) {
		t.Errorf("the counts do not mark the active status or no longer count the whole fleet")
	}
	// A filter the page cannot use is named, and the rest of the page still works.
	page = get(t, b, "/?status=sad&label=nokey")
	if !strings.Contains(page, `status &#34;sad&#34; is not one of`) || !strings.Contains(page, `label &#34;nokey&#34; is not key=value`) || len(rows(page)) != 7 {
		t.Errorf("bad filters: not explained, or the fleet not shown (%d rows)", len(rows(page)))
	}
}

func TestFleetListsProblemsFirst(t *testing.T) {
	f := newFixture(t, web.Settings{})
	mixedFleet(t, f)
	page := get(t, f.signIn(auth.RoleViewer), "/")
	want := []string{"globex-unhealthy", "fox-failed", "echo-stale", "delta-behind", "cyan-updating", "beta-pending", "acme-healthy"}
	if got := rows(page); !slices.Equal(got, want) {
		t.Fatalf("rows %v\nwant %v", got, want)
	}
	// Each row links to its deployment and shows its status with the reason,
	// the pinned badge, what it is behind and why, and the check-in time.
	for _, want := range []string{
		`<a class="dep-link" href="/deployments/globex-unhealthy">`,
		`<span class="badge st-unhealthy">unhealthy</span>`,
		`<span class="reason">database unreachable</span>`,
		`<span class="reason">update to 2.0 failed: hook exited 1</span>`,
		`<span class="badge outline behind">behind: pull-pending</span> <span class="why">polls for 2.0, next expected 30 s from now</span>`,
		`<span class="badge outline pinned" title="Pinned to 2.0 by alice: freeze">pinned</span>`,
		`<time datetime="2026-03-01T12:10:00Z" title="2026-03-01T12:10:00Z">just now</time>`,
		`<span class="reason muted">registered, never checked in</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("missing %s", want)
		}
	}
	f.clk.Advance(12 * time.Second)
	if page := get(t, f.signIn(auth.RoleViewer), "/"); !strings.Contains(page, `title="2026-03-01T12:10:00Z">12 s ago</time>`) {
		t.Errorf("the last check-in does not read 12 s ago")
	}
}

func TestFleetHealthyFleetSaysSoCalmly(t *testing.T) {
	f := newFixture(t, web.Settings{})
	fleetOf(t, f, "acme-prod", "globex-prod")
	checkin(t, f, "acme-prod", "2.0", registry.Report{})
	checkin(t, f, "globex-prod", "2.0", registry.Report{})
	page := get(t, f.signIn(auth.RoleViewer), "/")
	if !strings.Contains(page, `<p class="fleet-summary calm">All 2 deployments healthy and on their desired release.</p>`) {
		t.Fatalf("a healthy fleet does not say so in one line:\n%s", page)
	}
	// Release adoption: one segment per release, a link filtering by it.
	if !strings.Contains(page, `<a href="/?release=2.0&amp;stack=shop"><rect class="seg-1" x="0" y="0" width="1000" height="14"><title>2.0: 2 deployments (100%)</title></rect></a>`) {
		t.Errorf("no adoption bar of 2.0 at 100%%:\n%s", page)
	}
}

func TestFleetPagesWithCursors(t *testing.T) {
	f := newFixture(t, web.Settings{})
	var ids []string
	for i := range 120 {
		ids = append(ids, fmt.Sprintf("cust%03d-prod", i))
	}
	fleetOf(t, f, ids...)
	// Every tenth is unhealthy: those twelve come first.
	for i, id := range ids {
		var rep registry.Report
		if i%10 == 0 {
			rep.Health = &fleet.Health{Reported: true, LastError: "down"}
		}
		checkin(t, f, id, "2.0", rep)
	}
	b := f.signIn(auth.RoleViewer)
	page := get(t, b, "/")
	first := rows(page)
	if len(first) != 50 || first[0] != "cust000-prod" || first[1] != "cust010-prod" || first[12] != "cust001-prod" {
		t.Fatalf("first page: %d rows %v", len(first), first)
	}
	if !strings.Contains(page, `<span class="range">1–50 of 120</span>`) || strings.Contains(page, `rel="prev"`) {
		t.Fatalf("first page: no range or a previous link")
	}
	next := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(page)
	if next == nil {
		t.Fatal("no Next link")
	}
	page = get(t, b, html.UnescapeString(next[1]))
	second := rows(page)
	if len(second) != 50 || slices.Contains(first, second[0]) || !strings.Contains(page, `<span class="range">51–100 of 120</span>`) {
		t.Fatalf("second page: %d rows from %s", len(second), second[0])
	}
	prev := regexp.MustCompile(`<a href="([^"]+)" rel="prev">`).FindStringSubmatch(page)
	if prev == nil {
		t.Fatal("no Previous link")
	}
	if back := rows(get(t, b, html.UnescapeString(prev[1]))); !slices.Equal(back, first) {
		t.Fatalf("Previous from page 2 shows %v\nwant %v", back, first)
	}
	// Filters stay in the paging links, and a stale cursor restarts from the top.
	page = get(t, b, "/?customer=cust005&after=zz")
	if !strings.Contains(page, "out of date or malformed") || !slices.Equal(rows(page), []string{"cust005-prod"}) {
		t.Fatalf("bad cursor: %v", rows(page))
	}
	filtered := get(t, b, "/?status=healthy")
	if m := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(filtered); m == nil || !strings.Contains(m[1], "status=healthy") {
		t.Fatalf("the Next link of a filtered page drops the filter: %v", m)
	}
}

func TestFleetFragmentIsTheRefreshedParts(t *testing.T) {
	f := newFixture(t, web.Settings{})
	mixedFleet(t, f)
	b := f.signIn(auth.RoleViewer)
	for _, req := range []func() *http.Request{
		func() *http.Request { return mustRequest(t, "/?status=unhealthy&fragment=table") },
		func() *http.Request {
			r := mustRequest(t, "/?status=unhealthy")
			r.Header.Set("Periscope-Fragment", "table")
			return r
		},
	} {
		res := b.do(req())
		frag := body(t, res)
		if res.Code != http.StatusOK || strings.Contains(frag, "<html") || strings.Contains(frag, `<header class="top">`) {
			t.Fatalf("fragment: %d, and it has the layout:\n%s", res.Code, frag)
		}
		for _, id := range []string{`id="fleet-live" data-empty="false"`, `id="fleet-overview"`, `<tbody id="fleet-rows">`, `id="fleet-pager"`, `id="fleet-asof"`} {
			if !strings.Contains(frag, id) {
				t.Errorf("fragment lacks %s", id)
			}
		}
		if got := rows(frag); !slices.Equal(got, []string{"globex-unhealthy"}) {
			t.Errorf("fragment rows %v; want the filtered table", got)
		}
	}
	// The next refresh shows what changed.
	checkin(t, f, "globex-unhealthy", "", registry.Report{Health: &fleet.Health{Reported: true, Healthy: true}})
	if got := rows(get(t, b, "/?status=unhealthy&fragment=table")); len(got) != 0 {
		t.Errorf("after recovery the unhealthy table still lists %v", got)
	}
	// The full page links the page's script and carries the hooks it uses.
	page := get(t, b, "/")
	for _, want := range []string{`<script src="/assets/fleet.`, `data-refresh-ms="5000"`, `<table id="deployments"`, `<input id="fleet-q" name="q" type="search"`, `data-search`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Signed out, the refresh gets the sign-in redirect, not the table.
	if res := f.browser().get("/?fragment=table"); res.Code != http.StatusSeeOther {
		t.Errorf("signed-out fragment: %d", res.Code)
	}
}

func mustRequest(t testing.TB, target string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, "http://example.com"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFleetEscapesWhatUsersWrote(t *testing.T) {
	f := newFixture(t, web.Settings{})
	const evil = `<script>alert(1)</script>`
	ctx := context.Background()
	if _, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "evil-prod", Name: "name" + evil, Customer: "cust" + evil,
		Stack: "stack" + evil, Cloud: "cloud" + evil, Region: "region" + evil, Platform: "platform" + evil,
		Labels: map[string]string{"k" + evil: "v" + evil}}}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0", "2.0"} {
		if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "stack" + evil, Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"evil-prod"}}, Action: fleet.ActionPin,
		Release: "1.0", By: "by" + evil, Reason: "why" + evil}); err != nil {
		t.Fatal(err)
	}
	checkin(t, f, "evil-prod", "rel"+evil, registry.Report{Health: &fleet.Health{Reported: true, LastError: "reason" + evil}})
	b := f.signIn(auth.RoleViewer)
	for _, target := range []string{"/", "/?fragment=table", "/?q=" + url.QueryEscape("name"+evil), "/?customer=" + url.QueryEscape("cust"+evil) + "&after=" + url.QueryEscape(evil)} {
		page := get(t, b, target)
		if strings.Contains(page, evil) || strings.Contains(page, "<script>alert") {
			t.Fatalf("%s: a user's string reached the page unescaped", target)
		}
		if !slices.Equal(rows(page), []string{"evil-prod"}) {
			t.Fatalf("%s: rows %v", target, rows(page))
		}
		// Every field is there, escaped.
		for _, what := range []string{"name", "cust", "cloud", "region", "platform", "rel", "reason"} {
			if !strings.Contains(page, what+"&lt;script&gt;alert(1)&lt;/script&gt;") {
				t.Errorf("%s: %s not shown escaped", target, what)
			}
		}
		if !strings.Contains(page, "k&lt;script&gt;alert(1)&lt;/script&gt;=v&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: the label not shown escaped", target)
		}
		if !strings.Contains(page, "by by&lt;script&gt;alert(1)&lt;/script&gt;: why&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: the pin's author and reason not shown escaped", target)
		}
	}
	// The stack name (adoption) and the filter values (form fields, chips) too.
	page := get(t, b, "/?customer="+url.QueryEscape("cust"+evil))
	if !strings.Contains(page, `value="cust&lt;script&gt;alert(1)&lt;/script&gt;"`) || !strings.Contains(page, `>stack&lt;script&gt;alert(1)&lt;/script&gt;</a>`) {
		t.Errorf("the filter's value or the stack name not escaped")
	}
}

func TestFleetEmptyStateTeachesTheCommands(t *testing.T) {
	f := newFixture(t, web.Settings{})
	page := get(t, f.signIn(auth.RoleViewer), "/")
	for _, want := range []string{
		"No deployments yet",
		"periscope deployments create acme-prod --customer acme --stack shop \\\n  --manager http://example.com --token psk_…",
		"periscope agent --manager http://example.com --token pdt_… --release 1.0.0",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("empty state lacks %q", want)
		}
	}
	if strings.Contains(page, `<table id="deployments"`) {
		t.Error("an empty fleet shows an empty table as well")
	}
	// A viewer sees no action on the fleet page: the only form that posts is sign-out.
	if n := strings.Count(page, `method="post"`); n != 1 {
		t.Errorf("%d posting forms on the fleet page; want only sign-out", n)
	}
}

// spanBatch is n entry spans of deployment id in the minute starting at at,
// errs of them failed, as its agent would send them.
func spanBatch(t testing.TB, id string, at time.Time, n, errs int) consumer.Batch {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	a := rs.Resource().Attributes()
	a.PutStr(otlp.AttrDeploymentID, id)
	a.PutStr(otlp.AttrRelease, "2.0")
	a.PutStr(otlp.AttrStack, "shop")
	a.PutStr("service.name", "api")
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		sp := ss.AppendEmpty()
		var tid [16]byte
		tid[0], tid[15] = byte(at.Minute()+1), byte(i+1)
		sp.SetTraceID(tid)
		sp.SetSpanID([8]byte{1, byte(i + 1)})
		sp.SetName("GET /pay")
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(i) * time.Second)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(i)*time.Second + 20*time.Millisecond)))
		if i < errs {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
	}
	data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Batch{Signal: otlp.Traces, DeploymentID: id, Received: at, Records: n, Data: data}
}

func TestFleetSparklinesShareOneScale(t *testing.T) {
	f := newFixture(t, web.Settings{})
	fleetOf(t, f, "acme-prod", "globex-prod", "quiet-prod")
	ctx := context.Background()
	now := f.clk.Now()
	for _, b := range []consumer.Batch{
		spanBatch(t, "acme-prod", now.Add(-30*time.Minute), 10, 2),
		spanBatch(t, "globex-prod", now.Add(-20*time.Minute), 10, 5),
		spanBatch(t, "globex-prod", now.Add(-10*time.Minute), 10, 0),
	} {
		if err := f.tel.Consume(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.tel.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acme-prod", "globex-prod", "quiet-prod"} {
		checkin(t, f, id, "2.0", registry.Report{})
	}
	page := get(t, f.signIn(auth.RoleViewer), "/")
	// The worst minute of the page (50%) sets the scale of every row.
	for _, want := range []string{
		`Errors, 1 h <span class="scale">0–50%</span>`,
		`<title>Last hour: 2 of 10 requests failed (20%). Worst minute 11:30 UTC: 20% (2 of 10).</title>`,
		`<title>Last hour: 5 of 20 requests failed (25%). Worst minute 11:40 UTC: 50% (5 of 10).</title>`,
		`<title>No requests in the last hour.</title>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("missing %s", want)
		}
	}
	// On a 22 px chart with a 0–50% scale, 20% sits at 21 - 0.4·20 = y 13 (a
	// dash: the minutes around it had no requests).
	if !regexp.MustCompile(`class="spark failing"><title>Last hour: 2 of 10[^<]*</title><line[^>]*/><path class="line" fill="none" d="M\d+(\.\d)? 13L\d+(\.\d)? 13"/>`).MatchString(page) {
		t.Errorf("acme's 20%% point is not drawn at y 13 of the shared scale")
	}
}
