package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/store"
)

func rollout(id, stack string, started time.Time) store.RolloutRecord {
	return store.RolloutRecord{ID: id, Stack: stack, Release: "2.0.0", Phase: "running", StartedAt: started, UpdatedAt: started,
		Version: 1, State: []byte(`{"wave": 0, "opened": ["d1", "d2"]}`)}
}

func rolloutAudit(action, id string, at time.Time) store.AuditEntry {
	return store.AuditEntry{At: at, Actor: "rollout:" + id, Action: action, Target: "2.0.0", Outcome: store.OutcomeSucceeded,
		Reason: "wave canary passed", Detail: `{"rollout":"` + id + `"}`}
}

// sameJSON fails t unless got and want are equal JSON values.
func sameJSON(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: stored %q is not JSON: %v", what, got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: %s, want %s", what, got, want)
	}
}

func testRollouts(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)

	a := rollout("ro-a", "shop", t0)
	if err := s.CreateRollout(ctx, a, []store.AuditEntry{rolloutAudit(store.ActionRolloutStart, "ro-a", t0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRollout(ctx, a, nil); !errors.Is(err, store.ErrConflict) {
		t.Errorf("creating ro-a twice: %v, want ErrConflict", err)
	}
	b := rollout("ro-b", "shop", t0.Add(time.Hour))
	c := rollout("ro-c", "billing", t0.Add(2*time.Hour))
	for _, r := range []store.RolloutRecord{b, c} {
		if err := s.CreateRollout(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}

	// A write over the version it read succeeds, with its audit entry.
	upd := a
	upd.Version, upd.Phase, upd.UpdatedAt, upd.State = 2, "halted", t0.Add(30*time.Minute), []byte(`{"wave": 1, "halt": "regressed 1 of 2"}`)
	if err := s.UpdateRollout(ctx, upd, []store.AuditEntry{rolloutAudit(store.ActionRolloutHalt, "ro-a", upd.UpdatedAt)}); err != nil {
		t.Fatal(err)
	}
	// A second writer that read version 1 too is refused and writes nothing.
	stale := a
	stale.Version, stale.Phase = 2, "completed"
	if err := s.UpdateRollout(ctx, stale, []store.AuditEntry{rolloutAudit(store.ActionRolloutDone, "ro-a", t0)}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a write over a stale version: %v, want ErrConflict", err)
	}
	if err := s.UpdateRollout(ctx, rollout("ro-none", "shop", t0), nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("updating an unknown rollout: %v, want ErrNotFound", err)
	}
	done := c
	done.Version, done.Phase, done.Done = 2, "completed", true
	if err := s.UpdateRollout(ctx, done, nil); err != nil {
		t.Fatal(err)
	}

	// Plans: set, replace, remove.
	plan := store.RolloutPlanRecord{Stack: "shop", Plan: []byte(`{"stack":"shop","waves":[{"name":"canary"}]}`), UpdatedAt: t0, UpdatedBy: "ops"}
	planAudit := store.AuditEntry{At: t0, Actor: "ops", ActorRole: "admin", Action: store.ActionRolloutPlan, Target: "shop", Outcome: store.OutcomeSucceeded, Reason: "two waves", Detail: `{}`}
	if err := s.PutRolloutPlan(ctx, plan, planAudit); err != nil {
		t.Fatal(err)
	}
	plan.Plan, plan.UpdatedAt = []byte(`{"stack":"shop","waves":[{"name":"canary"},{"name":"rest"}]}`), t0.Add(time.Minute)
	if err := s.PutRolloutPlan(ctx, plan, planAudit); err != nil {
		t.Fatal(err)
	}
	billing := store.RolloutPlanRecord{Stack: "billing", Plan: []byte(`{"stack":"billing"}`), UpdatedAt: t0, UpdatedBy: "ops"}
	if err := s.PutRolloutPlan(ctx, billing, planAudit); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRolloutPlan(ctx, "billing", planAudit); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRolloutPlan(ctx, "billing", planAudit); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing a plan twice: %v, want ErrNotFound", err)
	}

	// Update windows: set, replace, remove, per kind and owner.
	winAudit := store.AuditEntry{At: t0.Add(time.Hour), Actor: "ops", ActorRole: "operator", Action: store.ActionUpdateWindows,
		Target: "customer:acme", Outcome: store.OutcomeSucceeded, Reason: "change freeze", Detail: `{}`}
	acme := store.UpdateWindowsRecord{Kind: store.WindowsOfCustomer, Owner: "acme", Windows: []byte(`["Sat 02:00-06:00 Europe/Berlin"]`), UpdatedAt: t0, UpdatedBy: "ops"}
	if err := s.PutUpdateWindows(ctx, acme, winAudit); err != nil {
		t.Fatal(err)
	}
	acme.Windows, acme.UpdatedAt, acme.UpdatedBy = []byte(`["Sun 01:00-03:00 UTC"]`), t0.Add(time.Hour), "oncall"
	if err := s.PutUpdateWindows(ctx, acme, winAudit); err != nil {
		t.Fatal(err)
	}
	// The same name as a deployment is another owner.
	dep := store.UpdateWindowsRecord{Kind: store.WindowsOfDeployment, Owner: "acme", Windows: []byte(`["Daily 01:00-02:00 UTC"]`), UpdatedAt: t0, UpdatedBy: "ops"}
	if err := s.PutUpdateWindows(ctx, dep, winAudit); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUpdateWindows(ctx, store.WindowsOfDeployment, "acme", winAudit); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUpdateWindows(ctx, store.WindowsOfDeployment, "acme", winAudit); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing windows twice: %v, want ErrNotFound", err)
	}

	// All of it survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()

	got, err := s.GetRollout(ctx, "ro-a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.Phase != "halted" || !got.UpdatedAt.Equal(upd.UpdatedAt) || !got.StartedAt.Equal(t0) || got.Stack != "shop" || got.Release != "2.0.0" || got.Done {
		t.Errorf("ro-a after its update: %+v", got)
	}
	sameJSON(t, "ro-a state", got.State, upd.State)
	if _, err := s.GetRollout(ctx, "ro-none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("reading an unknown rollout: %v, want ErrNotFound", err)
	}

	for _, c := range []struct {
		f    store.RolloutFilter
		want []string
	}{
		{store.RolloutFilter{}, []string{"ro-c", "ro-b", "ro-a"}},
		{store.RolloutFilter{Stack: "shop"}, []string{"ro-b", "ro-a"}},
		{store.RolloutFilter{Unfinished: true}, []string{"ro-b", "ro-a"}},
		{store.RolloutFilter{Stack: "billing", Unfinished: true}, nil},
		{store.RolloutFilter{Limit: 1}, []string{"ro-c"}},
	} {
		rs, err := s.ListRollouts(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if !reflect.DeepEqual(ids, c.want) {
			t.Errorf("ListRollouts(%+v) = %v, want %v", c.f, ids, c.want)
		}
	}

	plans, err := s.ListRolloutPlans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 1 || plans[0].Stack != "shop" || plans[0].UpdatedBy != "ops" || !plans[0].UpdatedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("plans: %+v", plans)
	}
	sameJSON(t, "shop's plan", plans[0].Plan, plan.Plan)

	wins, err := s.ListUpdateWindows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(wins) != 1 || wins[0].Kind != store.WindowsOfCustomer || wins[0].Owner != "acme" || wins[0].UpdatedBy != "oncall" || !wins[0].UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("update windows: %+v", wins)
	}
	sameJSON(t, "acme's windows", wins[0].Windows, acme.Windows)

	// The audit log holds what committed, and nothing of the refused write.
	entries, _, err := s.ListAudit(ctx, store.AuditFilter{Action: store.ActionRolloutPrefix, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	// Newest first: the windows' changes an hour in, the halt half an hour
	// in; the plans and the start share t0, in the order written.
	want := []string{"rollout.windows", "rollout.windows", "rollout.windows", "rollout.windows", "rollout.halt", "rollout.plan", "rollout.plan", "rollout.plan", "rollout.plan", "rollout.start"}
	if !reflect.DeepEqual(actions, want) {
		t.Errorf("audit actions newest first %v, want %v", actions, want)
	}
}
