package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/tokens"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// apiFixture is the API's real handler over a registry, keyring and telemetry
// store in a temporary directory, served in process.
type apiFixture struct {
	mux   *http.ServeMux
	admin string
}

func newAPIFixture(t testing.TB) *apiFixture {
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
	secret, _, err := keys.Create(ctx, auth.APIToken{}, "admin", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "acme-prod", Customer: "acme", Stack: "app", Labels: map[string]string{"tier": "gold"}}}); err != nil {
		t.Fatal(err)
	}
	cmds, err := commands.New(st, reg, commands.Settings{Clock: clk, Rand: rand.NewChaCha8([32]byte{})})
	if err != nil {
		t.Fatal(err)
	}
	a := api.New(reg, keys, nil).WithTelemetry(tel, clk).WithAudit(st).WithCommands(cmds)
	// Log tails last until their client leaves; closed, the API refuses them.
	a.Close()
	mux := http.NewServeMux()
	a.Register(mux)
	return &apiFixture{mux: mux, admin: secret}
}

// do serves one request in process and returns the status, headers and body.
func (f *apiFixture) do(method, target string, body []byte) (int, http.Header, string) {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.admin)
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec.Code, rec.Header(), rec.Body.String()
}

func TestBodyFieldsHaveLimits(t *testing.T) {
	f := newAPIFixture(t)
	labels := map[string]string{}
	for i := range apitypes.MaxLabels + 1 {
		labels[strings.Repeat("k", i+1)] = "v"
	}
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		want               string // in the message
	}{
		{"5 MB customer", "POST", "/api/v1/deployments", js(apitypes.NewDeployment{Customer: long(5 << 20), Stack: "app"}), "customer: 5242880 bytes, over the limit of 256 bytes"},
		{"long name", "POST", "/api/v1/deployments", js(apitypes.NewDeployment{Name: long(257), Customer: "a", Stack: "app"}), "name: 257 bytes"},
		{"too many labels", "POST", "/api/v1/deployments", js(apitypes.NewDeployment{Customer: "a", Stack: "app", Labels: labels}), "labels: 65 labels, over the limit of 64"},
		{"long label value", "POST", "/api/v1/deployments", js(apitypes.NewDeployment{Customer: "a", Stack: "app", Labels: map[string]string{"tier": long(300)}}), "labels.tier: 300 bytes"},
		{"long label key", "POST", "/api/v1/deployments", js(apitypes.NewDeployment{Customer: "a", Stack: "app", Labels: map[string]string{long(300): "x"}}), "labels: a key of 300 bytes"},
		{"batch entry", "POST", "/api/v1/deployments/batch", js(apitypes.NewDeployments{Deployments: []apitypes.NewDeployment{{Customer: "a", Stack: "app"}, {Customer: "a", Stack: long(300)}}}), "deployments[1].stack: 300 bytes"},
		{"release version", "POST", "/api/v1/releases", js(apitypes.NewRelease{Stack: "app", Version: long(257)}), "version: 257 bytes"},
		{"release notes", "POST", "/api/v1/releases", js(apitypes.NewRelease{Stack: "app", Version: "1.0", Notes: long(apitypes.MaxNotesBytes + 1)}), "notes:"},
		{"pin reason", "PUT", "/api/v1/deployments/acme-prod/pin", js(apitypes.NewPin{Release: "1.0", Reason: long(1025)}), "reason: 1025 bytes, over the limit of 1024 bytes"},
		{"rollback reason", "POST", "/api/v1/deployments/acme-prod/rollback", js(apitypes.PinReason{Reason: long(1025)}), "reason: 1025 bytes"},
		{"bulk pin filter", "POST", "/api/v1/pins", js(apitypes.PinRequest{Action: "pin", Release: "1.0", Reason: "r", Filter: &apitypes.PinFilter{Customer: long(257)}}), "filter.customer: 257 bytes"},
		{"bulk pin ids", "POST", "/api/v1/pins", js(apitypes.PinRequest{Action: "unpin", Deployments: []string{"a", long(257)}}), "deployments[1]: 257 bytes"},
		{"token name", "POST", "/api/v1/tokens", js(apitypes.NewToken{Name: long(257), Role: "viewer"}), "name: 257 bytes"},
		{"command reason", "POST", "/api/v1/deployments/acme-prod/commands", js(apitypes.NewInvocation{Command: "x", Reason: long(1025)}), "reason: 1025 bytes"},
		{"command param", "POST", "/api/v1/deployments/acme-prod/commands", js(apitypes.NewInvocation{Command: "x", Reason: "r", Params: map[string]any{"p": long(5000)}}), "params.p: 5000 bytes"},
		{"command selection", "POST", "/api/v1/commands", js(apitypes.NewInvocation{Command: "x", Reason: "r", Selection: &apitypes.CommandSelection{IDs: []string{long(257)}}}), "selection.ids[0]: 257 bytes"},
		{"command timeout", "POST", "/api/v1/deployments/acme-prod/commands", js(apitypes.NewInvocation{Command: "x", Reason: "r", Timeout: "100h"}), "timeout:"},
		{"cancel reason", "POST", "/api/v1/commands/abc/cancel", js(apitypes.CommandCancel{Reason: long(1025)}), "reason: 1025 bytes"},
		{"release commands", "POST", "/api/v1/releases", js(apitypes.NewRelease{Stack: "app", Version: "9.0", Commands: []command.Spec{{Name: "x"}}}), "command x"},
	} {
		code, _, body := f.do(tc.method, tc.path, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %.300s, want 400 saying %q", tc.name, code, body, tc.want)
		}
	}
	// At the limits, bodies are taken.
	at := apitypes.NewDeployment{ID: "at-limits", Name: long(256), Customer: long(256), Stack: "app", Labels: map[string]string{long(256): long(256)}}
	if code, _, body := f.do("POST", "/api/v1/deployments", js(at)); code != http.StatusCreated {
		t.Errorf("a deployment at the limits: %d %s", code, body)
	}
}

