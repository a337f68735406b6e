package web_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// TestSignedOutIsSentToLogin: every page redirects a browser without a session
// to /login, remembering where it was going.
func TestSignedOutIsSentToLogin(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.browser()
	for _, p := range []string{"/", "/deployments/acme-prod", "/logs?level=error", "/traces", "/traces/0af7651916cd43dd8448eb211c80319c",
		"/metrics/", "/metrics/http.server.request.duration", "/releases", "/audit", "/notifications"} {
		res := b.get(p)
		loc := res.Header().Get("Location")
		if res.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login") {
			t.Errorf("GET %s signed out: %d to %q, want 303 to /login", p, res.Code, loc)
		}
		if p != "/" && loc != "/login?next="+url.QueryEscape(p) {
			t.Errorf("GET %s signed out: sent to %q, want it to come back after sign-in", p, loc)
		}
	}
	if res := b.post("/deployments/acme-prod/pin", url.Values{"release": {"1.0.0"}}); res.Code != http.StatusSeeOther {
		t.Errorf("POST pin signed out: %d, want 303 to /login", res.Code)
	}
}

// TestSignInSetsAPrivateCookieAndReturns: a good token starts an HttpOnly,
// SameSite=Lax session and goes back to the page asked for; a bad one says so.
func TestSignInSetsAPrivateCookieAndReturns(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.browser()
	res := b.post("/login", url.Values{"token": {"psk_not-a-token"}})
	if res.Code != http.StatusUnauthorized || !strings.Contains(body(t, res), "not valid") {
		t.Fatalf("bad token: %d, want 401 with a message", res.Code)
	}
	if len(b.cookies) != 0 {
		t.Fatalf("bad token set cookies %v", b.cookies)
	}
	res = b.post("/login", url.Values{"token": {f.token[auth.RoleViewer]}, "next": {"/audit?x=1"}})
	if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/audit?x=1" {
		t.Fatalf("good token: %d to %q, want 303 to /audit?x=1", res.Code, res.Header().Get("Location"))
	}
	c := b.cookies["periscope_session"]
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure {
		t.Fatalf("session cookie = %+v, want HttpOnly, SameSite=Lax, not Secure over plain HTTP", c)
	}
	if strings.Contains(c.Value, f.token[auth.RoleViewer]) {
		t.Fatal("the cookie carries the API token")
	}
	// Another site's page must not be where sign-in sends you.
	for _, next := range []string{"//evil.example/", "https://evil.example/", `/\evil.example`} {
		res := f.browser().post("/login", url.Values{"token": {f.token[auth.RoleViewer]}, "next": {next}})
		if loc := res.Header().Get("Location"); loc != "/" {
			t.Errorf("next=%q sent the browser to %q, want /", next, loc)
		}
	}
}

// TestSignInBehindATLSProxySetsASecureCookie: a proxy that ends TLS says so
// in X-Forwarded-Proto, and the session cookie is then kept off plain HTTP.
func TestSignInBehindATLSProxySetsASecureCookie(t *testing.T) {
	f := newFixture(t, web.Settings{})
	for proto, secure := range map[string]bool{"https": true, "HTTPS": true, "http": false, "": false} {
		b := f.browser()
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{"token": {f.token[auth.RoleViewer]}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://"+req.Host)
		if proto != "" {
			req.Header.Set("X-Forwarded-Proto", proto)
		}
		if res := b.do(req); res.Code != http.StatusSeeOther {
			t.Fatalf("X-Forwarded-Proto %q: sign in answered %d", proto, res.Code)
		}
		c := b.cookies["periscope_session"]
		if c == nil || c.Secure != secure {
			t.Errorf("X-Forwarded-Proto %q: session cookie %+v, want Secure=%v", proto, c, secure)
		}
	}
}

// TestSignOutEndsTheSession: after sign-out the old cookie opens nothing.
func TestSignOutEndsTheSession(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.signIn(auth.RoleViewer)
	old := *b.cookies["periscope_session"]
	if res := b.post("/logout", url.Values{"csrf": {b.csrf()}}); res.Code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", res.Code)
	}
	replay := f.browser()
	replay.cookies[old.Name] = &old
	if res := replay.get("/audit"); res.Code != http.StatusSeeOther {
		t.Fatalf("the signed-out cookie still opens /audit: %d", res.Code)
	}
}

