package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/tokens"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// The pin routes run over a real registry on the real DuckDB store, with the
// clock fixed at t0 so "days behind" is exact. The store's ApplyPins can be held
// open, the one seam, to make two pin changes overlap on purpose.

const day = 24 * time.Hour

// gatedStore is the DuckDB store whose next ApplyPins can be made to wait.
type gatedStore struct {
	*duckdb.Store
	mu      sync.Mutex
	gate    chan struct{}
	entered chan struct{}
}

// hold makes the next ApplyPins wait, inside the registry's pin change, until
// release is called; entered is closed once it waits.
func (g *gatedStore) hold() (entered <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.entered = make(chan struct{}), make(chan struct{})
	gate := g.gate
	return g.entered, func() { close(gate) }
}

func (g *gatedStore) ApplyPins(ctx context.Context, recs []store.DeploymentRecord, changes []fleet.PinChange) error {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.gate, g.entered = nil, nil
	g.mu.Unlock()
	if gate != nil {
		close(entered)
		<-gate
	}
	return g.Store.ApplyPins(ctx, recs, changes)
}

type pinFleet struct {
	reg *registry.Registry
	st  *gatedStore
	clk *clock.Fake
	// op is the operator token "release-bot"; viewer is "dash".
	op, viewer *apiclient.Client
}

func checkin(t *testing.T, reg *registry.Registry, id, release string, accepts bool) {
	t.Helper()
	rep := registry.Report{Mode: fleet.ModePull, AcceptsReleases: &accepts}
	if release != "" {
		rep.Description = &registry.Description{Release: release}
	}
	if _, err := reg.Checkin(id, rep); err != nil {
		t.Fatal(err)
	}
}

