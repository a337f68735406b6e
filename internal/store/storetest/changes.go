package storetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// testCheckinsKeepOperatorState checks UpdateCheckins: it writes what a
// check-in owns, never the operator's state, and never an older check-in over
// a newer one (another replica heard the agent since).
func testCheckinsKeepOperatorState(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	a := rec("a")
	if err := s.CreateDeployments(ctx, []store.DeploymentRecord{a, rec("b")}); err != nil {
		t.Fatal(err)
	}
	// A replica read a before it was pinned and given thresholds elsewhere.
	stale := a
	pinned := a
	pinned.Deployment.Pin = &fleet.Pin{Release: "1.7.2", By: "ops", Reason: "incident", At: t0}
	pinned.Deployment.Thresholds = thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 10}}}
	if err := s.ApplyPins(ctx, []store.DeploymentRecord{pinned}, []fleet.PinChange{{ChangeID: "c1", At: t0, By: "ops", Reason: "incident",
		Action: fleet.ActionPin, DeploymentID: "a", To: "1.7.2"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyThresholds(ctx, pinned, store.ThresholdsAudit("a", "acme", thresholds.Set{}, pinned.Deployment.Thresholds, t0, "ops", "operator", "x")); err != nil {
		t.Fatal(err)
	}
	stale.Deployment.LastCheckin = t0.Add(time.Minute)
	stale.Deployment.RunningRelease = "1.8.0"
	stale.Deployment.Connected, stale.Deployment.Mode = true, fleet.ModePush
	stale.LastStatus = fleet.StatusHealthy
	if err := s.UpdateCheckins(ctx, []store.DeploymentRecord{stale, rec("ghost")}); err != nil {
		t.Fatal(err)
	}
	got := byID(t, s)
	d := got["a"].Deployment
	if d.Pin == nil || d.Pin.Release != "1.7.2" || d.Thresholds.IsZero() {
		t.Fatalf("a check-in flush undid the operator's state: pin %+v thresholds %+v", d.Pin, d.Thresholds)
	}
	if d.RunningRelease != "1.8.0" || !d.Connected || !d.LastCheckin.Equal(t0.Add(time.Minute)) || got["a"].LastStatus != fleet.StatusHealthy {
		t.Fatalf("check-in state not written: %+v, status %s", d, got["a"].LastStatus)
	}
	if _, ok := got["ghost"]; ok || len(got) != 2 {
		t.Fatalf("UpdateCheckins created a deployment: %d stored", len(got))
	}
	// An older check-in (a replica that had not heard the newer one) is left out.
	older := stale
	older.Deployment.LastCheckin = t0.Add(30 * time.Second)
	older.Deployment.Connected = false
	if err := s.UpdateCheckins(ctx, []store.DeploymentRecord{older}); err != nil {
		t.Fatal(err)
	}
	if d := byID(t, s)["a"].Deployment; !d.Connected || !d.LastCheckin.Equal(t0.Add(time.Minute)) {
		t.Fatalf("an older check-in overwrote a newer one: connected %v, last check-in %v", d.Connected, d.LastCheckin)
	}
}

// testFleetChanges checks FleetChangesSince: from 0 everything, then exactly
// what was written since (at least), deletions and releases included.
func testFleetChanges(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	if err := s.CreateDeployments(ctx, []store.DeploymentRecord{rec("a"), rec("b"), rec("c")}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "1.0.0", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	first, err := s.FleetChangesSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if depIDs(first.Deployments) != "a,b,c" || len(first.Releases) != 1 || len(first.Deleted) != 0 {
		t.Fatalf("changes since 0 = %s, %d releases, deleted %v; want a,b,c, one release, none", depIDs(first.Deployments), len(first.Releases), first.Deleted)
	}
	quiet, err := s.FleetChangesSince(ctx, first.Next)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing was written since: a backend MAY repeat, but not invent.
	if len(quiet.Deleted) != 0 {
		t.Fatalf("deletions reported with none made: %v", quiet.Deleted)
	}
	b := rec("b")
	b.Deployment.LastCheckin, b.Deployment.RunningRelease = t0.Add(time.Minute), "1.0.0"
	if err := s.UpdateCheckins(ctx, []store.DeploymentRecord{b}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDeployment(ctx, "c", fleet.DeploymentChange{At: t0, By: "ops", Action: fleet.ActionDelete, DeploymentID: "c"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "1.1.0", CreatedAt: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	a := rec("a")
	if err := s.SetDeploymentTokens(ctx, store.DeploymentTokens{ID: "a", TokenHash: "new-hash"}, nil); err != nil {
		t.Fatal(err)
	}
	next, err := s.FleetChangesSince(ctx, quiet.Next)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.DeploymentRecord{}
	for _, r := range next.Deployments {
		got[r.Deployment.ID] = r
	}
	if r, ok := got["b"]; !ok || r.Deployment.RunningRelease != "1.0.0" {
		t.Fatalf("a check-in written since is missing from the changes: %s", depIDs(next.Deployments))
	}
	if r, ok := got["a"]; !ok || r.TokenHash != "new-hash" {
		t.Fatalf("a token change since is missing from the changes (%s); a was %s", depIDs(next.Deployments), a.Deployment.ID)
	}
	if _, ok := got["c"]; ok || !slices.Contains(next.Deleted, "c") {
		t.Fatalf("deletion of c: deployments %s, deleted %v", depIDs(next.Deployments), next.Deleted)
	}
	if !slices.ContainsFunc(next.Releases, func(r fleet.Release) bool { return r.Version == "1.1.0" }) {
		t.Fatalf("release created since missing: %+v", next.Releases)
	}
}

func byID(t *testing.T, s Backend) map[string]store.DeploymentRecord {
	t.Helper()
	recs, err := s.ListDeployments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.DeploymentRecord{}
	for _, r := range recs {
		out[r.Deployment.ID] = r
	}
	return out
}

func depIDs(recs []store.DeploymentRecord) string {
	out := make([]string, len(recs))
	for i := range recs {
		out[i] = recs[i].Deployment.ID
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}
