package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/store"
)

var auditRowRE = regexp.MustCompile(`(?s)<tr data-audit .*?</tr>`)

// auditRows returns the rows of the page's audit table.
func auditRows(page string) []string { return auditRowRE.FindAllString(page, -1) }

// auditRowKeys are the deployment/action/actor of each row, newest first.
func auditRowKeys(page string) []string {
	var got []string
	for _, r := range auditRows(page) {
		got = append(got, attr(r, "data-deployment")+"/"+attr(r, "data-action")+"/"+attr(r, "data-by"))
	}
	return got
}

func TestAuditFiltersByDeploymentActorActionCustomerAndChange(t *testing.T) {
	f := releaseFleet(t) // evil, of customer <script>, was pinned by a token named <script>
	ctx := context.Background()
	pin := func(by string, action fleet.PinAction, release string, ids ...string) string {
		t.Helper()
		res, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: ids}, Action: action, Release: release, By: by, ByRole: "operator", Reason: "because " + by})
		if err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Second)
		return res.ChangeID
	}
	pin("bob", fleet.ActionPin, "1.9.0", "acme-dr")
	pin("bob", fleet.ActionPin, "1.9.0", "acme-prod")
	change := pin("carol", fleet.ActionUnpin, "", "acme-dr")
	if _, err := f.reg.RotateToken(ctx, registry.RotateRequest{ID: "globex-prod", By: "dave", Reason: "leaked " + xss}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Second)
	b := f.signIn(auth.RoleOperator)
	for _, c := range []struct {
		query string
		want  []string // deployment/action/by of each row, newest first
	}{
		{"?action=pin.", []string{"acme-dr/pin.unpin/carol", "acme-prod/pin.pin/bob", "acme-dr/pin.pin/bob", "evil/pin.pin/" + esc(xss)}},
		{"?action=deployment.", []string{"globex-prod/deployment.rotate-token/dave"}},
		{"?deployment=acme-dr", []string{"acme-dr/pin.unpin/carol", "acme-dr/pin.pin/bob"}},
		{"?actor=bob", []string{"acme-prod/pin.pin/bob", "acme-dr/pin.pin/bob"}},
		{"?action=pin.pin&deployment=acme-dr", []string{"acme-dr/pin.pin/bob"}},
		{"?customer=" + url.QueryEscape(xss), []string{"evil/pin.pin/" + esc(xss)}},
		{"?change=" + change, []string{"acme-dr/pin.unpin/carol"}},
		{"?action=session.", []string{"/session.signin/alice-operator"}},
		{"?since=2s&action=pin.", []string{"acme-dr/pin.unpin/carol"}},
		{"?actor=nobody", nil},
	} {
		res := b.get("/audit" + c.query)
		page := body(t, res)
		if res.Code != http.StatusOK {
			t.Fatalf("GET /audit%s: %d\n%s", c.query, res.Code, page)
		}
		noRaw(t, page)
		if got := auditRowKeys(page); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("/audit%s rows:\n got %v\nwant %v", c.query, got, c.want)
		}
		if c.want == nil && !strings.Contains(page, "Nothing in the audit log matches") {
			t.Errorf("/audit%s says nothing about the empty result", c.query)
		}
	}
	page := body(t, b.get("/audit"))
	for _, want := range []string{"because bob", "leaked " + esc(xss), "hold " + esc(xss), "desired 2.0.0 → pinned to 1.9.0", "bob</a> <span class=\"muted\">operator</span>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the audit page lacks %q", want)
		}
	}
	for _, bad := range []string{"?since=yesterday", "?until=" + url.QueryEscape("next week"), "?limit=0", "?cursor=made-up"} {
		if res := b.get("/audit" + bad); res.Code != http.StatusBadRequest {
			t.Errorf("/audit%s: %d, want 400", bad, res.Code)
		}
	}
	// Viewers neither see the page nor its link.
	viewer := f.signIn(auth.RoleViewer)
	if res := viewer.get("/audit"); res.Code != http.StatusForbidden || !strings.Contains(body(t, res), "operator") {
		t.Errorf("a viewer opens /audit: %d, want the 403 page naming the operator role", res.Code)
	}
	if strings.Contains(body(t, viewer.get("/")), `href="/audit"`) {
		t.Error("a viewer's navigation links to the audit page")
	}
}

