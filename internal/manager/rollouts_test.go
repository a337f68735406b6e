package manager

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// TestUpdateWindowHoldsTheOfferUntilItOpens drives a manager on a fake clock
// through a customer's update window: the deployment shows outside-window
// with the window's start and is sent no offer; when the window opens the
// next rollout step releases the offer; an urgent rollout ignores the
// window, and the audit log says so.
func TestUpdateWindowHoldsTheOfferUntilItOpens(t *testing.T) {
	ctx := context.Background()
	sat, err := rolloutplan.ParseWindow("Sat 02:00-06:00 Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	monday := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	saturday := time.Date(2026, 12, 12, 1, 0, 0, 0, time.UTC) // 02:00 in Berlin
	clk := clock.NewFake(monday)
	cfg := testConfig(t)
	// Steps are taken by the test, at the instants it chooses.
	cfg.Rollouts.CheckEvery = config.Duration(time.Hour)
	cfg.Rollouts.Plans = []rolloutplan.Plan{{Stack: "shop", Waves: []rolloutplan.Wave{
		{Name: "everyone", Select: rolloutplan.Selection{Rest: true}, Bake: rolloutplan.Duration(time.Minute)}}}}
	cfg.Rollouts.Windows = rolloutplan.WindowSet{Customers: map[string]rolloutplan.Windows{"initech": {sat}}}
	m, reg, api := startOnClock(t, cfg, clk)

	if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "initech-prod", Customer: "initech", Stack: "shop"},
		{ID: "hooli-prod", Customer: "hooli", Stack: "shop"}}); err != nil {
		t.Fatal(err)
	}
	checkin := func(id string) { t.Helper(); agentCheckin(t, reg, id, "1.0") }
	view := func(id string) apitypes.Deployment {
		t.Helper()
		var d apitypes.Deployment
		if err := api.Do(ctx, "GET", "/api/v1/deployments/"+id, nil, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	checkin("initech-prod")
	checkin("hooli-prod")

	if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	if o, send := reg.Offer("hooli-prod"); !send || o.Release != "2.0" {
		t.Fatalf("hooli (no window) offered %q, send %v; want 2.0 now", o.Release, send)
	}
	if o, send := reg.Offer("initech-prod"); send || o.Release == "2.0" {
		t.Fatalf("initech outside its window offered %q, send %v; want nothing sent", o.Release, send)
	}
	d := view("initech-prod")
	if d.DesiredRelease != "2.0" || d.Behind != fleet.BehindOutsideWindow || d.Expected == nil || !d.Expected.Equal(saturday) {
		t.Fatalf("initech: desired %s, behind %q, expected %v; want 2.0, outside-window until %s", d.DesiredRelease, d.Behind, d.Expected, saturday)
	}
	var list apitypes.DeploymentList
	if err := api.Do(ctx, "GET", "/api/v1/deployments?behind=outside-window", nil, &list); err != nil || len(list.Items) != 1 || list.Items[0].ID != "initech-prod" {
		t.Fatalf("filter behind=outside-window: %+v, %v", list.Items, err)
	}

	// One minute into the window, the next step lets the offer go.
	clk.Set(saturday.Add(time.Minute))
	checkin("initech-prod")
	if err := m.Rollouts().Step(ctx); err != nil {
		t.Fatal(err)
	}
	if o, send := reg.Offer("initech-prod"); !send || o.Release != "2.0" {
		t.Fatalf("initech inside its window offered %q, send %v; want 2.0", o.Release, send)
	}
	if d := view("initech-prod"); d.Behind == fleet.BehindOutsideWindow || d.Expected != nil {
		t.Fatalf("initech inside its window: behind %q, expected %v", d.Behind, d.Expected)
	}

	// Back on a weekday, 2.1 is held again until 2.1 is marked urgent.
	clk.Set(monday.Add(7 * 24 * time.Hour))
	checkin("initech-prod")
	if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: "2.1"}); err != nil {
		t.Fatal(err)
	}
	if o, send := reg.Offer("initech-prod"); send || o.Release == "2.1" {
		t.Fatalf("2.1 outside the window offered %q, send %v", o.Release, send)
	}
	if _, err := api.StartRollout(ctx, apitypes.NewRollout{Stack: "shop", Release: "2.1", Urgent: true, Reason: "CVE-2026-4242"}); err != nil {
		t.Fatal(err)
	}
	if o, send := reg.Offer("initech-prod"); !send || o.Release != "2.1" {
		t.Fatalf("urgent 2.1 offered %q, send %v; want it sent outside the window", o.Release, send)
	}
	page, err := api.Audit(ctx, apitypes.AuditQuery{Action: "rollout.start"})
	if err != nil {
		t.Fatal(err)
	}
	urgent := false
	for _, e := range page.Items {
		if e.Target == "2.1" && e.Reason == "CVE-2026-4242" && strings.Contains(string(e.Detail), `"ignores_update_windows":true`) {
			urgent = true
		}
	}
	if !urgent {
		t.Fatalf("the urgent start is not audited as ignoring windows: %+v", page.Items)
	}
}

