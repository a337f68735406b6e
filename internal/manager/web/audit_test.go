package web_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/web"
)

var auditRowRE = regexp.MustCompile(`(?s)<tr data-audit .*?</tr>`)

// auditRows returns the rows of the page's audit table.
func auditRows(page string) []string { return auditRowRE.FindAllString(page, -1) }

func TestAuditFiltersByDeploymentActorKindAndChange(t *testing.T) {
	f := releaseFleet(t) // evil was pinned by a token named <script>
	ctx := context.Background()
	pin := func(by string, action fleet.PinAction, release string, ids ...string) string {
		t.Helper()
		res, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: ids}, Action: action, Release: release, By: by, Reason: "because " + by})
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
	b := f.signIn(auth.RoleViewer)
	for _, c := range []struct {
		query string
		want  []string // deployment/action/by of each row, newest first
	}{
		{"", []string{"globex-prod/rotate-token/dave", "acme-dr/unpin/carol", "acme-prod/pin/bob", "acme-dr/pin/bob", "evil/pin/" + esc(xss)}},
		{"?deployment=acme-dr", []string{"acme-dr/unpin/carol", "acme-dr/pin/bob"}},
		{"?by=bob", []string{"acme-prod/pin/bob", "acme-dr/pin/bob"}},
		{"?kind=rotate-token", []string{"globex-prod/rotate-token/dave"}},
		{"?kind=pin&deployment=acme-dr", []string{"acme-dr/pin/bob"}},
		{"?change=" + change, []string{"acme-dr/unpin/carol"}},
		{"?by=nobody", nil},
	} {
		res := b.get("/audit" + c.query)
		page := body(t, res)
		if res.Code != http.StatusOK {
			t.Fatalf("GET /audit%s: %d\n%s", c.query, res.Code, page)
		}
		noRaw(t, page)
		var got []string
		for _, r := range auditRows(page) {
			got = append(got, attr(r, "data-deployment")+"/"+attr(r, "data-action")+"/"+attr(r, "data-by"))
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("/audit%s rows:\n got %v\nwant %v", c.query, got, c.want)
		}
		if c.want == nil && !strings.Contains(page, "Nothing in the trail matches") {
			t.Errorf("/audit%s says nothing about the empty result", c.query)
		}
	}
	page := body(t, b.get("/audit"))
	for _, want := range []string{"because bob", "leaked " + esc(xss), "hold " + esc(xss), "desired 2.0.0 → pinned to 1.9.0"} {
		if !strings.Contains(page, want) {
			t.Errorf("the audit page lacks %q", want)
		}
	}
	if res := b.get("/audit?kind=" + "bogus"); res.Code != http.StatusBadRequest {
		t.Errorf("an unknown kind: %d, want 400", res.Code)
	}
}

func TestAuditEmpty(t *testing.T) {
	page := body(t, newFixture(t, web.Settings{}).signIn(auth.RoleViewer).get("/audit"))
	if !strings.Contains(page, "Nothing audited yet") || !strings.Contains(page, "periscope pin acme-prod --release") {
		t.Errorf("an empty audit page does not teach:\n%s", page)
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