// Pages of the log follow each other with no gap and no repeat, and the
// first page links to the next.
func TestAuditPagesByCursor(t *testing.T) {
	f := releaseFleet(t)
	ctx := context.Background()
	for i := range 7 {
		if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-dr"}}, Action: fleet.ActionPin,
			Release: []string{"1.9.0", "2.0.0"}[i%2], By: "bob", Reason: "step " + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Second)
	}
	b := f.signIn(auth.RoleOperator)
	all := auditRows(body(t, b.get("/audit?deployment=acme-dr")))
	if len(all) != 7 {
		t.Fatalf("acme-dr has %d rows, want 7", len(all))
	}
	var paged []string
	next := "/audit?deployment=acme-dr&limit=3"
	for range 5 {
		page := body(t, b.get(next))
		paged = append(paged, auditRows(page)...)
		m := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(page)
		if m == nil {
			break
		}
		next = html.UnescapeString(m[1])
		if !strings.Contains(next, "deployment=acme-dr") || !strings.Contains(next, "limit=3") {
			t.Errorf("the next page %q drops the filters", next)
		}
	}
	if strings.Join(paged, "\n") != strings.Join(all, "\n") {
		t.Errorf("pages of 3 hold\n%v\nwant\n%v", paged, all)
	}
}

// Sign-ins reach the audit log: a successful one with the token's name and
// role, a refused one with only where it came from, never what was typed.
func TestSignInsAreAudited(t *testing.T) {
	f := newFixture(t, web.Settings{})
	const typed = "psk_not-a-token-but-maybe-a-secret"
	if res := f.browser().post("/login", url.Values{"token": {typed}}); res.Code != http.StatusUnauthorized {
		t.Fatalf("a wrong token: %d, want 401", res.Code)
	}
	b := f.signIn(auth.RoleOperator)
	page := body(t, b.get("/audit?action=session."))
	if strings.Contains(page, typed) {
		t.Fatal("the audit page shows the token typed into a failed sign-in")
	}
	rows := auditRows(page)
	if len(rows) != 2 || attr(rows[0], "data-by") != "alice-operator" || attr(rows[0], "data-outcome") != "succeeded" ||
		attr(rows[1], "data-by") != "" || attr(rows[1], "data-outcome") != "failed" {
		t.Fatalf("sign-in rows, newest first:\n%v\nwant alice-operator's success, then a failure with no actor", rows)
	}
	if !strings.Contains(rows[1], "from 192.0.2.1") || !strings.Contains(rows[0], "operator</span>") {
		t.Errorf("the rows do not say the address and the role:\n%v", rows)
	}
	entries, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionSignIn, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Detail+e.Actor+e.Target+e.Reason, typed) {
			t.Errorf("a sign-in entry holds the typed token: %+v", e)
		}
	}
	// The tokens the fixture made are there too, made by the manager.
	if got := auditRowKeys(body(t, b.get("/audit?action=token.create"))); len(got) != 3 || got[0] != "/token.create/periscope" {
		t.Errorf("token creations %v, want the fixture's 3 by periscope", got)
	}
}

var attrRE = regexp.MustCompile(`(\S+)="([^"]*)"`)

// attr returns the value of the first attribute named name in s, as written.
func attr(s, name string) string {
	for _, m := range attrRE.FindAllStringSubmatch(s, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	return ""
}

// esc is s as html/template writes it in text and attributes.
func esc(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "&", "&amp;").Replace(s)
}

// A flood of wrong tokens writes a bounded number of entries: a burst, then
// one every few seconds, which says how many failures it stands for.
func TestRefusedSignInsAreAuditedBounded(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.browser()
	for range 50 {
		if res := b.post("/login", url.Values{"token": {"psk_wrong"}}); res.Code != http.StatusUnauthorized {
			t.Fatalf("a wrong token: %d, want 401", res.Code)
		}
	}
	failed := func() []store.AuditEntry {
		t.Helper()
		es, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionSignIn, Outcome: store.OutcomeFailed, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	if n := len(failed()); n != 20 {
		t.Fatalf("50 failed sign-ins at once wrote %d entries, want the burst of 20", n)
	}
	f.clk.Advance(6 * time.Second)
	b.post("/login", url.Values{"token": {"psk_wrong"}})
	es := failed()
	if len(es) != 21 || !strings.Contains(es[0].Detail, `"failures_not_recorded_before":30`) {
		t.Fatalf("6 s later: %d entries, the newest %q; want 21, the newest counting the 30 left out", len(es), es[0].Detail)
	}
	// Successful sign-ins are never left out.
	f.signIn(auth.RoleViewer)
	es, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionSignIn, Outcome: store.OutcomeSucceeded, Limit: 10})
	if err != nil || len(es) != 1 {
		t.Errorf("successful sign-ins after the flood: %d, %v; want 1", len(es), err)
	}
}
