package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// testDeploymentTokens checks rotation, revocation and deletion of deployments'
// agent tokens, and that the audit trail outlives a deleted deployment.
func testDeploymentTokens(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.CreateDeployments(ctx, []store.DeploymentRecord{rec("a"), rec("b")}); err != nil {
		t.Fatal(err)
	}
	change := func(id string, a fleet.DeploymentAction, at time.Duration) fleet.DeploymentChange {
		return fleet.DeploymentChange{At: t0.Add(at), By: "ops", Reason: "leaked in a CI log", Action: a, DeploymentID: id, Detail: string(a) + " " + id}
	}
	// Rotate a: the new token is current, the old one previous until a deadline.
	rotated := store.DeploymentTokens{ID: "a", TokenHash: auth.Hash("tok-a2"), PrevTokenHash: auth.Hash("tok-a"), PrevTokenUntil: t0.Add(time.Hour)}
	if err := s.SetDeploymentTokens(ctx, rotated, []fleet.DeploymentChange{change("a", fleet.ActionRotateToken, time.Second)}); err != nil {
		t.Fatal(err)
	}
	// A hash that belongs to another deployment is a conflict, and nothing of
	// the failed call is kept.
	err := s.SetDeploymentTokens(ctx, store.DeploymentTokens{ID: "b", TokenHash: auth.Hash("tok-a2")}, []fleet.DeploymentChange{change("b", fleet.ActionRotateToken, 2*time.Second)})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("taking another deployment's token hash: err = %v, want ErrConflict", err)
	}
	if err := s.SetDeploymentTokens(ctx, store.DeploymentTokens{ID: "ghost", TokenHash: auth.Hash("x")}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("tokens of an unknown deployment: err = %v, want ErrNotFound", err)
	}
	// Revoke b entirely, then delete it.
	if err := s.SetDeploymentTokens(ctx, store.DeploymentTokens{ID: "b"}, []fleet.DeploymentChange{change("b", fleet.ActionRevokeToken, 3*time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDeployment(ctx, "b", change("b", fleet.ActionDelete, 4*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDeployment(ctx, "b", change("b", fleet.ActionDelete, 5*time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting a deleted deployment: err = %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	got, err := s.ListDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Deployment.ID != "a" {
		t.Fatalf("after deleting b, deployments = %v, want only a", got)
	}
	a := got[0]
	if a.TokenHash != rotated.TokenHash || a.PrevTokenHash != rotated.PrevTokenHash || !a.PrevTokenUntil.Equal(rotated.PrevTokenUntil) {
		t.Errorf("rotated tokens read back %q %q until %v, want %q %q until %v", a.TokenHash, a.PrevTokenHash, a.PrevTokenUntil,
			rotated.TokenHash, rotated.PrevTokenHash, rotated.PrevTokenUntil)
	}
	// Retire the previous token: the current one is kept as it was.
	if err := s.SetDeploymentTokens(ctx, store.DeploymentTokens{ID: "a", TokenHash: rotated.TokenHash}, []fleet.DeploymentChange{change("a", fleet.ActionRetireToken, 6*time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ListDeployments(ctx); len(got) != 1 || got[0].TokenHash != rotated.TokenHash || got[0].PrevTokenHash != "" || !got[0].PrevTokenUntil.IsZero() {
		t.Errorf("after retiring the previous token: %+v", got)
	}
	// The id of a deleted deployment may be used again, with a new token.
	again := rec("b")
	again.TokenHash = auth.Hash("tok-b2")
	if err := s.CreateDeployments(ctx, []store.DeploymentRecord{again}); err != nil {
		t.Fatalf("re-creating deleted b: %v", err)
	}
	all, err := s.ListDeploymentChanges(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var actions []fleet.DeploymentAction
	for _, c := range all {
		actions = append(actions, c.Action)
	}
	want := []fleet.DeploymentAction{fleet.ActionRetireToken, fleet.ActionDelete, fleet.ActionRevokeToken, fleet.ActionRotateToken}
	if len(actions) != len(want) {
		t.Fatalf("audit trail %v, want %v (newest first, failed calls leave nothing)", actions, want)
	}
	for i := range want {
		if actions[i] != want[i] {
			t.Fatalf("audit trail %v, want %v (newest first, failed calls leave nothing)", actions, want)
		}
	}
	if c := all[1]; c.By != "ops" || c.Reason != "leaked in a CI log" || c.DeploymentID != "b" || c.Detail != "delete b" || !c.At.Equal(t0.Add(4*time.Second)) {
		t.Errorf("delete entry read back %+v", c)
	}
	ofB, err := s.ListDeploymentChanges(ctx, "b", 1)
	if err != nil || len(ofB) != 1 || ofB[0].Action != fleet.ActionDelete {
		t.Errorf("newest change of deleted b = %v, %v; want its deletion", ofB, err)
	}
}
