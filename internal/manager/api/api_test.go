package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
)

const admin = "psk_api-test-admin"

func start(t testing.TB) *manager.Manager {
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", t.TempDir(), admin
	m, err := manager.New(cfg, manager.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

func TestRolesAndErrors(t *testing.T) {
	ctx := context.Background()
	m := start(t)
	adm := apiclient.New(m.URL(), admin)
	viewer, operator := newToken(t, adm, "dash", "viewer"), newToken(t, adm, "ci", "operator")
	create := apitypes.NewDeployment{ID: "acme", Customer: "acme", Stack: "app"}
	for _, tc := range []struct {
		name   string
		token  string
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"no token", "", "GET", "/api/v1/deployments", nil, 401, "unauthenticated"},
		{"unknown token", "psk_nope", "GET", "/api/v1/deployments", nil, 401, "unauthenticated"},
		{"deployment token is not an API token", "pdt_x", "GET", "/api/v1/summary", nil, 401, "unauthenticated"},
		{"viewer cannot create", viewer.Secret, "POST", "/api/v1/deployments", create, 403, "forbidden"},
		{"operator cannot manage tokens", operator.Secret, "GET", "/api/v1/tokens", nil, 403, "forbidden"},
		{"operator creates", operator.Secret, "POST", "/api/v1/deployments", create, 201, ""},
		{"duplicate id", operator.Secret, "POST", "/api/v1/deployments", create, 409, "conflict"},
		{"bad id", operator.Secret, "POST", "/api/v1/deployments", apitypes.NewDeployment{ID: "Not Valid!", Customer: "x"}, 400, "invalid"},
		{"unknown field", operator.Secret, "POST", "/api/v1/releases", map[string]string{"stack": "app", "version": "1", "colour": "red"}, 400, "invalid"},
		{"unknown deployment", viewer.Secret, "GET", "/api/v1/deployments/ghost", nil, 404, "not_found"},
		{"bad status filter", viewer.Secret, "GET", "/api/v1/deployments?status=sad", nil, 400, "invalid"},
		{"bad order", viewer.Secret, "GET", "/api/v1/deployments?order=newest", nil, 400, "invalid"},
		{"cursor of another order", viewer.Secret, "GET", "/api/v1/deployments?order=problems&after=acme", nil, 400, "invalid"},
		{"unknown endpoint", viewer.Secret, "GET", "/api/v1/nothing", nil, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := apiclient.New(m.URL(), tc.token).Do(ctx, tc.method, tc.path, tc.body, nil)
			var ae *apiclient.Error
			switch {
			case tc.status < 300 && err != nil:
				t.Fatalf("want success, got %v", err)
			case tc.status >= 300 && (!errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code || ae.Message == ""):
				t.Fatalf("want %d %s with a message, got %v", tc.status, tc.code, err)
			}
		})
	}
	// A revoked token stops working at once.
	if err := adm.Do(ctx, "DELETE", "/api/v1/tokens/"+viewer.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := apiclient.New(m.URL(), viewer.Secret).Do(ctx, "GET", "/api/v1/summary", nil, nil); err == nil {
		t.Fatal("revoked token still accepted")
	}
}

func TestPagingAndBatchCreate(t *testing.T) {
	ctx := context.Background()
	m := start(t)
	c := apiclient.New(m.URL(), admin)
	var nds []apitypes.NewDeployment
	for i := 0; i < 25; i++ {
		nds = append(nds, apitypes.NewDeployment{ID: fmt.Sprintf("d%02d", 24-i), Customer: []string{"a", "b"}[i%2], Stack: "app"})
	}
	created, err := c.CreateDeployments(ctx, nds)
	if err != nil || len(created) != 25 || created[0].Token == "" {
		t.Fatalf("batch create: %d, %v", len(created), err)
	}
	// A batch with one duplicate creates none.
	if _, err := c.CreateDeployments(ctx, []apitypes.NewDeployment{{ID: "fresh", Customer: "a"}, {ID: "d03", Customer: "a"}}); err == nil {
		t.Fatal("batch with a duplicate id accepted")
	}
	var seen []string
	after := ""
	for pages := 0; ; pages++ {
		var page apitypes.DeploymentList
		if err := c.Do(ctx, "GET", "/api/v1/deployments?customer=a&limit=5&after="+after, nil, &page); err != nil {
			t.Fatal(err)
		}
		if page.Total != 13 {
			t.Fatalf("total = %d, want 13 deployments of customer a", page.Total)
		}
		for _, d := range page.Items {
			seen = append(seen, d.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(seen) != 13 || !sort.StringsAreSorted(seen) || seen[0] != "d00" {
		t.Fatalf("paged ids = %v; want the 13 ids of customer a in order", seen)
	}
	if all, _ := c.Deployments(ctx, apiclient.Filter{}); len(all) != 25 {
		t.Fatalf("%d deployments, want 25 (the refused batch must add none)", len(all))
	}
	// Problems first (all are pending here, so by id), paged forward then back.
	var p1, p2, back apitypes.DeploymentList
	if err := c.Do(ctx, "GET", "/api/v1/deployments?order=problems&limit=10", nil, &p1); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "GET", "/api/v1/deployments?order=problems&limit=10&after="+p1.Next, nil, &p2); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "GET", "/api/v1/deployments?order=problems&limit=10&before="+p2.Prev, nil, &back); err != nil {
		t.Fatal(err)
	}
	if p1.Offset != 0 || p1.Prev != "" || p2.Offset != 10 || p2.Items[0].ID != "d10" || back.Offset != 0 || back.Items[0].ID != "d00" || back.Next != p1.Next {
		t.Fatalf("problems order: first page offset %d prev %q; second offset %d from %s; back offset %d from %s next %q (want %q)",
			p1.Offset, p1.Prev, p2.Offset, p2.Items[0].ID, back.Offset, back.Items[0].ID, back.Next, p1.Next)
	}
}

// TestOpenAPIMatchesRoutesAndTypes keeps /api/v1/openapi.json true: every route is
// documented with its method and vice versa, and the documented objects have
// exactly the fields the server sends.
func TestOpenAPIMatchesRoutesAndTypes(t *testing.T) {
	m := start(t)
	resp, err := http.Get(m.URL() + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, r := range api.New(nil, nil, nil).Routes() {
		served[r.Method+" "+r.Path] = true
		if !documented[r.Method+" "+r.Path] {
			t.Errorf("%s %s is served but not documented", r.Method, r.Path)
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("%s is documented but not served", op)
		}
	}
	for name, v := range map[string]any{
		"Deployment": apitypes.Deployment{}, "DeploymentList": apitypes.DeploymentList{}, "NewDeployment": apitypes.NewDeployment{},
		"Release": apitypes.Release{}, "NewRelease": apitypes.NewRelease{}, "Summary": apitypes.Summary{}, "Event": apitypes.Event{},
		"Token": apitypes.Token{}, "NewToken": apitypes.NewToken{},
		"Context": telquery.Context{}, "Log": telquery.Log{}, "LogPage": telquery.LogPage{}, "Span": telquery.Span{}, "SpanEvent": telquery.SpanEvent{},
		"SpanPage": telquery.SpanPage{}, "Trace": telquery.Trace{}, "Stats": telquery.Stats{}, "REDPoint": telquery.REDPoint{},
		"REDSeries": telquery.REDSeries{}, "RED": telquery.RED{}, "ReleaseWindow": telquery.ReleaseWindow{},
		"Comparison": telquery.Comparison{}, "MetricPoint": telquery.MetricPoint{}, "MetricSeries": telquery.MetricSeries{},
		"Metric": telquery.Metric{}, "Regression": apitypes.Regression{}, "NewPin": apitypes.NewPin{}, "PinReason": apitypes.PinReason{},
		"PinRequest": apitypes.PinRequest{}, "PinFilter": apitypes.PinFilter{}, "PinChange": apitypes.PinChange{},
		"PinResult": apitypes.PinResult{}, "Adoption": apitypes.Adoption{}, "ReleaseAdoption": apitypes.ReleaseAdoption{},
		"BehindDeployment": apitypes.BehindDeployment{},
		"TokenRotation":    apitypes.TokenRotation{}, "RotatedToken": apitypes.RotatedToken{}, "TokenRevocation": apitypes.TokenRevocation{},
		"DeploymentDeletion": apitypes.DeploymentDeletion{}, "DeploymentChange": apitypes.DeploymentChange{},
		"Invocation": apitypes.Invocation{}, "InvocationList": apitypes.InvocationList{}, "NewInvocation": apitypes.NewInvocation{},
		"CommandSelection": apitypes.CommandSelection{}, "CommandCancel": apitypes.CommandCancel{},
		"ErrorRates": telquery.ErrorRates{}, "ErrorRateSeries": telquery.ErrorRateSeries{}, "ErrorRatePoint": telquery.ErrorRatePoint{},
		"AuditEntry": apitypes.AuditEntry{}, "AuditPage": apitypes.AuditPage{},
		"Runtime": apitypes.Runtime{}, "RuntimeComponent": runtimeview.Component{}, "RuntimeSource": runtimeview.Source{},
		"RuntimeRoute": runtimeview.Route{}, "RuntimeQueue": runtimeview.Queue{}, "RuntimeStorage": runtimeview.Storage{},
		"RuntimeBucket": runtimeview.Bucket{}, "RuntimeRedis": runtimeview.Redis{}, "RuntimeDatabase": runtimeview.Database{},
		"RuntimeTable": runtimeview.Table{}, "RuntimeFilesystem": runtimeview.Filesystem{},
		"Thresholds": apitypes.Thresholds{}, "NewThresholds": apitypes.NewThresholds{},
		"Rollout": apitypes.Rollout{}, "RolloutList": apitypes.RolloutList{}, "NewRollout": apitypes.NewRollout{},
		"RolloutAction": apitypes.RolloutAction{}, "RolloutPlans": apitypes.RolloutPlans{}, "NewRolloutPlan": apitypes.NewRolloutPlan{},
		"RolloutWave": rollouts.WaveState{}, "RolloutFigures": rollouts.Figures{}, "RolloutHalt": rollouts.Halt{},
		"RolloutPinOrder": rollouts.PinOrder{}, "RolloutEvent": rollouts.Event{}, "RolloutPlan": rolloutplan.Plan{},
		"RolloutWaveSpec": rolloutplan.Wave{}, "RolloutSelection": rolloutplan.Selection{}, "RolloutGates": rolloutplan.Gates{},
		"RolloutThreshold": rolloutplan.Threshold{},
		"UpdateWindows":    apitypes.UpdateWindows{}, "UpdateWindowsList": apitypes.UpdateWindowsList{}, "NewUpdateWindows": apitypes.NewUpdateWindows{},
	} {
		want := jsonFields(reflect.TypeOf(v))
		got := []string{}
		for k := range doc.Components.Schemas[name].Properties {
			got = append(got, k)
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("schema %s documents %v; the type sends %v", name, got, want)
		}
	}
	// The telemetry endpoints document exactly the parameters their query type
	// encodes (each query sets every field that endpoint uses).
	f := telquery.Filter{Deployment: "d", Customer: "c", Cloud: "aws", Region: "r", Release: "1", Stack: "s", Service: "api", Function: "f"}
	timed := f
	timed.Since, timed.Until = time.Unix(1, 0), time.Unix(2, 0)
	logs := telquery.LogQuery{Filter: f, MinSeverity: 9, Contains: "x", Attrs: map[string]string{"k": "v"}, TraceID: "t"}
	for path, q := range map[string]interface{ Values() url.Values }{
		"/api/v1/logs/tail": logs,
		"/api/v1/logs": telquery.LogQuery{Filter: timed, MinSeverity: 9, Contains: "x", Attrs: map[string]string{"k": "v"}, TraceID: "t",
			Limit: 1, Cursor: "c"},
		"/api/v1/spans":                    telquery.SpanQuery{Filter: timed, Name: "n", ErrorsOnly: true, MinDuration: 1, RootsOnly: true, Limit: 1, Cursor: "c"},
		"/api/v1/red":                      telquery.REDQuery{Filter: timed, Step: time.Minute, GroupBy: "release", Raw: true},
		"/api/v1/releases/compare":         telquery.CompareQuery{Filter: f, Window: time.Hour, Against: "0.9"},
		"/api/v1/metrics/series":           telquery.MetricQuery{Filter: timed, Name: "m", GroupBy: "g", Step: time.Minute, Agg: "max"},
		"/api/v1/deployments/{id}/runtime": telquery.RuntimeQuery{Deployment: "d", Since: timed.Since, Until: timed.Until},
		"/api/v1/error-rates":              telquery.ErrorRateQuery{Deployments: []string{"d"}, Since: timed.Since, Until: timed.Until},
		"/api/v1/audit": apitypes.AuditQuery{Actor: "a", Action: "pin.", Deployment: "d", Customer: "c", Outcome: "o", Since: "1h",
			Until: "2026-11-24T10:00:00Z", Limit: 1, Cursor: "c"},
	} {
		var get struct {
			Parameters []struct{ Name, In string }
		}
		if err := json.Unmarshal(doc.Paths[path]["get"], &get); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		got, want := []string{}, []string{}
		for _, p := range get.Parameters {
			if p.In == "query" {
				got = append(got, p.Name)
			}
		}
		for k := range q.Values() {
			want = append(want, k)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET %s documents parameters %v; the query sends %v", path, got, want)
		}
	}
}

// jsonFields lists the object keys encoding/json writes for a struct type.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
		case name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct:
			// encoding/json lifts the fields of an untagged embedded struct
			// (REDPoint's Stats) into the parent object.
			out = append(out, jsonFields(f.Type)...)
		case name == "":
			out = append(out, f.Name)
		default:
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Registering a deployment on a stack with no release is accepted (stacks
// exist by publishing a release, which may come later) but the answer warns,
// naming the stack it most likely meant; a known stack gets no warning.
func TestCreateDeploymentWarnsOfAStackWithoutRelease(t *testing.T) {
	ctx := context.Background()
	m := start(t)
	adm := apiclient.New(m.URL(), admin)
	if _, err := adm.CreateRelease(ctx, apitypes.NewRelease{Stack: "analytics", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	d, err := adm.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme", Customer: "acme", Stack: "analytics"})
	if err != nil || len(d.Warnings) != 0 {
		t.Fatalf("a known stack: %v, warnings %q", err, d.Warnings)
	}
	d, err = adm.CreateDeployment(ctx, apitypes.NewDeployment{ID: "globex", Customer: "globex", Stack: "analytcs"})
	if err != nil || len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], `stack "analytcs" has no release yet`) ||
		!strings.Contains(d.Warnings[0], `did you mean "analytics"?`) {
		t.Fatalf("a mistyped stack: %v, warnings %q", err, d.Warnings)
	}
	ds, err := adm.CreateDeployments(ctx, []apitypes.NewDeployment{{ID: "a1", Stack: "analytics"}, {ID: "a2", Stack: "nosuch"}})
	if err != nil || len(ds) != 2 || len(ds[0].Warnings) != 0 || len(ds[1].Warnings) != 1 || !strings.Contains(ds[1].Warnings[0], "known stacks: analytics") {
		t.Fatalf("batch: %v, %+v", err, ds)
	}
	if got, err := adm.Deployment(ctx, "globex"); err != nil || got.Warnings != nil {
		t.Fatalf("a later read carries the creation's warnings: %v %q", err, got.Warnings)
	}
}
