package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// regFleet is the rollout engine's view of the fixture's registry, as the
// manager wires it: members with their status, pins through registry.Pin.
type regFleet struct{ reg *registry.Registry }

func (f regFleet) Members(stack string) []rollouts.Member {
	views, _ := f.reg.List(fleet.Filter{Stack: stack}, registry.Page{})
	out := make([]rollouts.Member, 0, len(views))
	for _, v := range views {
		d := v.Deployment
		out = append(out, rollouts.Member{Subject: rolloutplan.Subject{ID: d.ID, Customer: d.Customer, Labels: d.Labels}, Stack: d.Stack,
			Latest: v.Evaluation.Latest, Running: d.RunningRelease, Pin: d.Pin, Status: v.Evaluation.Status, ReasonCode: v.Evaluation.ReasonCode,
			Update: d.Update, Regression: d.Regression})
	}
	return out
}

func (f regFleet) Pin(ctx context.Context, ids []string, release, actor, reason string) error {
	_, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: ids}, Action: fleet.ActionPin, Release: release, By: actor, Reason: reason})
	return err
}

func (f regFleet) Unpin(ctx context.Context, ids []string, actor, reason string) error {
	_, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: ids}, Action: fleet.ActionUnpin, By: actor, Reason: reason})
	return err
}

func (regFleet) NotifyRollout(context.Context, rollouts.Notice) {}

// rolloutFixture is the dashboard with a rollout engine over the fixture's
// registry and store. Stack "shop" has canary-1 and canary-2 (ring=canary)
// and main-1 and main-2 on 1.0.0; its plan bakes the canaries an hour, then
// takes the rest. Release 2.0.0 is rolling out: the canary wave is open,
// canary-1 runs 2.0.0 and canary-2's update to it failed, so the rollout
// halted and pinned canary-2 back to 1.0.0.
func rolloutFixture(t testing.TB) (*fixture, *rollouts.Engine, string) {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t, web.Settings{})
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	var nds []registry.NewDeployment
	for _, id := range []string{"canary-1", "canary-2", "main-1", "main-2"} {
		ring := strings.TrimSuffix(strings.TrimSuffix(id, "-1"), "-2")
		nds = append(nds, registry.NewDeployment{ID: id, Customer: "cust-" + id, Stack: "shop", Labels: map[string]string{"ring": ring}})
	}
	if _, err := f.reg.CreateDeployments(ctx, nds); err != nil {
		t.Fatal(err)
	}
	accepts := true
	checkin := func(id string, r registry.Report) {
		t.Helper()
		r.Mode, r.AcceptsReleases = fleet.ModePull, &accepts
		if _, err := f.reg.Checkin(id, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range nds {
		checkin(nd.ID, registry.Report{Description: &registry.Description{Release: "1.0.0"}})
	}
	plan := rolloutplan.Plan{Stack: "shop", Waves: []rolloutplan.Wave{
		{Name: "canary", Select: rolloutplan.Selection{Labels: map[string]string{"ring": "canary"}}, Bake: rolloutplan.Duration(time.Hour)},
		{Name: "rest", Select: rolloutplan.Selection{Rest: true}}}}
	rf := regFleet{f.reg}
	eng, err := rollouts.New(rolloutplan.Config{Plans: []rolloutplan.Plan{plan}}, rf, rf, rf, f.st, rollouts.Settings{Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Load(ctx); err != nil {
		t.Fatal(err)
	}
	f.web, err = web.New(f.reg, f.keys, web.Settings{Clock: f.clk, Telemetry: f.tel, Audit: f.st, Commands: f.cmds, Rollouts: eng})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.web.Close)
	f.h = f.web.Handler()

	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	st, err := eng.StartRollout(ctx, rollouts.StartRequest{Stack: "shop", Release: "2.0.0", Baseline: "1.0.0",
		Actor: rollouts.Actor{Name: "release-bot", Role: "operator", Reason: "2.0.0 published"}})
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute)
	checkin("canary-1", registry.Report{Description: &registry.Description{Release: "2.0.0"}})
	checkin("canary-2", registry.Report{Update: &fleet.UpdateState{Phase: fleet.UpdateFailed, Release: "2.0.0", Error: "hook exited 1"}})
	if err := eng.Step(ctx); err != nil {
		t.Fatal(err)
	}
	return f, eng, st.ID
}

func TestRolloutPageShowsWavesGatesHaltAndTimeline(t *testing.T) {
	f, _, id := rolloutFixture(t)
	b := f.signIn(auth.RoleViewer)

	// The releases page lists the stack's rollout, halted, with why.
	res := b.get("/releases")
	if res.Code != http.StatusOK {
		t.Fatalf("releases page: %d", res.Code)
	}
	shop := section(t, body(t, res), "shop")
	if !strings.Contains(shop, `<tr data-rollout="`+id+`">`) || !strings.Contains(shop, `href="/rollouts/`+id+`"`) {
		t.Fatalf("the shop section does not link rollout %s:\n%s", id, shop)
	}
	if !strings.Contains(shop, ">halted</span>") || !strings.Contains(shop, "gate failed_updates failed: 1 of 2") {
		t.Errorf("the shop section does not say the rollout halted on failed updates:\n%s", shop)
	}

	page := body(t, b.get("/rollouts/"+id))
	for _, want := range []string{
		`data-phase="halted"`, // the rollout's badge
		`<li class="wave" data-wave="canary" data-phase="halted">`, // the wave that halted
		`<li class="wave" data-wave="rest" data-phase="waiting">`,  // the next one never opened
		`<a class="id" href="/deployments/canary-1">canary-1</a>`,  // members link to their page
		`<tr data-deployment="canary-2" class="offender">`,         // the offender is marked
		`pinned 1.0.0`, // and pinned back
		`<li class="gate fail" data-gate="failed updates">`, // the gate in red
		`<li class="gate pass" data-gate="regressed">`,      // the others green
		`id="rollout-halt"`, `gate failed_updates failed: 1 of 2 deployments failed to update to 2.0.0`,
		`data-kind="halted"`, `data-kind="started"`, // the timeline
		`ring=canary · bake 1h`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the rollout page lacks %q", want)
		}
	}
	// A viewer sees no action forms.
	if strings.Contains(page, `id="resume-form"`) || !strings.Contains(page, "an operator can resume") {
		t.Error("a viewer is offered the operator's actions")
	}
	if res := b.get("/rollouts/ro-nosuch"); res.Code != http.StatusNotFound {
		t.Errorf("an unknown rollout answers %d, want 404", res.Code)
	}
}