// TestARestartKeepsTheWavesWhereTheyWere restarts a manager in the middle of
// the canary bake: the deployments outside the canary wave are still held
// back the moment it starts, before any rollout step, and the bake keeps its
// start, so the next wave opens when it would have.
func TestARestartKeepsTheWavesWhereTheyWere(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	cfg := testConfig(t)
	cfg.Rollouts.CheckEvery = config.Duration(time.Hour)
	cfg.Rollouts.Plans = []rolloutplan.Plan{canaryThenRest()}
	start := func() *Manager {
		t.Helper()
		m, err := New(cfg, Settings{Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	checkin := func(m *Manager, id, release string) { t.Helper(); agentCheckin(t, m.Registry(), id, release) }
	m := start()
	reg := m.Registry()
	seedCanaryAndMain(t, reg)
	if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	checkin(m, "canary", "2.0")
	if err := m.Rollouts().Step(ctx); err != nil {
		t.Fatal(err)
	}
	bakeStart := clk.Now()
	clk.Advance(40 * time.Minute)
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	m = start()
	defer m.Shutdown(ctx)
	v, err := m.Registry().Get("main")
	if err != nil {
		t.Fatal(err)
	}
	if e := v.Evaluation; e.Desired != "1.0" || e.Behind != fleet.BehindWaitingForWave || e.Wave != "rest" || !e.Expected.Equal(bakeStart.Add(time.Hour)) {
		t.Fatalf("main right after the restart: desired %s, behind %q, wave %q, expected %s; want 1.0, waiting for rest until %s",
			e.Desired, e.Behind, e.Wave, e.Expected, bakeStart.Add(time.Hour))
	}
	if o, _ := m.Registry().Offer("main"); o.Release != "1.0" {
		t.Fatalf("main offered %q after the restart; want the 1.0 it runs", o.Release)
	}
	checkin(m, "canary", "2.0")
	checkin(m, "main", "1.0")
	clk.Set(bakeStart.Add(time.Hour))
	if err := m.Rollouts().Step(ctx); err != nil {
		t.Fatal(err)
	}
	if o, send := m.Registry().Offer("main"); !send || o.Release != "2.0" {
		t.Fatalf("main offered %q (send %v) once the canary bake ended; want 2.0", o.Release, send)
	}
}

// within polls cond every 20 ms for up to 10 s: replicas read each other's
// writes on their own schedule.
// startOnClock starts a manager with cfg on clk, stopped when the test ends,
// and returns it with its registry and an admin API client.
func startOnClock(t *testing.T, cfg config.Manager, clk clock.Clock) (*Manager, *registry.Registry, *apiclient.Client) {
	t.Helper()
	m, err := New(cfg, Settings{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m, m.Registry(), apiclient.New(m.URL(), cfg.AdminToken)
}

func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReplicasFollowTheLeadersRollout runs two managers on one PostgreSQL
// fleet store: a release published on the follower starts a rollout the
// leader steps, and the wave the leader opens reaches the follower's offers.
func TestReplicasFollowTheLeadersRollout(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	start := func() *Manager {
		t.Helper()
		cfg := testConfig(t)
		cfg.Storage = url
		cfg.Rollouts.CheckEvery = config.Duration(time.Hour)
		cfg.Rollouts.Plans = []rolloutplan.Plan{canaryThenRest()}
		m, err := New(cfg, Settings{Clock: clk, LeaderEvery: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Shutdown(ctx) })
		return m
	}
	leader := start()
	within(t, "the first manager leads", leader.leading.Load)
	follower := start()
	if follower.leading.Load() {
		t.Fatal("both managers lead")
	}
	reg := follower.Registry()
	seedCanaryAndMain(t, reg)
	checkin := func(id, release string) { t.Helper(); agentCheckin(t, reg, id, release) }
	if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	if o, _ := reg.Offer("main"); o.Release != "1.0" {
		t.Fatalf("the follower offers main %s while the canaries go first", o.Release)
	}
	checkin("canary", "2.0")
	if err := reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	within(t, "the leader sees the canary on 2.0 and the rollout", func() bool {
		v, err := leader.Registry().Get("canary")
		rs, _ := leader.Rollouts().List(ctx, store.RolloutFilter{Unfinished: true})
		return err == nil && v.Deployment.RunningRelease == "2.0" && len(rs) == 1
	})
	// The wait above read the store; the leader's engine reads it on its own
	// ticker. Stepping before it has would start nothing, and the bake would
	// start an hour late: load it now.
	if _, err := leader.Rollouts().Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := leader.Rollouts().Step(ctx); err != nil { // the canary wave starts baking
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if err := leader.Rollouts().Step(ctx); err != nil { // and passes: rest opens
		t.Fatal(err)
	}
	within(t, "the follower offers main 2.0", func() bool {
		o, send := reg.Offer("main")
		return o.Release == "2.0" && send
	})
}

// agentCheckin is a healthy polling agent on release that applies releases.
func agentCheckin(t *testing.T, reg *registry.Registry, id, release string) {
	t.Helper()
	yes := true
	if _, err := reg.Checkin(id, registry.Report{Mode: fleet.ModePull, Description: &registry.Description{Release: release}, AcceptsReleases: &yes,
		Health: &fleet.Health{Reported: true, Healthy: true}}); err != nil {
		t.Fatal(err)
	}
}

// canaryThenRest is a plan of shop: the canary-labelled deployments, then
// the rest, each baking an hour.
func canaryThenRest() rolloutplan.Plan {
	return rolloutplan.Plan{Stack: "shop", Waves: []rolloutplan.Wave{
		{Name: "canary", Select: rolloutplan.Selection{Labels: map[string]string{"ring": "canary"}}, Bake: rolloutplan.Duration(time.Hour)},
		{Name: "rest", Select: rolloutplan.Selection{Rest: true}, Bake: rolloutplan.Duration(time.Hour)}}}
}

// seedCanaryAndMain publishes shop 1.0 and creates a canary and a main
// deployment, both checked in on it.
func seedCanaryAndMain(t *testing.T, reg *registry.Registry) {
	t.Helper()
	ctx := context.Background()
	if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "canary", Customer: "a", Stack: "shop", Labels: map[string]string{"ring": "canary"}},
		{ID: "main", Customer: "b", Stack: "shop"}}); err != nil {
		t.Fatal(err)
	}
	agentCheckin(t, reg, "canary", "1.0")
	agentCheckin(t, reg, "main", "1.0")
}

// TestUrgentReleaseOfAStackWithoutAPlan: a stack without a rollout plan takes
// each release at once, but a customer's update window holds the offer; a
// release published as urgent with a reason reaches it at once, audited.
func TestUrgentReleaseOfAStackWithoutAPlan(t *testing.T) {
	ctx := context.Background()
	sat, err := rolloutplan.ParseWindow("Sat 02:00-06:00 Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)) // a Monday
	cfg := testConfig(t)
	cfg.Rollouts.CheckEvery = config.Duration(time.Hour)
	cfg.Rollouts.Windows = rolloutplan.WindowSet{Customers: map[string]rolloutplan.Windows{"initech": {sat}}}
	m, reg, api := startOnClock(t, cfg, clk)
	if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: "billing", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "initech-prod", Customer: "initech", Stack: "billing"}}); err != nil {
		t.Fatal(err)
	}
	agentCheckin(t, reg, "initech-prod", "1.0")

	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "billing", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	if o, send := reg.Offer("initech-prod"); send || o.Release == "2.0" {
		t.Fatalf("initech outside its window offered %q, send %v; want nothing sent", o.Release, send)
	}
	err = api.Do(ctx, "POST", "/api/v1/releases", apitypes.NewRelease{Stack: "billing", Version: "2.0.1", Urgent: true}, nil)
	if ae := (*apiclient.Error)(nil); !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "urgent") {
		t.Fatalf("an urgent release without a reason: %v; want 400", err)
	}
	if rs := reg.Releases("billing"); len(rs) != 2 {
		t.Fatalf("the refused urgent release was published: %d releases", len(rs))
	}
	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "billing", Version: "2.0.1", Urgent: true, Reason: "CVE-2026-1234"}); err != nil {
		t.Fatal(err)
	}
	if o, send := reg.Offer("initech-prod"); !send || o.Release != "2.0.1" {
		t.Fatalf("initech under an urgent release offered %q, send %v; want 2.0.1 now", o.Release, send)
	}
	entries, _, err := m.store.ListAudit(ctx, store.AuditFilter{Action: store.ActionRolloutStart})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Reason != "CVE-2026-1234" || !strings.Contains(entries[0].Detail, `"ignores_update_windows":true`) {
		t.Errorf("audit %+v: want the urgent start with its reason", entries)
	}
}
