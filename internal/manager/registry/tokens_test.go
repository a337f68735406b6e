package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

func createOne(t *testing.T, f *fixture, id string) string {
	t.Helper()
	cr, err := f.reg.CreateDeployments(context.Background(), []registry.NewDeployment{{ID: id, Stack: "app"}})
	if err != nil {
		t.Fatal(err)
	}
	return cr[0].Token
}

func admits(f *fixture, token, id string) bool {
	got, ok := f.reg.Authenticate(token)
	return ok && got == id
}

func actions(t *testing.T, f *fixture, id string) []fleet.DeploymentAction {
	t.Helper()
	chs, err := f.reg.DeploymentChanges(context.Background(), id, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []fleet.DeploymentAction
	for _, c := range chs {
		out = append(out, c.Action)
	}
	return out
}

// A rotated token's overlap ends when the agent first uses the new token: the
// old one is refused from then on, also after a manager restart.
func TestRotationEndsWhenTheAgentUsesTheNewToken(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, clock.NewFake(t0))
	ctx := context.Background()
	old := createOne(t, f, "acme")
	rot, err := f.reg.RotateToken(ctx, registry.RotateRequest{ID: "acme", By: "ops", Reason: "quarterly"})
	if err != nil {
		t.Fatal(err)
	}
	if !rot.Overlapping || !rot.PreviousUntil.IsZero() || rot.Token == old || len(rot.Token) < 20 {
		t.Fatalf("rotation = %+v, want a new token overlapping with the old one and no deadline", rot)
	}
	if !admits(f, old, "acme") {
		t.Fatal("the old token is refused during the overlap")
	}
	if valid, offer := f.reg.TokenValid("acme", auth.Hash(old)); !valid || offer != rot.Token {
		t.Fatalf("TokenValid(old) = %v, offer %q…; want valid, offering the new token", valid, offer[:min(len(offer), 4)])
	}
	if v := view(t, f, "acme"); !v.Token.Rotating || v.Token.Revoked {
		t.Errorf("token state during the overlap = %+v, want rotating", v.Token)
	}
	if !admits(f, rot.Token, "acme") {
		t.Fatal("the new token is refused")
	}
	if admits(f, old, "acme") {
		t.Error("the old token still works after the agent used the new one")
	}
	if valid, offer := f.reg.TokenValid("acme", auth.Hash(rot.Token)); !valid || offer != "" {
		t.Errorf("TokenValid(new) = %v, %q; want valid with nothing more to offer", valid, offer)
	}
	want := []fleet.DeploymentAction{fleet.ActionRetireToken, fleet.ActionRotateToken}
	if got := actions(t, f, "acme"); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("audit trail %v, want %v", got, want)
	}
	f.close(t)
	f = open(t, dir, clock.NewFake(t0))
	if admits(f, old, "acme") || !admits(f, rot.Token, "acme") {
		t.Error("after a restart the old token works again or the new one does not")
	}
}

// An overlap deadline ends the old token at that instant even if the agent never
// used the new one.
func TestRotationOverlapDeadline(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	f := open(t, dir, clk)
	old := createOne(t, f, "acme")
	rot, err := f.reg.RotateToken(context.Background(), registry.RotateRequest{ID: "acme", Overlap: time.Hour, By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if !rot.PreviousUntil.Equal(t0.Add(time.Hour)) {
		t.Errorf("previous token valid until %v, want %v", rot.PreviousUntil, t0.Add(time.Hour))
	}
	clk.Advance(time.Hour - time.Second)
	if !admits(f, old, "acme") {
		t.Fatal("the old token is refused before its deadline")
	}
	clk.Advance(time.Second)
	if admits(f, old, "acme") {
		t.Fatal("the old token works at its deadline")
	}
	if !admits(f, rot.Token, "acme") {
		t.Fatal("the new token is refused")
	}
	f.close(t)
	f = open(t, dir, clk)
	if admits(f, old, "acme") {
		t.Error("after a restart the expired token works again")
	}
	if got := actions(t, f, "acme"); len(got) != 2 || got[0] != fleet.ActionRetireToken {
		t.Errorf("audit trail %v, want the retirement after the rotation", got)
	}
}

// Revocation is immediate and needs a reason; after it only a rotation (installed
// by hand) gives the deployment a token again. Deleting removes the deployment and
// its tokens but keeps its audit trail, and its id may be used again.
func TestRevokeAndDelete(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, clock.NewFake(t0))
	ctx := context.Background()
	tok := createOne(t, f, "acme")
	if err := f.reg.RevokeToken(ctx, registry.RevokeRequest{ID: "acme", By: "ops"}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("revoke without a reason: %v, want ErrInvalid", err)
	}
	if err := f.reg.RevokeToken(ctx, registry.RevokeRequest{ID: "acme", PreviousOnly: true, By: "ops", Reason: "x"}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("revoke the previous token with no rotation: %v, want ErrInvalid", err)
	}
	if err := f.reg.RevokeToken(ctx, registry.RevokeRequest{ID: "acme", By: "ops", Reason: "leaked"}); err != nil {
		t.Fatal(err)
	}
	if admits(f, tok, "acme") || !view(t, f, "acme").Token.Revoked {
		t.Fatal("a revoked token still works, or the deployment does not show it revoked")
	}
	rot, err := f.reg.RotateToken(ctx, registry.RotateRequest{ID: "acme", By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Overlapping || !admits(f, rot.Token, "acme") {
		t.Errorf("rotation after revocation = %+v, want a working token with nothing to overlap", rot)
	}
	if err := f.reg.DeleteDeployment(ctx, "acme", "ops", "operator", ""); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("delete without a reason: %v, want ErrInvalid", err)
	}
	if err := f.reg.DeleteDeployment(ctx, "acme", "ops", "operator", "customer left"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.Get("acme"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get after delete: %v, want ErrNotFound", err)
	}
	if items, total := f.reg.List(fleet.Filter{}, registry.Page{}); len(items) != 0 || total != 0 {
		t.Errorf("list after delete has %d (total %d), want none", len(items), total)
	}
	if admits(f, rot.Token, "acme") {
		t.Error("a deleted deployment's token still works")
	}
	if err := f.reg.DeleteDeployment(ctx, "acme", "ops", "operator", "again"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("deleting twice: %v, want ErrNotFound", err)
	}
	f.close(t)
	f = open(t, dir, clock.NewFake(t0))
	if _, err := f.reg.Get("acme"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("after a restart the deleted deployment is back: %v", err)
	}
	want := []fleet.DeploymentAction{fleet.ActionDelete, fleet.ActionRotateToken, fleet.ActionRevokeToken}
	if got := actions(t, f, "acme"); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("audit trail of the deleted deployment %v, want %v", got, want)
	}
	if again := createOne(t, f, "acme"); !admits(f, again, "acme") {
		t.Error("a deleted id cannot be registered again")
	}
}