func TestRolloutActionsAreAuditedWithWhoAndWhy(t *testing.T) {
	f, eng, id := rolloutFixture(t)
	ctx := context.Background()

	// A viewer may not act; a form without the CSRF token is refused.
	viewer := f.signIn(auth.RoleViewer)
	if res := viewer.post("/rollouts/"+id+"/resume", url.Values{"csrf": {viewer.csrf()}, "reason": {"go"}}); res.Code != http.StatusForbidden {
		t.Errorf("a viewer's resume answers %d, want 403", res.Code)
	}
	op := f.signIn(auth.RoleOperator)
	if res := op.post("/rollouts/"+id+"/resume", url.Values{"reason": {"go"}}); res.Code != http.StatusForbidden {
		t.Errorf("a resume without the CSRF token answers %d, want 403", res.Code)
	}
	page := body(t, op.get("/rollouts/"+id))
	if !strings.Contains(page, `id="resume-form"`) || !strings.Contains(page, `id="abort-form"`) || !strings.Contains(page, `<option >main-1</option>`) {
		t.Fatalf("the operator is not offered resume, abort and skip of main-1:\n%s", page)
	}
	csrf := op.csrf()

	// Without a reason nothing changes, and the page says so.
	res := op.post("/rollouts/"+id+"/resume", url.Values{"csrf": {csrf}, "reason": {"  "}})
	if res.Code != http.StatusBadRequest || !strings.Contains(body(t, res), "say why") {
		t.Errorf("a resume without a reason answers %d, want 400 saying why", res.Code)
	}
	if st, _ := eng.Get(ctx, id); st.Phase != rollouts.PhaseHalted {
		t.Fatalf("the rollout is %s after a refused resume, want halted", st.Phase)
	}

	// Skip main-2, then resume: both through the engine, with who and why.
	res = op.post("/rollouts/"+id+"/skip", url.Values{"csrf": {csrf}, "deployment": {"main-2"}, "reason": {"customer freeze"}})
	if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/rollouts/"+id+"?done=skip" {
		t.Fatalf("skip answers %d to %q", res.Code, res.Header().Get("Location"))
	}
	res = op.post("/rollouts/"+id+"/resume", url.Values{"csrf": {csrf}, "reason": {"hook fixed on canary-2's side"}})
	if res.Code != http.StatusSeeOther {
		t.Fatalf("resume answers %d", res.Code)
	}
	page = body(t, op.get(res.Header().Get("Location")))
	if !strings.Contains(page, `id="rollout-done"`) || !strings.Contains(page, `data-phase="running"`) || !strings.Contains(page, `data-kind="resumed"`) {
		t.Errorf("after resume the page does not show it running with the resume on its timeline")
	}
	// canary-1 runs 2.0.0 and canary-2 is pinned back: the wave bakes, and
	// the page counts its time down.
	f.clk.Advance(15 * time.Minute)
	page = body(t, op.get("/rollouts/"+id))
	if !strings.Contains(page, `data-wave="canary" data-phase="baking"`) || !strings.Contains(page, "45m of bake left") {
		t.Errorf("15 minutes into the canary's hour of bake, the page does not say 45m are left")
	}
	st, err := eng.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != rollouts.PhaseRunning || len(st.Skipped) != 1 || st.Skipped[0] != "main-2" {
		t.Errorf("rollout is %s skipping %v, want running skipping main-2", st.Phase, st.Skipped)
	}
	for action, reason := range map[string]string{store.ActionRolloutSkip: "customer freeze", store.ActionRolloutResume: "hook fixed on canary-2's side"} {
		es, _, err := f.st.ListAudit(ctx, store.AuditFilter{Action: action})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 || es[0].Actor != "alice-operator" || es[0].ActorRole != string(auth.RoleOperator) || es[0].Reason != reason {
			t.Errorf("audit of %s: %+v, want one entry by alice-operator saying %q", action, es, reason)
		}
	}

	// Abort pins canary-1 back; the page then offers no action.
	res = op.post("/rollouts/"+id+"/abort", url.Values{"csrf": {csrf}, "reason": {"2.0.0 corrupts carts"}})
	if res.Code != http.StatusSeeOther {
		t.Fatalf("abort answers %d", res.Code)
	}
	page = body(t, op.get("/rollouts/"+id))
	if !strings.Contains(page, `data-phase="aborted"`) || strings.Contains(page, `id="abort-form"`) {
		t.Error("after abort the page does not show it aborted, or still offers abort")
	}
	if v, err := f.reg.Get("canary-1"); err != nil || v.Deployment.Pin == nil || v.Deployment.Pin.Release != "1.0.0" {
		t.Errorf("canary-1 after abort: %+v, %v; want pinned to 1.0.0", v.Deployment.Pin, err)
	}
	// A second abort is refused in words.
	res = op.post("/rollouts/"+id+"/abort", url.Values{"csrf": {csrf}, "reason": {"again"}})
	if res.Code != http.StatusBadRequest || !strings.Contains(body(t, res), "only one under way can be aborted") {
		t.Errorf("a second abort answers %d, want 400 saying why", res.Code)
	}
}

