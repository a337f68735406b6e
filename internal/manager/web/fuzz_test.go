package web_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview/runtimetest"
	"github.com/periscope-dev/periscope/internal/manager/web"
)

// marker is an element name no page ever draws: if it comes back as markup, the
// page reflected what the request said without escaping it.
const marker = "<periscope-xss"

// FuzzDashboard sends a signed-in operator's requests with arbitrary paths,
// query strings and form bodies to every page and action. No request may fail
// the server (5xx other than 503), and nothing it says, nor anything stored, may
// come back as markup.
func FuzzDashboard(f *testing.F) {
	fx := newFixture(f, web.Settings{})
	fx.twoReleases("Acme production", "acme", "gold", "payment declined "+marker+">", "POST /pay")
	fx.opsDeployment(fleet.ModePush, &command.Rule{Allow: []string{"row-count", marker}})
	op := fx.signIn(auth.RoleOperator)
	csrf := op.csrf()
	// A stored invocation whose reason and parameters are markup, for the
	// history and the invocation page.
	stored := op.run(csrf, marker+">", map[string]string{"table": "orders", "where": marker + ">"})
	// Runtime signals and a component down whose name and error are markup, for
	// the deployment page's runtime section.
	runtimetest.Feed(f, fx.tel, fx.clk.Now().Add(-12*time.Minute), "acme-prod")
	if _, err := fx.reg.Checkin("acme-prod", registry.Report{Health: &fleet.Health{Reported: true, Components: map[string]fleet.ComponentHealth{
		marker + ">/0": {Status: "crash-loop", Restarts: 2, LastError: marker + ">", Watched: true}}}}); err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		post        bool
		path, query string
	}{
		{false, "/", "status=unhealthy&q=" + url.QueryEscape(marker+">")},
		{false, "/", "cursor=%ff%fe&order=problems&label=a%3D" + url.QueryEscape(marker)},
		{false, "/deployments/acme-prod", "since=1h&until=" + url.QueryEscape(marker)},
		{false, "/deployments/acme-prod", "since=30m&until=2026-03-01T11:55:00Z"},
		{false, "/deployments/" + url.PathEscape(marker+">"), ""},
		{false, "/logs", "deployment=acme-prod&min_severity=error&contains=" + url.QueryEscape(marker+">") + "&cursor=zz"},
		{false, "/traces", "errors=maybe&min_duration=-1s&name=" + url.QueryEscape(marker)},
		{false, "/traces/" + strings.Repeat("a", 32), ""},
		{false, "/metrics/", "deployment=" + url.QueryEscape(marker)},
		{false, "/metrics/http.server.request.duration", "group_by=" + url.QueryEscape(marker) + "&agg=p99&step=0s"},
		{false, "/releases/bulk", "action=pin&stack=shop&release=1.1.0&target=1.0.0&label=" + url.QueryEscape(marker)},
		{false, "/audit", "action=" + url.QueryEscape(marker) + "&limit=999999999&since=" + url.QueryEscape(marker)},
		{false, "/audit", "change=" + url.QueryEscape(marker) + "&cursor=" + url.QueryEscape(marker+".1") + "&customer=" + url.QueryEscape(marker)},
		{false, "/notifications", "state=" + url.QueryEscape(marker)},
		{true, "/deployments/acme-prod/pin", "release=" + url.QueryEscape(marker) + "&reason=x"},
		{true, "/deployments/acme-prod/rollback", "reason=" + url.QueryEscape(marker+">")},
		{true, "/releases/bulk", "action=unpin&stack=shop&reason=r&fingerprint=" + url.QueryEscape(marker)},
		{false, "/deployments/acme-ops", ""},
		{false, "/commands/" + stored.ID, "done=invoke"},
		{false, "/commands/" + url.PathEscape(marker+">"), "done=" + url.QueryEscape(marker)},
		{true, "/deployments/acme-ops/commands", "command=row-count&param.table=users&param.limit=1e308&reason=" + url.QueryEscape(marker+">")},
		{true, "/deployments/acme-ops/commands", "command=" + url.QueryEscape(marker) + "&param." + url.QueryEscape(marker) + "=1&reason=r"},
		{true, "/deployments/acme-prod/commands", "command=row-count&reason=r"},
		{true, "/commands/" + stored.ID + "/cancel", "reason=" + url.QueryEscape(marker+">")},
	} {
		f.Add(s.post, s.path, s.query)
	}
	f.Fuzz(func(t *testing.T, post bool, path, query string) { fuzzRequest(t, op, csrf, post, path, query) })
}

// fuzzRequest sends one fuzzed request as op: no request may fail the server
// (5xx other than 503), and nothing may come back as markup.
func fuzzRequest(t *testing.T, op *browser, csrf string, post bool, path, query string) {
	t.Helper()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	// A tail streams until its browser leaves, and signing out would end the
	// session every later input needs.
	if strings.HasPrefix(path, "/logs/tail") || strings.HasPrefix(path, "/logout") {
		return
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if post {
		req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(query+"&csrf="+url.QueryEscape(csrf)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req.URL.RawQuery = query
	}
	req.URL.Path = path
	res := op.do(req)
	if res.Code >= 500 && res.Code != http.StatusServiceUnavailable {
		t.Fatalf("%s %s?%s: %d\n%s", req.Method, path, query, res.Code, res.Body.String())
	}
	page := res.Body.String()
	if strings.Contains(page, marker) || strings.Contains(page, "<script>alert(1)</script>") {
		t.Fatalf("%s %s?%s reflected markup unescaped:\n%s", req.Method, path, query, page)
	}
}