// TestForgedPostsAreRefused: a state-changing form without the session's CSRF
// token, from another origin, or from a viewer is refused with 403 and changes
// nothing.
func TestForgedPostsAreRefused(t *testing.T) {
	f := newFixture(t, web.Settings{})
	op := f.signIn(auth.RoleOperator)
	if res := op.post("/logout", url.Values{}); res.Code != http.StatusForbidden {
		t.Errorf("POST without CSRF token: %d, want 403", res.Code)
	}
	if res := op.post("/logout", url.Values{"csrf": {"forged"}}); res.Code != http.StatusForbidden {
		t.Errorf("POST with a wrong CSRF token: %d, want 403", res.Code)
	}
	req, _ := http.NewRequest(http.MethodPost, "/logout", strings.NewReader(url.Values{"csrf": {op.csrf()}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if res := op.do(req); res.Code != http.StatusForbidden {
		t.Errorf("POST from another origin: %d, want 403", res.Code)
	}
	if res := op.get("/audit"); res.Code == http.StatusSeeOther {
		t.Fatalf("the operator was signed out by a refused form: %d", res.Code)
	}
	viewer := f.signIn(auth.RoleViewer)
	res := viewer.post("/deployments/acme-prod/pin", url.Values{"csrf": {viewer.csrf()}, "release": {"1.0.0"}, "reason": {"x"}})
	if res.Code != http.StatusForbidden || !strings.Contains(body(t, res), "operator") {
		t.Errorf("viewer's pin: %d, want the 403 page naming the operator role", res.Code)
	}
}

// TestRevokedTokenEndsItsSessions: deleting the token signs its browsers out at
// their next request.
func TestRevokedTokenEndsItsSessions(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.signIn(auth.RoleViewer)
	tok, _ := f.keys.Lookup(f.token[auth.RoleViewer])
	if err := f.keys.Delete(t.Context(), auth.APIToken{}, tok.ID); err != nil {
		t.Fatal(err)
	}
	if res := b.get("/audit"); res.Code != http.StatusSeeOther {
		t.Fatalf("a revoked token's session still opens /audit: %d", res.Code)
	}
}

// TestReplacedTokenEndsItsSessions: a token replaced under the same id (a
// rotated admin_token keeps its id) signs out the browsers that signed in
// with the old secret, which may be the leaked one.
func TestReplacedTokenEndsItsSessions(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.signIn(auth.RoleViewer)
	tok, _ := f.keys.Lookup(f.token[auth.RoleViewer])
	if res := b.get("/"); res.Code != http.StatusOK {
		t.Fatalf("signed in, the fleet page answers %d", res.Code)
	}
	if err := f.keys.Delete(t.Context(), auth.APIToken{}, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.keys.Add(t.Context(), auth.APIToken{}, tok.ID, tok.Name, tok.Role, "psk_"+strings.Repeat("r", 32)); err != nil {
		t.Fatal(err)
	}
	if res := b.get("/"); res.Code != http.StatusSeeOther {
		t.Fatalf("a session of the replaced secret still opens the fleet page: %d", res.Code)
	}
}

// TestSessionsExpire: unused for the idle time, or past the maximum life, a
// session is over.
func TestSessionsExpire(t *testing.T) {
	f := newFixture(t, web.Settings{SessionIdle: time.Hour, SessionMax: 3 * time.Hour})
	b := f.signIn(auth.RoleViewer)
	for range 5 { // used every 50 minutes: idle never reached, life is
		f.clk.Advance(50 * time.Minute)
		res := b.get("/audit")
		if f.clk.Now().Sub(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) < 3*time.Hour {
			if res.Code == http.StatusSeeOther {
				t.Fatalf("session ended early at %v: %d", f.clk.Now(), res.Code)
			}
		} else if res.Code != http.StatusSeeOther {
			t.Fatalf("session outlived its 3h life at %v: %d", f.clk.Now(), res.Code)
		}
	}
	idle := f.signIn(auth.RoleViewer)
	f.clk.Advance(time.Hour)
	if res := idle.get("/audit"); res.Code != http.StatusSeeOther {
		t.Fatalf("session outlived its idle hour: %d", res.Code)
	}
}

// TestPagesForbidFramingAndInlineScript: every page carries the headers that
// turn an escaping slip into inert text and keep the dashboard out of frames.
func TestPagesForbidFramingAndInlineScript(t *testing.T) {
	f := newFixture(t, web.Settings{})
	for _, res := range []interface{ Header() http.Header }{f.browser().get("/login"), f.signIn(auth.RoleViewer).get("/audit")} {
		csp := res.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("Content-Security-Policy = %q", csp)
		}
	}
}

// TestAssetsAreHashedAndCached: the page links its stylesheet under a content
// hash, served with a year's immutable caching; an unknown asset is 404.
func TestAssetsAreHashedAndCached(t *testing.T) {
	f := newFixture(t, web.Settings{})
	page := body(t, f.browser().get("/login"))
	i := strings.Index(page, `href="/assets/app.`)
	if i < 0 {
		t.Fatalf("no hashed stylesheet link in the login page:\n%s", page)
	}
	href := page[i+len(`href="`):]
	href = href[:strings.IndexByte(href, '"')]
	res := f.browser().get(href)
	if res.Code != http.StatusOK || !strings.HasPrefix(res.Header().Get("Content-Type"), "text/css") ||
		!strings.Contains(res.Header().Get("Cache-Control"), "immutable") {
		t.Fatalf("GET %s: %d %v", href, res.Code, res.Header())
	}
	if res := f.browser().get("/assets/app.000000000000.css"); res.Code != http.StatusNotFound {
		t.Fatalf("unknown asset: %d, want 404", res.Code)
	}
}

// TestBytesThatAreNotTextAreRefused: a filter that is not UTF-8 is the request's
// mistake (400 with a page saying so), not a server error, on every page that
// reads filters, and in a form.
func TestBytesThatAreNotTextAreRefused(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.twoReleases("Acme production", "acme", "gold", "payment declined", "POST /pay")
	op := f.signIn(auth.RoleOperator)
	for _, target := range []string{"/logs?deployment=%CA", "/traces?name=%CA", "/metrics/?stack=%CA",
		"/metrics/x?customer=%CA", "/?label=a%3D%CA", "/deployments/%CA", "/audit?%FF=1"} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		res := op.do(req)
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "not UTF-8 text") {
			t.Errorf("GET %s: %d, want 400 saying the address is not text", target, res.Code)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/deployments/acme-prod/rollback", strings.NewReader("reason=%CA&csrf="+url.QueryEscape(op.csrf())))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res := op.do(req); res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "not UTF-8 text") {
		t.Errorf("a form that is not text: %d, want 400", res.Code)
	}
	if res := op.do(httptest.NewRequest(http.MethodGet, "/logs?deployment=acme-prod", nil)); res.Code != http.StatusOK {
		t.Errorf("a well-formed filter: %d", res.Code)
	}
}

// TestSigningInPastTheTokenLimitEndsOnlyThatTokensSessions: one token signing
// in again and again ends its own sessions used least recently, never another
// token's, and the audit log says how many each sign-in ended.
func TestSigningInPastTheTokenLimitEndsOnlyThatTokensSessions(t *testing.T) {
	const perToken = 3
	f := newFixture(t, web.Settings{MaxSessionsPerToken: perToken})
	other := f.signIn(auth.RoleAdmin)
	var mine []*browser
	for range perToken + 5 {
		f.clk.Advance(2 * time.Minute) // each used after the one before
		mine = append(mine, f.signIn(auth.RoleOperator))
	}
	if res := other.get("/audit"); res.Code != http.StatusOK {
		t.Fatalf("another token's session after %d sign-ins with one token: %d, want it still signed in", perToken+5, res.Code)
	}
	for i, b := range mine {
		res := b.get("/notifications")
		if want := i >= 5; (res.Code == http.StatusOK) != want {
			t.Errorf("operator browser %d: %d, want signed in = %v (the %d used most recently stay)", i+1, res.Code, want, perToken)
		}
	}
	rows := auditRows(body(t, other.get("/audit?action=session.")))
	if len(rows) != perToken+6 || !strings.Contains(rows[0], "ended this token&#39;s session used least recently") ||
		strings.Contains(rows[len(rows)-2], "ended") {
		t.Errorf("sign-in rows, newest first:\n%s\nwant the newest to say it ended a session, the first ones not", strings.Join(rows, "\n"))
	}
}

// TestSigningInPastTheTotalLimitIsRefused: when the manager holds as many
// sessions as it keeps, a sign-in is refused with a 503 that says why, nobody
// is signed out, the refusal is audited, and a sign-out makes room.
func TestSigningInPastTheTotalLimitIsRefused(t *testing.T) {
	f := newFixture(t, web.Settings{MaxSessions: 2})
	viewer, admin := f.signIn(auth.RoleViewer), f.signIn(auth.RoleAdmin)
	res := f.browser().post("/login", url.Values{"token": {f.token[auth.RoleOperator]}})
	if res.Code != http.StatusServiceUnavailable || !strings.Contains(body(t, res), "nobody was signed out") {
		t.Fatalf("a sign-in past the total limit: %d, want 503 saying why", res.Code)
	}
	for _, b := range []*browser{viewer, admin} {
		if res := b.get("/notifications"); res.Code != http.StatusOK {
			t.Fatalf("a session after a refused sign-in: %d, want still signed in", res.Code)
		}
	}
	rows := auditRows(body(t, admin.get("/audit?action=session.")))
	if len(rows) == 0 || attr(rows[0], "data-by") != "alice-operator" || attr(rows[0], "data-outcome") != "failed" || !strings.Contains(rows[0], "refused") {
		t.Errorf("the newest sign-in row:\n%v\nwant alice-operator's refusal", rows)
	}
	if res := viewer.post("/logout", url.Values{"csrf": {viewer.csrf()}}); res.Code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", res.Code)
	}
	f.signIn(auth.RoleOperator)
}

// TestSignInTheAuditLogCannotRecordLeavesNoSession: a sign-in is refused when
// its audit entry cannot be written, and the session it started ends again:
// with room for one session, the next sign-in that can be audited gets it.
func TestSignInTheAuditLogCannotRecordLeavesNoSession(t *testing.T) {
	st, err := duckdb.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	audit := &switchAudit{Audit: st}
	f := newFixture(t, web.Settings{MaxSessions: 1, Audit: audit, Sessions: st})
	audit.broken.Store(true)
	res := f.browser().post("/login", url.Values{"token": {f.token[auth.RoleViewer]}})
	if res.Code != http.StatusServiceUnavailable || len(res.Result().Cookies()) != 0 {
		t.Fatalf("a sign-in the audit log cannot record: %d, cookies %v; want 503 and none", res.Code, res.Result().Cookies())
	}
	audit.broken.Store(false)
	f.signIn(auth.RoleOperator)
}

// switchAudit fails AppendAudit while broken is set.
type switchAudit struct {
	store.Audit
	broken atomic.Bool
}

func (a *switchAudit) AppendAudit(ctx context.Context, es []store.AuditEntry) error {
	if a.broken.Load() {
		return errors.New("disk full")
	}
	return a.Audit.AppendAudit(ctx, es)
}