// FuzzRolloutPages sends an operator's arbitrary requests to the rollout page
// and its actions over a halted rollout: no request may fail the server (5xx
// other than 503) nor come back as markup.
func FuzzRolloutPages(f *testing.F) {
	fx, _, id := rolloutFixture(f)
	op := fx.signIn(auth.RoleOperator)
	csrf := op.csrf()
	for _, s := range []struct {
		post        bool
		path, query string
	}{
		{false, "/rollouts/" + id, "done=" + url.QueryEscape(marker)},
		{false, "/rollouts/" + url.PathEscape(marker+">"), ""},
		{false, "/releases", ""},
		{true, "/rollouts/" + id + "/skip", "deployment=" + url.QueryEscape(marker+">") + "&reason=" + url.QueryEscape(marker+">")},
		{true, "/rollouts/" + id + "/skip", "deployment=main-1&reason=" + strings.Repeat("x", 2000)},
		{true, "/rollouts/" + id + "/resume", "reason=" + url.QueryEscape(marker+">")},
		{true, "/rollouts/" + id + "/abort", "reason=%ff%fe"},
		{true, "/rollouts/" + url.PathEscape(marker) + "/abort", "reason=r"},
	} {
		f.Add(s.post, s.path, s.query)
	}
	f.Fuzz(func(t *testing.T, post bool, path, query string) { fuzzRequest(t, op, csrf, post, path, query) })
}
