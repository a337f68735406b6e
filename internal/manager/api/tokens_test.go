package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/ingest"
)

// agentStatus is what the manager answers an agent presenting token.
func agentStatus(t *testing.T, base, token string) int {
	t.Helper()
	req, err := http.NewRequest("GET", base+ingest.ContextPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func wantAPIError(t *testing.T, what string, err error, status int) {
	t.Helper()
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != status {
		t.Errorf("%s: err = %v, want HTTP %d", what, err, status)
	}
}

// An operator rotates a deployment's token (old and new both work until the
// agent uses the new one), revokes it (nothing works), and deletes the
// deployment; each step is audited with the operator's token name and reason,
// and the trail outlives the deployment.
func TestRotateRevokeAndDeleteDeployment(t *testing.T) {
	ctx := context.Background()
	m := start(t)
	adm := apiclient.New(m.URL(), admin)
	viewer, operator := newToken(t, adm, "dash", "viewer"), newToken(t, adm, "alice", "operator")
	op := apiclient.New(m.URL(), operator.Secret)
	d, err := op.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme", Customer: "acme", Stack: "app"})
	if err != nil {
		t.Fatal(err)
	}
	old := d.Token
	if d.TokenState != apitypes.TokenActive {
		t.Errorf("new deployment token_state %q, want active", d.TokenState)
	}
	_, err = apiclient.New(m.URL(), viewer.Secret).RotateToken(ctx, "acme", apitypes.TokenRotation{})
	wantAPIError(t, "viewer rotates", err, 403)
	_, err = op.RotateToken(ctx, "acme", apitypes.TokenRotation{Overlap: "soon"})
	wantAPIError(t, "rotate with a bad overlap", err, 400)
	_, err = op.RotateToken(ctx, "ghost", apitypes.TokenRotation{})
	wantAPIError(t, "rotate an unknown deployment", err, 404)

	rot, err := op.RotateToken(ctx, "acme", apitypes.TokenRotation{Reason: "quarterly rotation", Overlap: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Token == "" || rot.Token == old || !rot.PreviousTokenValid || rot.PreviousTokenValidUntil == nil || rot.Delivery != apitypes.DeliveryNextCheckin {
		t.Fatalf("rotation answered %+v, want a new token, the old one valid for 24h, delivered at the next check-in", rot)
	}
	if got, _ := op.Deployment(ctx, "acme"); got.TokenState != apitypes.TokenRotating || got.PreviousTokenValidUntil == nil {
		t.Errorf("during the overlap token_state %q until %v, want rotating with a deadline", got.TokenState, got.PreviousTokenValidUntil)
	}
	if s := agentStatus(t, m.URL(), old); s != 200 {
		t.Fatalf("old token during the overlap: %d, want 200", s)
	}
	if s := agentStatus(t, m.URL(), rot.Token); s != 200 {
		t.Fatalf("new token: %d, want 200", s)
	}
	if s := agentStatus(t, m.URL(), old); s != 401 {
		t.Errorf("old token after the agent used the new one: %d, want 401", s)
	}

	_, err = op.RevokeToken(ctx, "acme", apitypes.TokenRevocation{})
	wantAPIError(t, "revoke without a reason", err, 400)
	rev, err := op.RevokeToken(ctx, "acme", apitypes.TokenRevocation{Reason: "laptop stolen"})
	if err != nil {
		t.Fatal(err)
	}
	if rev.TokenState != apitypes.TokenRevoked {
		t.Errorf("after revocation token_state %q, want revoked", rev.TokenState)
	}
	if s := agentStatus(t, m.URL(), rot.Token); s != 401 {
		t.Errorf("revoked token: %d, want 401", s)
	}
	fresh, err := op.RotateToken(ctx, "acme", apitypes.TokenRotation{Reason: "reinstall"})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Delivery != apitypes.DeliveryManual || fresh.PreviousTokenValid {
		t.Errorf("rotation after revocation answered %+v, want manual delivery and no previous token", fresh)
	}

	wantAPIError(t, "delete without a reason", op.DeleteDeployment(ctx, "acme", ""), 400)
	if err := op.DeleteDeployment(ctx, "acme", "customer churned"); err != nil {
		t.Fatal(err)
	}
	_, err = op.Deployment(ctx, "acme")
	wantAPIError(t, "get a deleted deployment", err, 404)
	if list, err := op.Deployments(ctx, apiclient.Filter{}); err != nil || len(list) != 0 {
		t.Errorf("list after delete: %v, %v; want empty", list, err)
	}
	if s := agentStatus(t, m.URL(), fresh.Token); s != 401 {
		t.Errorf("token of a deleted deployment: %d, want 401", s)
	}
	wantAPIError(t, "delete twice", op.DeleteDeployment(ctx, "acme", "again"), 404)

	hist, err := apiclient.New(m.URL(), viewer.Secret).DeploymentHistory(ctx, "acme", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		action     fleet.DeploymentAction
		by, reason string
	}{
		{fleet.ActionDelete, "alice", "customer churned"},
		{fleet.ActionRotateToken, "alice", "reinstall"},
		{fleet.ActionRevokeToken, "alice", "laptop stolen"},
		{fleet.ActionRetireToken, "periscope", "the agent checked in with the new token"},
		{fleet.ActionRotateToken, "alice", "quarterly rotation"},
	}
	if len(hist) != len(want) {
		t.Fatalf("history has %d entries, want %d: %+v", len(hist), len(want), hist)
	}
	for i, w := range want {
		if h := hist[i]; h.Action != w.action || h.By != w.by || h.Reason != w.reason || h.DeploymentID != "acme" || h.At.IsZero() {
			t.Errorf("history[%d] = %+v, want %s by %s because %q", i, h, w.action, w.by, w.reason)
		}
	}
	// The fleet's trail has every deployment's entries, newest first.
	if _, err := op.CreateDeployment(ctx, apitypes.NewDeployment{ID: "globex", Customer: "globex", Stack: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.RotateToken(ctx, "globex", apitypes.TokenRotation{Reason: "moved clusters"}); err != nil {
		t.Fatal(err)
	}
	var all struct {
		Items []apitypes.DeploymentChange `json:"items"`
	}
	vc := apiclient.New(m.URL(), viewer.Secret)
	if err := vc.Do(ctx, "GET", "/api/v1/deployments/history?limit=10", nil, &all); err != nil {
		t.Fatal(err)
	}
	if len(all.Items) != len(want)+1 || all.Items[0].DeploymentID != "globex" || all.Items[0].Reason != "moved clusters" || all.Items[1].DeploymentID != "acme" {
		t.Errorf("the fleet's trail: %+v, want globex's rotation then acme's %d entries", all.Items, len(want))
	}
	if err := vc.Do(ctx, "GET", "/api/v1/deployments/history?deployment=globex", nil, &all); err != nil {
		t.Fatal(err)
	}
	if len(all.Items) != 1 || all.Items[0].DeploymentID != "globex" {
		t.Errorf("the fleet's trail of globex: %+v, want its rotation only", all.Items)
	}
}

// FuzzTokenBodies sends hostile bodies to the token and deletion endpoints: each
// is answered as the API answers a bad request, never with a server error.
func FuzzTokenBodies(f *testing.F) {
	for _, seed := range []string{``, `{}`, `{"reason":"x","overlap":"24h"}`, `{"overlap":"-1h"}`, `{"overlap":"9999999999h"}`,
		`{"reason":"x","previous_only":true}`, `{"reason":1}`, `{"colour":"red"}`, `[`, `null`, "{\"reason\":\"\u0000\"}"} {
		f.Add(seed)
	}
	m := start(f)
	op := apiclient.New(m.URL(), admin)
	if _, err := op.CreateDeployment(context.Background(), apitypes.NewDeployment{ID: "acme", Stack: "app"}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, ep := range [][2]string{{"POST", "/api/v1/deployments/acme/rotate-token"}, {"POST", "/api/v1/deployments/ghost/revoke-token"},
			{"DELETE", "/api/v1/deployments/ghost"}} {
			req, err := http.NewRequest(ep[0], m.URL()+ep[1], strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+admin)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Errorf("%s %s with %q: %d", ep[0], ep[1], body, resp.StatusCode)
			}
		}
	})
}
