package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/tokens"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// fixture is a dashboard over a real registry, telemetry store and keyring on
// DuckDB in a temporary directory, served in process, with one token per role.
type fixture struct {
	t     testing.TB
	clk   *clock.Fake
	reg   *registry.Registry
	tel   *telstore.Store
	keys  *tokens.Keyring
	st    *duckdb.Store
	cmds  *commands.Service
	web   *web.Server
	h     http.Handler
	token map[auth.Role]string // the secret of the token of each role
}

func newFixture(t testing.TB, settings web.Settings) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	st, err := duckdb.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := registry.New(st, registry.Settings{Clock: clk, FlushInterval: time.Hour, EvalInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	tel, err := telstore.Open(ctx, dir, telstore.Settings{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Close() })
	keys := tokens.New(st, nil, clk)
	f := &fixture{t: t, clk: clk, reg: reg, tel: tel, keys: keys, st: st, token: map[auth.Role]string{}}
	for _, role := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		secret, _, err := keys.Create(ctx, auth.APIToken{}, "alice-"+string(role), role)
		if err != nil {
			t.Fatal(err)
		}
		f.token[role] = secret
	}
	settings.Clock = clk
	if settings.Telemetry == nil {
		settings.Telemetry = tel
	}
	if settings.Audit == nil {
		settings.Audit = st
	}
	// The real command service over the same store and registry; it starts
	// nothing, and no test here needs its deadline sweep.
	if f.cmds, err = commands.New(st, reg, commands.Settings{Clock: clk}); err != nil {
		t.Fatal(err)
	}
	if settings.Commands == nil {
		settings.Commands = f.cmds
	}
	f.web, err = web.New(reg, keys, settings)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.web.Close)
	f.h = f.web.Handler()
	return f
}

// browser is a signed-in (or not) client of the fixture: it keeps its cookies
// and sends the requests a browser would, in process.
type browser struct {
	f       *fixture
	cookies map[string]*http.Cookie
}

func (f *fixture) browser() *browser { return &browser{f: f, cookies: map[string]*http.Cookie{}} }

// signIn returns a browser signed in with the token of role.
func (f *fixture) signIn(role auth.Role) *browser {
	f.t.Helper()
	b := f.browser()
	res := b.post("/login", url.Values{"token": {f.token[role]}})
	if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/" {
		f.t.Fatalf("sign in as %s: %d %s, want 303 to /", role, res.Code, res.Header().Get("Location"))
	}
	return b
}

// do serves one request with the browser's cookies and keeps the ones it sets.
func (b *browser) do(req *http.Request) *httptest.ResponseRecorder {
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	b.f.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return rec
}

func (b *browser) get(target string) *httptest.ResponseRecorder {
	return b.do(httptest.NewRequest(http.MethodGet, target, nil))
}

// post sends a form as a same-origin browser would (its Origin is this host).
func (b *browser) post(target string, form url.Values) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+req.Host)
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from a page the browser can see, as a form would.
func (b *browser) csrf() string {
	b.f.t.Helper()
	body := b.get("/notifications").Body.String()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		b.f.t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	return m[1]
}

func body(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	b, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