func TestTrailingDataAfterABodyIsRefused(t *testing.T) {
	f := newAPIFixture(t)
	for _, body := range []string{
		`{"customer":"a","stack":"app"} {"customer":"b","stack":"app"}`,
		`{"customer":"a","stack":"app"}]`,
		`{"customer":"a","stack":"app"} x`,
	} {
		if code, _, resp := f.do("POST", "/api/v1/deployments", []byte(body)); code != http.StatusBadRequest || !strings.Contains(resp, "data after the JSON value") {
			t.Errorf("%s: %d %s, want 400", body, code, resp)
		}
	}
	if code, _, resp := f.do("POST", "/api/v1/deployments", []byte("{\"customer\":\"a\",\"stack\":\"app\"}\n\t ")); code != http.StatusCreated {
		t.Errorf("trailing whitespace: %d %s", code, resp)
	}
}

func TestMalformedQueryIsRefused(t *testing.T) {
	f := newAPIFixture(t)
	for _, target := range []string{
		"/api/v1/deployments?customer=globex;status=unhealthy",
		"/api/v1/deployments?customer=%zz",
		"/api/v1/logs?deployment=acme-prod;since=1h",
	} {
		if code, _, body := f.do("GET", target, nil); code != http.StatusBadRequest || !strings.Contains(body, "malformed query string") {
			t.Errorf("%s: %d %s, want 400", target, code, body)
		}
	}
	if code, _, body := f.do("GET", "/api/v1/logs?q="+strings.Repeat("x", 1025), nil); code != http.StatusBadRequest || !strings.Contains(body, "q: 1025 bytes, over the limit of 1024 bytes") {
		t.Errorf("a 1025-byte query value: %d %s, want 400", code, body)
	}
	for _, target := range []string{"/api/v1/releases/compare?stack=%CA", "/api/v1/deployments?%FF=1", "/api/v1/deployments/%CA"} {
		if code, _, body := f.do("GET", target, nil); code != http.StatusBadRequest || !strings.Contains(body, "not valid UTF-8") {
			t.Errorf("%s: %d %s, want 400 naming the bad encoding", target, code, body)
		}
	}
	if code, _, body := f.do("GET", "/api/v1/deployments?customer=acme&status=healthy", nil); code != http.StatusOK {
		t.Errorf("a well-formed query: %d %s", code, body)
	}
}

func TestWrongMethodIs405WithAllow(t *testing.T) {
	f := newAPIFixture(t)
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/api/v1/deployments", "GET, HEAD, POST"},
		{"PATCH", "/api/v1/deployments/acme-prod/pin", "DELETE, PUT"},
		{"GET", "/api/v1/pins", "POST"},
		{"POST", "/api/v1/deployments/acme-prod", "DELETE, GET, HEAD"},
		{"PUT", "/api/v1/tokens", "GET, HEAD, POST"},
	} {
		code, h, body := f.do(tc.method, tc.path, nil)
		if code != http.StatusMethodNotAllowed || h.Get("Allow") != tc.allow || !strings.Contains(body, "method_not_allowed") {
			t.Errorf("%s %s: %d Allow %q %s, want 405 Allow %q", tc.method, tc.path, code, h.Get("Allow"), body, tc.allow)
		}
	}
	if code, _, _ := f.do("GET", "/api/v1/nothing", nil); code != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", code)
	}
}

