package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/manager/rollouts/rolloutstest"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

func TestRolloutsOverTheAPI(t *testing.T) {
	ctx := context.Background()
	plan := rolloutstest.TwoWaves()
	srv := rolloutstest.NewServer(t, plan, clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)),
		rolloutstest.Member("canary-1", "canary"), rolloutstest.Member("main-1", "main"))
	f, st, eng := srv.Fleet, srv.Store, srv.Engine
	viewer, op := apiclient.New(srv.URL, "psk_viewer"), apiclient.New(srv.URL, "psk_operator")

	expectAPIErrors(t, []apiErrorCase{
		{"a viewer may not start one", viewer, "POST", "/api/v1/rollouts", apitypes.NewRollout{Stack: "shop", Release: "2.0.0"}, 403, "operator"},
		{"a stack without a plan", op, "POST", "/api/v1/rollouts", apitypes.NewRollout{Stack: "billing", Release: "2.0.0"}, 409, "no rollout plan"},
		{"urgent needs a reason", op, "POST", "/api/v1/rollouts", apitypes.NewRollout{Stack: "shop", Release: "2.0.0", Urgent: true}, 400, "urgent"},
		{"an unknown rollout", viewer, "GET", "/api/v1/rollouts/ro-nope", nil, 404, "ro-nope"},
		{"a bad limit", viewer, "GET", "/api/v1/rollouts?limit=0", nil, 400, "limit"},
		{"a plan without waves", op, "PUT", "/api/v1/rollout-plans/shop", apitypes.NewRolloutPlan{Reason: "x"}, 400, "a plan needs at least one wave"},
	})

	var ro apitypes.Rollout
	if err := op.Do(ctx, "POST", "/api/v1/rollouts", apitypes.NewRollout{Stack: "shop", Release: "2.0.0", Baseline: "1.0.0", Reason: "published"}, &ro); err != nil {
		t.Fatal(err)
	}
	if ro.Phase != rollouts.PhaseRunning || len(ro.Waves) != 2 || len(ro.Waves[0].Members) != 1 || ro.StartedBy != "operator-token" {
		t.Fatalf("started %+v", ro)
	}
	var list apitypes.RolloutList
	if err := viewer.Do(ctx, "GET", "/api/v1/rollouts?stack=shop&unfinished=true", nil, &list); err != nil || len(list.Rollouts) != 1 || list.Rollouts[0].ID != ro.ID {
		t.Fatalf("list %+v, %v", list, err)
	}
	if err := op.Do(ctx, "POST", "/api/v1/rollouts/"+ro.ID+"/skip", apitypes.RolloutAction{Reason: "x"}, nil); err == nil || !strings.Contains(err.Error(), "deployment") {
		t.Errorf("skip without a deployment: %v", err)
	}
	if err := op.Do(ctx, "POST", "/api/v1/rollouts/"+ro.ID+"/resume", apitypes.RolloutAction{Reason: "x"}, nil); err == nil || !strings.Contains(err.Error(), "only a halted rollout resumes") {
		t.Errorf("resume of a running rollout: %v", err)
	}
	if err := op.Do(ctx, "POST", "/api/v1/rollouts/"+ro.ID+"/skip", apitypes.RolloutAction{Deployment: "canary-1", Reason: "frozen by the customer"}, &ro); err != nil {
		t.Fatal(err)
	}
	if len(ro.Skipped) != 1 || ro.Skipped[0] != "canary-1" {
		t.Errorf("skipped %v", ro.Skipped)
	}
	if err := op.Do(ctx, "POST", "/api/v1/rollouts/"+ro.ID+"/abort", apitypes.RolloutAction{Reason: "wrong build"}, &ro); err != nil {
		t.Fatal(err)
	}
	if ro.Phase != rollouts.PhaseAborted {
		t.Errorf("after abort: %s", ro.Phase)
	}
	if n := f.Notices(); len(n) != 1 || n[0].Kind != rollouts.NoticeAborted || !strings.Contains(n[0].Reason, "wrong build") {
		t.Errorf("notices %+v", n)
	}
	entries, _, err := st.ListAudit(ctx, store.AuditFilter{Action: store.ActionRolloutPrefix, Actor: "operator-token", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+": "+e.Reason)
	}
	if strings.Join(actions, "; ") != "rollout.abort: wrong build; rollout.skip: frozen by the customer; rollout.start: published" {
		t.Errorf("audited %q", actions)
	}

	var plans apitypes.RolloutPlans
	if err := op.Do(ctx, "PUT", "/api/v1/rollout-plans/shop", apitypes.NewRolloutPlan{Waves: plan.Waves[1:], Reason: "one wave"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := viewer.Do(ctx, "GET", "/api/v1/rollout-plans", nil, &plans); err != nil || len(plans.Plans) != 1 || len(plans.Plans[0].Waves) != 1 {
		t.Fatalf("plans %+v, %v", plans, err)
	}
	if err := op.Do(ctx, "DELETE", "/api/v1/rollout-plans/shop", apitypes.RolloutAction{Reason: "back to the file"}, nil); err != nil {
		t.Fatal(err)
	}
	if p, _ := eng.Plan("shop"); len(p.Waves) != 2 {
		t.Errorf("after removing the API's plan: %d waves", len(p.Waves))
	}
}

func TestManagerServesRollouts(t *testing.T) {
	m := start(t)
	var got apitypes.RolloutList
	if err := apiclient.New(m.URL(), admin).Do(context.Background(), "GET", "/api/v1/rollouts", nil, &got); err != nil {
		t.Fatalf("GET /api/v1/rollouts on a manager: %v", err)
	}
	if len(got.Rollouts) != 0 {
		t.Errorf("a fresh manager lists rollouts: %+v", got.Rollouts)
	}
}

// Update windows over the API: set with a reason, listed with their source,
// refused when invalid or unexplained, removed, each change audited.
func TestUpdateWindowsOverTheAPI(t *testing.T) {
	ctx := context.Background()
	srv := rolloutstest.NewServer(t, rolloutstest.TwoWaves(), clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)),
		rolloutstest.Member("canary-1", "canary"))
	viewer, op := apiclient.New(srv.URL, "psk_viewer"), apiclient.New(srv.URL, "psk_operator")
	const acme = "/api/v1/update-windows/customers/acme"
	expectAPIErrors(t, []apiErrorCase{
		{"a viewer may not set them", viewer, "PUT", acme, json.RawMessage(`{"windows":["Sat 02:00-06:00 UTC"],"reason":"x"}`), 403, "operator"},
		{"a bad window", op, "PUT", acme, json.RawMessage(`{"windows":["Caturday 02:00-06:00 UTC"],"reason":"x"}`), 400, "Caturday"},
		{"no window", op, "PUT", acme, json.RawMessage(`{"windows":[],"reason":"x"}`), 400, "no window"},
		{"no reason", op, "PUT", acme, json.RawMessage(`{"windows":["Sat 02:00-06:00 UTC"]}`), 400, "reason"},
		{"too many", op, "PUT", acme, json.RawMessage(`{"windows":[` + strings.Repeat(`"Sat 02:00-06:00 UTC",`, 16) + `"Sun 02:00-06:00 UTC"],"reason":"x"}`), 400, "windows"},
		{"none of its own", viewer, "GET", "/api/v1/update-windows/deployments/canary-1", nil, 404, "no update windows"},
		{"nothing to remove", op, "DELETE", acme, apitypes.RolloutAction{Reason: "x"}, 404, "no update windows"},
	})
	got, err := op.SetUpdateWindows(ctx, "customer", "acme", apitypes.NewUpdateWindows{Windows: mustWindows(t, "Sat 02:00-06:00 Europe/Berlin"), Reason: "acme's change window"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "api" || got.UpdatedBy != "operator-token" || len(got.Windows) != 1 || got.Windows[0].String() != "Sat 02:00-06:00 Europe/Berlin" {
		t.Errorf("set: %+v", got)
	}
	list, err := viewer.UpdateWindows(ctx)
	if err != nil || len(list) != 1 || list[0].Owner != "acme" || list[0].Kind != "customer" {
		t.Errorf("list: %+v, %v", list, err)
	}
	if err := op.ClearUpdateWindows(ctx, "customer", "acme", "window lifted"); err != nil {
		t.Fatal(err)
	}
	if list, err := viewer.UpdateWindows(ctx); err != nil || len(list) != 0 {
		t.Errorf("list after clearing: %+v, %v", list, err)
	}
	entries, _, err := srv.Store.ListAudit(ctx, store.AuditFilter{Action: store.ActionUpdateWindows})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Actor != "operator-token" || entries[0].Target != "customer:acme" || entries[0].Reason != "window lifted" {
		t.Errorf("audit: %+v", entries)
	}
}

func mustWindows(t *testing.T, ss ...string) rolloutplan.Windows {
	t.Helper()
	var ws rolloutplan.Windows
	for _, s := range ss {
		w, err := rolloutplan.ParseWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	return ws
}

// apiErrorCase is a request the API must refuse with status, its message
// mentioning msg.
type apiErrorCase struct {
	name   string
	c      *apiclient.Client
	method string
	path   string
	body   any
	status int
	msg    string
}

func expectAPIErrors(t *testing.T, cases []apiErrorCase) {
	t.Helper()
	for _, tc := range cases {
		err := tc.c.Do(context.Background(), tc.method, tc.path, tc.body, nil)
		var ae *apiclient.Error
		if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(ae.Message, tc.msg) {
			t.Errorf("%s: %v; want %d mentioning %q", tc.name, err, tc.status, tc.msg)
		}
	}
}

// FuzzRolloutAPI sends hostile requests to the rollout, plan and update-window
// routes as an operator: whatever arrives is answered with a client error or
// success, never a server error, and the engine keeps serving.
func FuzzRolloutAPI(f *testing.F) {
	for _, s := range []struct{ method, target, body string }{
		{"POST", "/api/v1/rollouts", `{"stack":"shop","release":"2.0.0","baseline":"1.0.0","reason":"r"}`},
		{"POST", "/api/v1/rollouts", `{"stack":"shop","release":"2.0.0","urgent":true}`},
		{"GET", "/api/v1/rollouts?stack=shop&unfinished=true&limit=3", ""},
		{"GET", "/api/v1/rollouts/ro-0123456789ab", ""},
		{"POST", "/api/v1/rollouts/ro-0123456789ab/skip", `{"deployment":"canary-1","reason":"x"}`},
		{"POST", "/api/v1/rollouts/ro-0123456789ab/resume", `{"reason":"x"}`},
		{"POST", "/api/v1/rollouts/ro-0123456789ab/abort", `{"reason":"x"}`},
		{"GET", "/api/v1/rollout-plans", ""},
		{"PUT", "/api/v1/rollout-plans/shop", `{"waves":[{"name":"a","select":{"percent":50},"bake":"1h","gates":{"regressed":{"max":1,"max_percent":10}}},{"name":"b","select":{"rest":true}}],"reason":"r"}`},
		{"DELETE", "/api/v1/rollout-plans/shop", `{"reason":"r"}`},
		{"GET", "/api/v1/update-windows", ""},
		{"PUT", "/api/v1/update-windows/customers/acme", `{"windows":["Sat 02:00-06:00 Europe/Berlin"],"reason":"board"}`},
		{"PUT", "/api/v1/update-windows/deployments/canary-1", `{"windows":["Mon-Fri 22:00-04:00 Nowhere/Else"],"reason":"x"}`},
		{"DELETE", "/api/v1/update-windows/customers/acme", `{"reason":"x"}`},
	} {
		f.Add(s.method, s.target, []byte(s.body))
	}
	srv := rolloutstest.NewServer(f, rolloutstest.TwoWaves(), clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)),
		rolloutstest.Member("canary-1", "canary"), rolloutstest.Member("main-1", "main"))
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		req, err := http.NewRequest(method, srv.URL+target, bytes.NewReader(body))
		if err != nil || !(strings.HasPrefix(req.URL.Path, "/api/v1/rollout") || strings.HasPrefix(req.URL.Path, "/api/v1/update-windows")) {
			return // routes this target does not own
		}
		req.Header.Set("Authorization", "Bearer psk_operator")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, msg)
		}
	})
}