// newPinFleet serves the API over this fleet, the clock at t0:
//
//	acme-prod  acme     app  tier=gold  runs 1.0 (polls, applies releases)
//	acme-dr    acme     app             runs 1.0 (polls, applies releases)
//	globex     globex   app  tier=gold  runs 2.0, ran 1.1 before
//	initech    initech  app             runs 1.1, cannot apply releases itself
//	acme-db    acme     db              runs 1.0, the latest of db
//
// app 1.0 was published at t0-10d, 1.1 at t0-6d-3h, 2.0 at t0-2d; db 1.0 at t0-10d.
func newPinFleet(t *testing.T) *pinFleet {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(t0.Add(-10 * day))
	st, err := duckdb.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &pinFleet{st: &gatedStore{Store: st}, clk: clk}
	f.reg, err = registry.New(f.st, registry.Settings{Clock: clk, FlushInterval: time.Hour, EvalInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.reg.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	keys := tokens.New(st, nil, nil)
	opSecret, _, err := keys.Create(ctx, auth.APIToken{}, "release-bot", auth.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	viewSecret, _, err := keys.Create(ctx, auth.APIToken{}, "dash", auth.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.New(f.reg, keys, nil).WithTelemetry(nil, clk).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.op, f.viewer = apiclient.New(srv.URL, opSecret), apiclient.New(srv.URL, viewSecret)

	if _, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{
		{ID: "acme-prod", Customer: "acme", Stack: "app", Labels: map[string]string{"tier": "gold"}},
		{ID: "acme-dr", Customer: "acme", Stack: "app"},
		{ID: "globex", Customer: "globex", Stack: "app", Labels: map[string]string{"tier": "gold"}},
		{ID: "initech", Customer: "initech", Stack: "app"},
		{ID: "acme-db", Customer: "acme", Stack: "db"},
	}); err != nil {
		t.Fatal(err)
	}
	publish := func(stack, version string) {
		if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: stack, Version: version}); err != nil {
			t.Fatal(err)
		}
	}
	publish("app", "1.0")
	publish("db", "1.0")
	for _, id := range []string{"acme-prod", "acme-dr", "globex", "acme-db"} {
		checkin(t, f.reg, id, "1.0", true)
	}
	clk.Set(t0.Add(-6*day - 3*time.Hour))
	publish("app", "1.1")
	clk.Set(t0.Add(-5 * day))
	checkin(t, f.reg, "globex", "1.1", true)
	checkin(t, f.reg, "initech", "1.1", false)
	clk.Set(t0.Add(-2 * day))
	publish("app", "2.0")
	clk.Set(t0.Add(-1 * day))
	checkin(t, f.reg, "globex", "2.0", true)
	clk.Set(t0)
	for _, id := range []string{"acme-prod", "acme-dr", "globex", "initech", "acme-db"} {
		checkin(t, f.reg, id, "", id != "initech")
	}
	return f
}

// pins returns each deployment's pinned release ("" when it follows the latest).
func (f *pinFleet) pins(t *testing.T) map[string]string {
	t.Helper()
	ds, err := f.viewer.Deployments(context.Background(), apiclient.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range ds {
		out[d.ID] = ""
		if d.Pin != nil {
			out[d.ID] = d.Pin.Release
		}
	}
	return out
}

func changedIDs(res apitypes.PinResult) []string {
	var ids []string
	for _, c := range res.Changed {
		ids = append(ids, c.DeploymentID)
	}
	sort.Strings(ids)
	return ids
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPinOneDeployment(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	res, err := f.op.PinDeployment(ctx, "acme-prod", "1.0", "hold for the SOC 2 audit")
	if err != nil {
		t.Fatal(err)
	}
	want := apitypes.PinChange{ChangeID: res.ChangeID, At: t0, By: "release-bot", Reason: "hold for the SOC 2 audit", Action: fleet.ActionPin,
		DeploymentID: "acme-prod", From: "2.0", To: "1.0", Running: "1.0"}
	if res.ChangeID == "" || res.Unchanged != 0 || len(res.Changed) != 1 || jsonOf(t, res.Changed[0]) != jsonOf(t, want) {
		t.Fatalf("pin answered %+v\nwant one change %+v", res, want)
	}
	d, err := f.viewer.Deployment(ctx, "acme-prod")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Pinned || d.Pin == nil || d.Pin.Release != "1.0" || d.Pin.By != "release-bot" || d.Pin.Reason != want.Reason ||
		!d.Pin.At.Equal(t0) || d.DesiredRelease != "1.0" || d.Behind != "" {
		t.Fatalf("after the pin the deployment shows pinned=%v pin=%+v desired=%s behind=%q", d.Pinned, d.Pin, d.DesiredRelease, d.Behind)
	}
	hist, err := f.viewer.PinHistory(ctx, "acme-prod", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || jsonOf(t, hist[0]) != jsonOf(t, want) {
		t.Fatalf("audit trail %+v, want the one change", hist)
	}
	// Asking again changes nothing and says so.
	again, err := f.op.PinDeployment(ctx, "acme-prod", "1.0", "again")
	if err != nil || len(again.Changed) != 0 || again.Unchanged != 1 {
		t.Fatalf("repeated pin: %+v, %v; want nothing changed, 1 already as asked", again, err)
	}
}

func TestPinRefusals(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	yes := true
	for _, tc := range []struct {
		name   string
		c      *apiclient.Client
		method string
		path   string
		body   any
		status int
		code   string
		// says must appear in the error message.
		says []string
	}{
		{"unpublished release", f.op, "PUT", "/api/v1/deployments/acme-prod/pin", apitypes.NewPin{Release: "9.9", Reason: "r"}, 400, "invalid",
			[]string{`"9.9"`, "acme-prod"}},
		{"nothing to roll back to", f.op, "POST", "/api/v1/deployments/acme-db/rollback", apitypes.PinReason{Reason: "r"}, 400, "invalid",
			[]string{"no earlier release", "acme-db"}},
		{"pin without a reason", f.op, "PUT", "/api/v1/deployments/acme-prod/pin", apitypes.NewPin{Release: "1.0"}, 400, "invalid", []string{"reason"}},
		{"rollback without a reason", f.op, "POST", "/api/v1/deployments/globex/rollback", apitypes.PinReason{}, 400, "invalid", []string{"reason"}},
		{"viewer cannot pin", f.viewer, "PUT", "/api/v1/deployments/acme-prod/pin", apitypes.NewPin{Release: "1.0", Reason: "r"}, 403, "forbidden",
			[]string{"operator"}},
		{"viewer cannot change pins", f.viewer, "POST", "/api/v1/pins", apitypes.PinRequest{Action: "unpin", All: true}, 403, "forbidden", nil},
		{"unknown deployment", f.op, "PUT", "/api/v1/deployments/ghost/pin", apitypes.NewPin{Release: "1.0", Reason: "r"}, 404, "not_found",
			[]string{"ghost"}},
		{"unknown deployment in a batch", f.op, "POST", "/api/v1/pins",
			apitypes.PinRequest{Action: "pin", Release: "1.0", Reason: "r", Deployments: []string{"acme-prod", "ghost"}}, 404, "not_found", []string{"ghost"}},
		{"filter matching nothing", f.op, "POST", "/api/v1/pins",
			apitypes.PinRequest{Action: "unpin", Filter: &apitypes.PinFilter{Customer: "nobody"}}, 404, "not_found", nil},
		{"behind=latest matching nothing", f.op, "POST", "/api/v1/pins",
			apitypes.PinRequest{Action: "unpin", Filter: &apitypes.PinFilter{Behind: "latest", Stack: "db"}}, 404, "not_found", nil},
		{"no selection", f.op, "POST", "/api/v1/pins", apitypes.PinRequest{Action: "unpin"}, 400, "invalid", []string{"all"}},
		{"empty filter", f.op, "POST", "/api/v1/pins", apitypes.PinRequest{Action: "unpin", Filter: &apitypes.PinFilter{}}, 400, "invalid", nil},
		{"two selections", f.op, "POST", "/api/v1/pins",
			apitypes.PinRequest{Action: "unpin", Deployments: []string{"acme-prod"}, All: true}, 400, "invalid", []string{"one way"}},
		{"unknown action", f.op, "POST", "/api/v1/pins", apitypes.PinRequest{Action: "freeze", All: true}, 400, "invalid", []string{"freeze"}},
		{"release on unpin", f.op, "POST", "/api/v1/pins", apitypes.PinRequest{Action: "unpin", Release: "1.0", All: true}, 400, "invalid",
			[]string{"pin only"}},
		{"bad filter status", f.op, "POST", "/api/v1/pins",
			apitypes.PinRequest{Action: "unpin", Filter: &apitypes.PinFilter{Status: "sad", Pinned: &yes}}, 400, "invalid", []string{"sad"}},
		{"bad filter behind", f.op, "POST", "/api/v1/pins",
			apitypes.PinRequest{Action: "unpin", Filter: &apitypes.PinFilter{Behind: "late"}}, 400, "invalid", []string{"late"}},
		{"unknown field", f.op, "POST", "/api/v1/pins", map[string]any{"action": "unpin", "all": true, "force": true}, 400, "invalid",
			[]string{"force"}},
		{"rollback needs a body", f.op, "POST", "/api/v1/deployments/globex/rollback", nil, 400, "invalid", nil},
		{"history of an unknown deployment", f.viewer, "GET", "/api/v1/pins/history?deployment=ghost", nil, 404, "not_found", nil},
		{"history limit", f.viewer, "GET", "/api/v1/pins/history?limit=0", nil, 400, "invalid", []string{"limit"}},
		{"bad behind filter", f.viewer, "GET", "/api/v1/deployments?behind=late", nil, 400, "invalid", []string{"late"}},
		{"bad pinned filter", f.viewer, "GET", "/api/v1/deployments/behind?pinned=maybe", nil, 400, "invalid", []string{"maybe"}},
		{"bad label filter", f.viewer, "GET", "/api/v1/summary?label=tier", nil, 400, "invalid", []string{"key=value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Do(ctx, tc.method, tc.path, tc.body, nil)
			var ae *apiclient.Error
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code {
				t.Fatalf("want %d %s, got %v", tc.status, tc.code, err)
			}
			for _, s := range tc.says {
				if !strings.Contains(ae.Message, s) {
					t.Errorf("message %q does not say %q", ae.Message, s)
				}
			}
		})
	}
	// Nothing was changed by any of them.
	for id, pin := range f.pins(t) {
		if pin != "" {
			t.Errorf("%s pinned to %s by a refused request", id, pin)
		}
	}
	if hist, err := f.viewer.PinHistory(ctx, "", 100); err != nil || len(hist) != 0 {
		t.Fatalf("audit trail %+v, %v; want empty", hist, err)
	}
}

func TestPinAllAcrossStacksAndUnpin(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	// db has no 2.0: the whole change is refused, naming it, and nothing moves.
	_, err := f.op.ChangePins(ctx, apitypes.PinRequest{Action: "pin", Release: "2.0", Reason: "freeze", All: true})
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "acme-db") || strings.Contains(ae.Message, "globex") {
		t.Fatalf("pin --all to a release one stack lacks: %v; want 400 naming acme-db only", err)
	}
	if pins := f.pins(t); !reflect.DeepEqual(pins, map[string]string{"acme-prod": "", "acme-dr": "", "globex": "", "initech": "", "acme-db": ""}) {
		t.Fatalf("a refused change moved pins: %v", pins)
	}

	res, err := f.op.ChangePins(ctx, apitypes.PinRequest{Action: "pin", Release: "1.0", Reason: "incident 42: freeze", All: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := changedIDs(res); !reflect.DeepEqual(got, []string{"acme-db", "acme-dr", "acme-prod", "globex", "initech"}) || res.Unchanged != 0 {
		t.Fatalf("changed %v (unchanged %d), want all five", got, res.Unchanged)
	}
	for _, c := range res.Changed {
		if c.ChangeID != res.ChangeID || c.To != "1.0" || c.By != "release-bot" || c.Reason != "incident 42: freeze" {
			t.Errorf("change %+v", c)
		}
		if c.DeploymentID == "acme-db" && c.From != "1.0" || c.DeploymentID == "globex" && (c.From != "2.0" || c.Running != "2.0") {
			t.Errorf("change %+v has the wrong from or running release", c)
		}
	}
	if again, err := f.op.ChangePins(ctx, apitypes.PinRequest{Action: "pin", Release: "1.0", Reason: "again", All: true}); err != nil ||
		len(again.Changed) != 0 || again.Unchanged != 5 {
		t.Fatalf("repeat: %+v, %v; want 5 already as asked", again, err)
	}

	// Unpin one without a body, another with a reason.
	f.clk.Advance(time.Minute)
	un, err := f.op.UnpinDeployment(ctx, "acme-prod", "")
	if err != nil || len(un.Changed) != 1 || un.Changed[0].Action != fleet.ActionUnpin || un.Changed[0].From != "1.0" || un.Changed[0].To != "2.0" {
		t.Fatalf("unpin: %+v, %v; want 1.0 → 2.0", un, err)
	}
	if un, err = f.op.UnpinDeployment(ctx, "acme-dr", "incident over"); err != nil || len(un.Changed) != 1 || un.Changed[0].Reason != "incident over" {
		t.Fatalf("unpin with a reason: %+v, %v", un, err)
	}
	if un, err = f.op.UnpinDeployment(ctx, "acme-dr", ""); err != nil || len(un.Changed) != 0 || un.Unchanged != 1 {
		t.Fatalf("unpin of an unpinned deployment: %+v, %v; want unchanged", un, err)
	}
	un, err = f.op.ChangePins(ctx, apitypes.PinRequest{Action: "unpin", All: true})
	if err != nil || !reflect.DeepEqual(changedIDs(un), []string{"acme-db", "globex", "initech"}) || un.Unchanged != 2 {
		t.Fatalf("unpin --all: %+v, %v", un, err)
	}
	for id, pin := range f.pins(t) {
		if pin != "" {
			t.Errorf("%s still pinned to %s", id, pin)
		}
	}
}

func TestPinSelectionByFilter(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	yes, no := true, false
	for _, step := range []struct {
		req       apitypes.PinRequest
		changed   []string
		unchanged int
	}{
		{apitypes.PinRequest{Action: "pin", Release: "1.1", Reason: "gold tier waits", Filter: &apitypes.PinFilter{Labels: map[string]string{"tier": "gold"}}},
			[]string{"acme-prod", "globex"}, 0},
		{apitypes.PinRequest{Action: "pin", Release: "1.1", Reason: "acme waits", Filter: &apitypes.PinFilter{Customer: "acme", Stack: "app"}},
			[]string{"acme-dr"}, 1},
		// Behind the latest and not pinned: only initech (acme-db runs db's latest).
		{apitypes.PinRequest{Action: "pin", Release: "1.1", Reason: "hold", Filter: &apitypes.PinFilter{Behind: "latest", Pinned: &no}},
			[]string{"initech"}, 0},
		{apitypes.PinRequest{Action: "pin", Release: "1.0", Reason: "by release", Filter: &apitypes.PinFilter{Release: "1.0", Stack: "app", Status: "healthy"}},
			[]string{"acme-dr", "acme-prod"}, 0},
		{apitypes.PinRequest{Action: "unpin", Filter: &apitypes.PinFilter{Pinned: &yes, Labels: map[string]string{"tier": "gold"}}},
			[]string{"acme-prod", "globex"}, 0},
		{apitypes.PinRequest{Action: "unpin", Deployments: []string{"acme-prod", "acme-dr", "acme-dr"}},
			[]string{"acme-dr"}, 1},
	} {
		res, err := f.op.ChangePins(ctx, step.req)
		if err != nil {
			t.Fatalf("%+v: %v", step.req, err)
		}
		if got := changedIDs(res); !reflect.DeepEqual(got, step.changed) || res.Unchanged != step.unchanged {
			t.Fatalf("%+v changed %v (unchanged %d); want %v (%d)", step.req, got, res.Unchanged, step.changed, step.unchanged)
		}
	}
	want := map[string]string{"acme-prod": "", "acme-dr": "", "globex": "", "initech": "1.1", "acme-db": ""}
	if pins := f.pins(t); !reflect.DeepEqual(pins, want) {
		t.Fatalf("pins %v, want %v", pins, want)
	}
	// The list filters the same way.
	ds, err := f.viewer.Deployments(ctx, apiclient.Filter{Pinned: "true"})
	if err != nil || len(ds) != 1 || ds[0].ID != "initech" {
		t.Fatalf("pinned=true lists %v, %v", ds, err)
	}
	ds, err = f.viewer.Deployments(ctx, apiclient.Filter{Labels: map[string]string{"tier": "gold"}, Customer: "acme"})
	if err != nil || len(ds) != 1 || ds[0].ID != "acme-prod" {
		t.Fatalf("label and customer list %v, %v", ds, err)
	}
}

func TestPinHistoryNewestFirst(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	// A step without a release unpins.
	for _, step := range []struct{ id, release, reason string }{
		{"acme-prod", "1.0", "first"},
		{"globex", "1.1", "other deployment"},
		{"acme-prod", "", "second"},
		{"acme-prod", "1.1", "third"},
	} {
		var err error
		if step.release == "" {
			_, err = f.op.UnpinDeployment(ctx, step.id, step.reason)
		} else {
			_, err = f.op.PinDeployment(ctx, step.id, step.release, step.reason)
		}
		if err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Minute)
	}
	hist, err := f.viewer.PinHistory(ctx, "acme-prod", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hist {
		got = append(got, h.Reason+" "+string(h.Action)+" "+h.From+"→"+h.To+" "+h.At.UTC().Format("15:04"))
	}
	want := []string{"third pin 2.0→1.1 10:03", "second unpin 1.0→2.0 10:02", "first pin 2.0→1.0 10:00"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("history %q\nwant %q", got, want)
	}
	if hist, err = f.viewer.PinHistory(ctx, "", 2); err != nil || len(hist) != 2 || hist[0].Reason != "third" || hist[1].Reason != "second" {
		t.Fatalf("fleet history limited to 2: %+v, %v", hist, err)
	}
	if hist, err = f.viewer.PinHistory(ctx, "", 0); err != nil || len(hist) != 4 {
		t.Fatalf("fleet history: %d entries, %v; want 4", len(hist), err)
	}
}

func TestRollbackAndReleaseFields(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	d, err := f.viewer.Deployment(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if d.Release != "2.0" || d.PreviousRelease != "1.1" || d.ReleaseSince == nil || !d.ReleaseSince.Equal(t0.Add(-day)) || !d.AcceptsReleases ||
		d.VersionsBehind != 0 || d.SupersededAt != nil || d.BehindSince != nil || d.Regression != nil {
		t.Fatalf("globex shows release %s previous %s since %v accepts %v behind %d superseded %v behind since %v regression %v",
			d.Release, d.PreviousRelease, d.ReleaseSince, d.AcceptsReleases, d.VersionsBehind, d.SupersededAt, d.BehindSince, d.Regression)
	}
	d, err = f.viewer.Deployment(ctx, "acme-prod")
	if err != nil {
		t.Fatal(err)
	}
	if d.VersionsBehind != 2 || d.SupersededAt == nil || !d.SupersededAt.Equal(t0.Add(-6*day-3*time.Hour)) ||
		d.BehindSince == nil || !d.BehindSince.Equal(t0.Add(-6*day-3*time.Hour)) || d.Behind != fleet.BehindPullPending {
		t.Fatalf("acme-prod shows %d behind, superseded %v, behind %q since %v", d.VersionsBehind, d.SupersededAt, d.Behind, d.BehindSince)
	}

	// 2.0 turns out worse on globex.
	reg := &fleet.Regression{Release: "2.0", Previous: "1.1", Requests: 5000, PreviousRequests: 4800, ErrorRate: 0.08, PreviousErrorRate: 0.01,
		P95: 120, PreviousP95: 100, Worse: []string{"error_rate"}, Since: t0}
	if err := f.reg.SetRegression("globex", reg); err != nil {
		t.Fatal(err)
	}
	d, err = f.viewer.Deployment(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != fleet.StatusUnhealthy || d.StatusReasonCode != fleet.ReasonRegressed || jsonOf(t, d.Regression) != jsonOf(t, reg) {
		t.Fatalf("regressed globex shows %s (%s) %+v", d.Status, d.StatusReasonCode, d.Regression)
	}
	evs, err := f.viewer.Events(ctx, "globex", 1)
	if err != nil || len(evs) != 1 || evs[0].ReasonCode != fleet.ReasonRegressed || evs[0].Release != "2.0" {
		t.Fatalf("latest globex event %+v, %v; want regressed-after-release on 2.0", evs, err)
	}

	f.clk.Advance(time.Hour)
	res, err := f.op.RollbackDeployment(ctx, "globex", "error rate 8% on 2.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 1 || res.Changed[0].Action != fleet.ActionRollback || res.Changed[0].From != "2.0" || res.Changed[0].To != "1.1" ||
		res.Changed[0].Running != "2.0" || res.Changed[0].By != "release-bot" {
		t.Fatalf("rollback answered %+v", res)
	}
	d, err = f.viewer.Deployment(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if d.Pin == nil || d.Pin.Release != "1.1" || d.DesiredRelease != "1.1" || d.Behind != fleet.BehindPullPending ||
		d.BehindSince == nil || !d.BehindSince.Equal(t0.Add(time.Hour)) {
		t.Fatalf("rolled back globex shows pin %+v desired %s behind %q since %v", d.Pin, d.DesiredRelease, d.Behind, d.BehindSince)
	}
	// Rolling back by filter: acme-db has nothing to roll back to, so nothing rolls back.
	_, err = f.op.ChangePins(ctx, apitypes.PinRequest{Action: "rollback", Reason: "r", Filter: &apitypes.PinFilter{Customer: "acme"}})
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "acme-db") {
		t.Fatalf("rollback of deployments without an earlier release: %v", err)
	}
}

func TestReleaseAdoption(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	if _, err := f.op.PinDeployment(ctx, "acme-dr", "1.0", "customer change freeze"); err != nil {
		t.Fatal(err)
	}
	ads, err := f.viewer.Adoption(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	want := []apitypes.Adoption{{Stack: "app", Latest: "2.0", Total: 4, Releases: []apitypes.ReleaseAdoption{
		{Version: "2.0", Published: true, Running: 1, Desired: 3},
		{Version: "1.1", Published: true, Running: 1, Behind: map[fleet.BehindReason]int{fleet.BehindManualApply: 1}},
		{Version: "1.0", Published: true, Running: 2, Desired: 1, Pinned: 1, Behind: map[fleet.BehindReason]int{fleet.BehindPullPending: 1}},
	}}}
	if !reflect.DeepEqual(ads, want) {
		t.Fatalf("adoption of app\n%+v\nwant\n%+v", ads, want)
	}
	ads, err = f.viewer.Adoption(ctx, "")
	if err != nil || len(ads) != 2 || ads[0].Stack != "app" || ads[1].Stack != "db" || ads[1].Total != 1 || ads[1].Releases[0].Running != 1 {
		t.Fatalf("adoption of every stack: %+v, %v", ads, err)
	}
	if ads, err = f.viewer.Adoption(ctx, "nothing"); err != nil || len(ads) != 0 {
		t.Fatalf("adoption of an unknown stack: %+v, %v", ads, err)
	}
}

func TestBehindLatest(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	if _, err := f.op.PinDeployment(ctx, "acme-dr", "1.0", "customer change freeze"); err != nil {
		t.Fatal(err)
	}
	bs, err := f.viewer.Behind(ctx, apiclient.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID       string
		Reason   fleet.BehindReason
		Versions int
		Days     float64
		Running  string
		Desired  string
	}
	var got []row
	for _, b := range bs {
		got = append(got, row{b.ID, b.Reason, b.VersionsBehind, b.DaysSinceSuperseded, b.Release, b.DesiredRelease})
		if b.LatestRelease != "2.0" || b.SupersededAt == nil {
			t.Errorf("%s: latest %s, superseded %v", b.ID, b.LatestRelease, b.SupersededAt)
		}
	}
	want := []row{
		{"acme-dr", fleet.BehindPinned, 2, 6.1, "1.0", "1.0"},
		{"acme-prod", fleet.BehindPullPending, 2, 6.1, "1.0", "2.0"},
		{"initech", fleet.BehindManualApply, 1, 2, "1.1", "2.0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("behind\n%+v\nwant\n%+v", got, want)
	}
	byID := map[string]apitypes.BehindDeployment{}
	for _, b := range bs {
		byID[b.ID] = b
	}
	if b := byID["acme-prod"]; b.NextPollExpected == nil || !b.NextPollExpected.Equal(t0.Add(30*time.Second)) ||
		b.BehindSince == nil || !b.BehindSince.Equal(t0.Add(-6*day-3*time.Hour)) {
		t.Errorf("acme-prod: next poll %v, behind since %v", b.NextPollExpected, b.BehindSince)
	}
	if b := byID["acme-dr"]; b.BehindSince != nil || b.Pin == nil || b.Pin.Reason != "customer change freeze" {
		t.Errorf("acme-dr runs what its pin asks: behind since %v, pin %+v", b.BehindSince, b.Pin)
	}
	if b := byID["initech"]; b.NextPollExpected != nil || b.BehindSince == nil || !b.BehindSince.Equal(t0.Add(-2*day)) {
		t.Errorf("initech: next poll %v, behind since %v", b.NextPollExpected, b.BehindSince)
	}

	// Days count on the API's clock.
	f.clk.Advance(12 * time.Hour)
	for _, tc := range []struct {
		f   apiclient.Filter
		ids []string
	}{
		{apiclient.Filter{}, []string{"acme-dr", "acme-prod", "initech"}},
		{apiclient.Filter{Customer: "acme"}, []string{"acme-dr", "acme-prod"}},
		{apiclient.Filter{Behind: "pinned"}, []string{"acme-dr"}},
		{apiclient.Filter{Behind: "manual-apply"}, []string{"initech"}},
		{apiclient.Filter{Labels: map[string]string{"tier": "gold"}}, []string{"acme-prod"}},
		{apiclient.Filter{Pinned: "false", Release: "1.0"}, []string{"acme-prod"}},
		{apiclient.Filter{Stack: "db"}, nil},
	} {
		bs, err := f.viewer.Behind(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, b := range bs {
			ids = append(ids, b.ID)
			if b.ID == "acme-prod" && b.DaysSinceSuperseded != 6.6 {
				t.Errorf("12 hours later acme-prod is %v days behind, want 6.6", b.DaysSinceSuperseded)
			}
		}
		if !slices.Equal(ids, tc.ids) {
			t.Errorf("behind with %+v: %v, want %v", tc.f, ids, tc.ids)
		}
	}

	// behind=latest on the list pages over what only the API can filter.
	var page apitypes.DeploymentList
	if err := f.viewer.Do(ctx, "GET", "/api/v1/deployments?behind=latest&limit=2", nil, &page); err != nil {
		t.Fatal(err)
	}
	if page.Total != 3 || len(page.Items) != 2 || page.Items[0].ID != "acme-dr" || page.Next != "acme-prod" {
		t.Fatalf("first page of behind=latest: total %d, %d items, next %q", page.Total, len(page.Items), page.Next)
	}
	if err := f.viewer.Do(ctx, "GET", "/api/v1/deployments?behind=latest&limit=2&after="+page.Next, nil, &page); err != nil {
		t.Fatal(err)
	}
	if page.Total != 3 || len(page.Items) != 1 || page.Items[0].ID != "initech" || page.Next != "" {
		t.Fatalf("second page of behind=latest: total %d, items %v, next %q", page.Total, page.Items, page.Next)
	}
	var s apitypes.Summary
	if err := f.viewer.Do(ctx, "GET", "/api/v1/summary?behind=latest", nil, &s); err != nil {
		t.Fatal(err)
	}
	if s.Total != 3 || s.Pinned != 1 || s.Behind[fleet.BehindPullPending] != 1 || s.Behind[fleet.BehindManualApply] != 1 || s.ByRelease["1.0"] != 2 {
		t.Fatalf("summary of behind=latest: %+v", s)
	}
}

// TestOverlappingPinChangesConflict holds one change inside its store write,
// sends overlapping ones through the API (409, nothing of theirs applied), then
// lets the first finish: it applies to every deployment it selected.
func TestOverlappingPinChangesConflict(t *testing.T) {
	ctx := context.Background()
	f := newPinFleet(t)
	entered, release := f.st.hold()
	type answer struct {
		res apitypes.PinResult
		err error
	}
	first := make(chan answer, 1)
	go func() {
		res, err := f.op.ChangePins(ctx, apitypes.PinRequest{Action: "pin", Release: "1.0", Reason: "freeze app", Filter: &apitypes.PinFilter{Stack: "app"}})
		first <- answer{res, err}
	}()
	select {
	case <-entered:
	case a := <-first:
		t.Fatalf("the first change finished before it was held: %+v, %v", a.res, a.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the first change never reached the store")
	}
	for name, second := range map[string]func() error{
		"one deployment": func() error { _, err := f.op.PinDeployment(ctx, "globex", "1.1", "hotfix"); return err },
		"the whole fleet": func() error {
			_, err := f.op.ChangePins(ctx, apitypes.PinRequest{Action: "unpin", All: true})
			return err
		},
	} {
		var ae *apiclient.Error
		if err := second(); !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "conflict" || !strings.Contains(ae.Message, "retry") {
			t.Fatalf("overlapping change of %s: %v; want 409 conflict", name, err)
		}
	}
	release()
	a := <-first
	if a.err != nil {
		t.Fatal(a.err)
	}
	if got := changedIDs(a.res); !reflect.DeepEqual(got, []string{"acme-dr", "acme-prod", "globex", "initech"}) {
		t.Fatalf("the held change applied to %v", got)
	}
	want := map[string]string{"acme-prod": "1.0", "acme-dr": "1.0", "globex": "1.0", "initech": "1.0", "acme-db": ""}
	if pins := f.pins(t); !reflect.DeepEqual(pins, want) {
		t.Fatalf("pins %v, want %v", pins, want)
	}
	hist, err := f.viewer.PinHistory(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 {
		t.Fatalf("audit trail has %d entries, want the held change's 4", len(hist))
	}
	for _, h := range hist {
		if h.ChangeID != a.res.ChangeID || h.Reason != "freeze app" {
			t.Errorf("audit entry %+v is not the held change's", h)
		}
	}
	// Once it is done, the deployments can be changed again.
	if res, err := f.op.PinDeployment(ctx, "globex", "1.1", "hotfix"); err != nil || len(res.Changed) != 1 {
		t.Fatalf("change after the held one finished: %+v, %v", res, err)
	}
}

// TestOpenAPIDocumentsFilterParameters checks that every route reading the
// deployment filter documents all of its parameters.
func TestOpenAPIDocumentsFilterParameters(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In string }
		}
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	filter := []string{"behind", "cloud", "customer", "label", "pinned", "q", "region", "release", "stack", "status"}
	for path, extra := range map[string][]string{
		"/api/v1/deployments": {"after", "before", "limit", "order"}, "/api/v1/summary": nil, "/api/v1/deployments/behind": nil,
	} {
		var got []string
		for _, p := range doc.Paths[path]["get"].Parameters {
			if p.In == "query" {
				got = append(got, p.Name)
			}
		}
		want := append(slices.Clone(filter), extra...)
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("GET %s documents %v, want %v", path, got, want)
		}
	}
}
