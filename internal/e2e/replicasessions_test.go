package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// dashCSRF finds the CSRF token a dashboard page's forms carry.
var dashCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// dashClient is a browser without a cookie jar of its own opinion: it sends
// the session cookie it is given to whichever replica it asks, and follows no
// redirects, so the test sees where each replica sends it.
type dashClient struct {
	t      *testing.T
	cookie *http.Cookie
	http   http.Client
}

func newDashClient(t *testing.T) *dashClient {
	return &dashClient{t: t, http: http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *dashClient) do(method, u string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == "periscope_session" && ck.Value != "" {
			c.cookie = ck
		}
	}
	return res, string(b)
}

// signedIn reports whether the replica at base serves the fleet page to c
// (rather than sending it to sign in), and returns the page.
func (c *dashClient) signedIn(base string) (bool, string) {
	c.t.Helper()
	res, body := c.do("GET", base+"/", nil)
	switch {
	case res.StatusCode == http.StatusOK:
		return true, body
	case res.StatusCode == http.StatusSeeOther && strings.HasPrefix(res.Header.Get("Location"), "/login"):
		return false, body
	}
	c.t.Fatalf("GET %s/: %d %s", base, res.StatusCode, body)
	return false, ""
}

// TestDashboardSessionsSpanReplicas: a browser signed in through replica A's
// dashboard is signed in on replica B with the same cookie (no load-balancer
// affinity needed), and signing out through B ends the session on A too.
func TestDashboardSessionsSpanReplicas(t *testing.T) {
	a, b := startReplicaPair(t)
	c := newDashClient(t)
	if ok, _ := c.signedIn(b.url()); ok {
		t.Fatal("replica B serves the fleet before any sign-in")
	}
	res, body := c.do("POST", a.url()+"/login", url.Values{"token": {adminToken}, "next": {"/"}})
	if res.StatusCode != http.StatusSeeOther || c.cookie == nil {
		t.Fatalf("sign-in through A: %d, cookie %v\n%s", res.StatusCode, c.cookie, body)
	}
	ok, page := c.signedIn(b.url())
	if !ok {
		t.Fatal("the session signed in through A is unknown on B")
	}
	m := dashCSRF.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on B's fleet page:\n%s", page)
	}
	if ok, _ := c.signedIn(a.url()); !ok {
		t.Fatal("the session is no longer known on A after use on B")
	}

	res, body = c.do("POST", b.url()+"/logout", url.Values{"csrf": {m[1]}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Fatalf("sign-out through B: %d %s\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	// The browser would drop the cookie; one who kept it (a stolen copy) is
	// signed out on both replicas all the same.
	for _, r := range []*replica{a, b} {
		if ok, _ := c.signedIn(r.url()); ok {
			t.Errorf("replica %s still serves a session signed out through B", r.name)
		}
	}
}

// TestTokensSpanReplicas: an API token created through replica A works on B
// within a couple of sync intervals, and once deleted through A it is refused
// on B, and the dashboard session signed in with it on B ends.
func TestTokensSpanReplicas(t *testing.T) {
	a, b := startReplicaPair(t)
	secret := apiToken(t, a.api, "ci-bot", "operator")
	onB := apiclient.New(b.url(), secret)
	eventually(t, 5*time.Second, "B accepts the token created on A", func() error {
		var ds json.RawMessage
		return onB.Do(context.Background(), "GET", "/api/v1/deployments", nil, &ds)
	})
	c := newDashClient(t)
	if res, body := c.do("POST", b.url()+"/login", url.Values{"token": {secret}, "next": {"/"}}); res.StatusCode != http.StatusSeeOther || c.cookie == nil {
		t.Fatalf("sign-in through B with A's token: %d\n%s", res.StatusCode, body)
	}
	var toks struct{ Items []apitypes.Token }
	if err := a.api.Do(context.Background(), "GET", "/api/v1/tokens", nil, &toks); err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, tok := range toks.Items {
		if tok.Name == "ci-bot" {
			id = tok.ID
		}
	}
	if err := a.api.Do(context.Background(), "DELETE", "/api/v1/tokens/"+url.PathEscape(id), nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B refuses the token deleted on A", func() error {
		var ds json.RawMessage
		if err := onB.Do(context.Background(), "GET", "/api/v1/deployments", nil, &ds); err == nil {
			return errors.New("still accepted")
		}
		return nil
	})
	if ok, _ := c.signedIn(b.url()); ok {
		t.Error("B still serves the dashboard session of a token deleted on A")
	}
}