// FuzzAPI sends the API arbitrary requests: whatever the method, path, query
// and body, it answers, and never with a 500.
func FuzzAPI(f *testing.F) {
	for _, s := range []struct{ method, target, body string }{
		{"GET", "/api/v1/deployments?customer=acme&status=healthy&label=tier=gold&limit=5", ""},
		{"GET", "/api/v1/deployments?after=zz&pinned=maybe", ""},
		{"POST", "/api/v1/deployments", `{"customer":"acme","stack":"app","labels":{"tier":"gold"}}`},
		{"POST", "/api/v1/deployments/batch", `{"deployments":[{"customer":"a","stack":"app"},{"id":"acme-prod"}]}`},
		{"PUT", "/api/v1/deployments/acme-prod/pin", `{"release":"1.0","reason":"hold"}`},
		{"DELETE", "/api/v1/deployments/acme-prod/pin", ``},
		{"POST", "/api/v1/deployments/acme-prod/rollback", `{"reason":"bad"}`},
		{"POST", "/api/v1/pins", `{"action":"pin","release":"1.0","reason":"r","filter":{"behind":"any","labels":{"tier":"gold"}}}`},
		{"GET", "/api/v1/pins/history?deployment=acme-prod&limit=3", ""},
		{"POST", "/api/v1/releases", `{"stack":"app","version":"1.0","notes":"n"} {}`},
		{"GET", "/api/v1/releases/adoption?stack=app", ""},
		{"GET", "/api/v1/logs?deployment=acme-prod&since=1h&q=err;x", ""},
		{"GET", "/api/v1/spans?since=2026-01-01T00:00:00Z&until=-5m&min_duration=1ms", ""},
		{"GET", "/api/v1/traces/5b8efff798038103d269b633813fc60c", ""},
		{"GET", "/api/v1/red?group_by=release&step=1m", ""},
		{"GET", "/api/v1/releases/compare?stack=app&base=1.0&head=2.0", ""},
		{"GET", "/api/v1/metrics/series?name=queue.depth&agg=max&group_by=deployment", ""},
		{"GET", "/api/v1/logs/tail?deployment=acme-prod", ""},
		{"GET", "/api/v1/events?limit=1000000", ""},
		{"GET", "/api/v1/notifications?state=x", ""},
		{"PATCH", "/api/v1/summary", "{"},
		{"POST", "/api/v1/tokens", `{"name":"ci","role":"emperor"}`},
		{"GET", "/api/v1/audit?actor=admin&action=pin.&deployment=acme-prod&customer=acme&outcome=succeeded&since=24h&until=2026-03-01T12:00:00Z&limit=2", ""},
		{"GET", "/api/v1/audit?cursor=zz.-1&since=-5m&limit=1001", ""},
		{"GET", "/api/v1/audit?since=2026-03-02T00:00:00Z&until=1h&action=.", ""},
		{"DELETE", "/api/v1/audit", ""},
		{"POST", "/api/v1/releases", `{"stack":"app","version":"3.0","commands":[{"name":"row-count","exec":{"path":"/bin/wc"},"params":[{"name":"table","type":"enum","values":["a"]}]}]}`},
		{"POST", "/api/v1/deployments/acme-prod/commands", `{"command":"row-count","params":{"table":"a"},"reason":"ticket","timeout":"5m"}`},
		{"POST", "/api/v1/commands", `{"selection":{"customer":"acme","labels":{"tier":"gold"}},"command":"row-count","reason":"r"}`},
		{"GET", "/api/v1/commands?deployment=acme-prod&state=queued&since=2026-01-01T00:00:00Z&after=12&limit=2", ""},
		{"GET", "/api/v1/commands/abc?wait=10ms", ""},
		{"POST", "/api/v1/commands/abc/cancel", `{"reason":"oops"}`},
		{"GET", "/api/v1/deployments/acme-prod/runtime?since=15m&until=2026-11-24T10:00:00Z", ""},
		{"GET", "/api/v1/deployments/ghost/runtime?since=-999999h", ""},
	} {
		f.Add(s.method, s.target, []byte(s.body))
	}
	fx := newAPIFixture(f)
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		req, err := http.NewRequest(method, "http://manager"+target, bytes.NewReader(body))
		if err != nil || req.URL.Path == "" || req.URL.Path[0] != '/' || !strings.HasPrefix(req.URL.Path, "/api/") {
			return // not a request a server would route to the API
		}
		req.RequestURI = req.URL.RequestURI()
		req.Header.Set("Authorization", "Bearer "+fx.admin)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		fx.mux.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			resp, _ := io.ReadAll(rec.Body)
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, resp)
		}
	})
}
