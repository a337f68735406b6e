package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// newToken has the admin client adm create an API token and returns it, secret included.
func newToken(t *testing.T, adm *apiclient.Client, name, role string) apitypes.Token {
	t.Helper()
	var tok apitypes.Token
	if err := adm.Do(context.Background(), "POST", "/api/v1/tokens", apitypes.NewToken{Name: name, Role: role}, &tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// auditActions lists the actions of a page, newest first.
func auditActions(p apitypes.AuditPage) []string {
	out := []string{}
	for _, e := range p.Items {
		out = append(out, e.Action+" "+e.Actor)
	}
	return out
}

// Operators' changes, API token changes and the manager's own token all reach
// GET /api/v1/audit with who did them and in what role; every filter narrows
// the log, pages cover it with no gap or repeat, viewers may not read it, and
// nothing may change it.
func TestAuditLog(t *testing.T) {
	ctx := context.Background()
	m := start(t)
	adm := apiclient.New(m.URL(), admin)
	viewer, operator := newToken(t, adm, "dash", "viewer"), newToken(t, adm, "alice", "operator")
	op := apiclient.New(m.URL(), operator.Secret)
	for _, nd := range []apitypes.NewDeployment{{ID: "acme-prod", Customer: "acme", Stack: "app"}, {ID: "globex-prod", Customer: "globex", Stack: "app"}} {
		if _, err := op.CreateDeployment(ctx, nd); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.Do(ctx, "POST", "/api/v1/releases", apitypes.NewRelease{Stack: "app", Version: "1.0"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := op.PinDeployment(ctx, "acme-prod", "1.0", "hold for the audit"); err != nil {
		t.Fatal(err)
	}
	if _, err := op.RotateToken(ctx, "globex-prod", apitypes.TokenRotation{Reason: "leaked"}); err != nil {
		t.Fatal(err)
	}
	if err := op.DeleteDeployment(ctx, "globex-prod", "customer left"); err != nil {
		t.Fatal(err)
	}
	if err := adm.Do(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(viewer.ID), nil, nil); err != nil {
		t.Fatal(err)
	}

	_, err := apiclient.New(m.URL(), viewer.Secret).Audit(ctx, apitypes.AuditQuery{})
	wantAPIError(t, "a revoked viewer reads the audit log", err, http.StatusUnauthorized)

	all, err := op.Audit(ctx, apitypes.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	got := auditActions(all)
	want := []string{"token.revoke admin (from configuration)", "deployment.delete alice", "deployment.rotate-token alice",
		"pin.pin alice", "token.create admin (from configuration)", "token.create admin (from configuration)", "token.create periscope"}
	if len(got) != len(want) {
		t.Fatalf("audit log %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("audit log %v, want %v", got, want)
		}
	}
	pin, del, revoke := all.Items[3], all.Items[1], all.Items[0]
	var detail struct {
		To string `json:"to_release"`
	}
	if err := json.Unmarshal(pin.Detail, &detail); err != nil || pin.ActorRole != "operator" || pin.Customer != "acme" ||
		pin.Target != "1.0" || pin.Reason != "hold for the audit" || detail.To != "1.0" || pin.Outcome != "succeeded" {
		t.Errorf("pin entry %+v (detail %s): want alice the operator pinning acme's deployment to 1.0 with the reason", pin, pin.Detail)
	}
	if del.Customer != "globex" || del.DeploymentID != "globex-prod" || del.Reason != "customer left" {
		t.Errorf("deletion entry %+v: want globex-prod of globex with its reason (the customer outlives the deployment)", del)
	}
	if revoke.Target != "dash" || revoke.ActorRole != "admin" {
		t.Errorf("revocation entry %+v: want the dash token revoked by an admin", revoke)
	}
	for _, e := range all.Items {
		if len(e.Detail) > 0 && (!json.Valid(e.Detail) || e.Detail[0] != '{') {
			t.Errorf("entry %s has detail %s, not a JSON object", e.Action, e.Detail)
		}
	}

	for _, c := range []struct {
		q    apitypes.AuditQuery
		want int
	}{
		{apitypes.AuditQuery{Actor: "alice"}, 3},
		{apitypes.AuditQuery{Action: "token."}, 4},
		{apitypes.AuditQuery{Action: "token.revoke"}, 1},
		{apitypes.AuditQuery{Deployment: "globex-prod"}, 2},
		{apitypes.AuditQuery{Customer: "acme"}, 1},
		{apitypes.AuditQuery{Outcome: "succeeded"}, 7},
		{apitypes.AuditQuery{Outcome: "failed"}, 0},
		{apitypes.AuditQuery{Since: "1h"}, 7},
		{apitypes.AuditQuery{Until: "1h"}, 0},
		{apitypes.AuditQuery{Since: "2000-01-01T00:00:00Z", Until: "2100-01-01T00:00:00Z", Actor: "alice", Action: "deployment."}, 2},
	} {
		p, err := op.Audit(ctx, c.q)
		if err != nil {
			t.Fatalf("%+v: %v", c.q, err)
		}
		if len(p.Items) != c.want {
			t.Errorf("%+v: %v, want %d entries", c.q, auditActions(p), c.want)
		}
	}

	// Pages of two cover the log exactly.
	var paged []apitypes.AuditEntry
	q := apitypes.AuditQuery{Limit: 2}
	for range 10 {
		p, err := op.Audit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, p.Items...)
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if len(paged) != len(all.Items) {
		t.Fatalf("pages of 2 hold %d entries, want %d", len(paged), len(all.Items))
	}
	for i := range paged {
		if paged[i].ID != all.Items[i].ID {
			t.Errorf("paged entry %d is %s, want %s", i, paged[i].ID, all.Items[i].ID)
		}
	}

	for _, bad := range []apitypes.AuditQuery{{Cursor: "made-up"}, {Since: "yesterday"}, {Until: "soon"}, {Limit: 1001},
		{Since: "2026-01-02T00:00:00Z", Until: "2026-01-01T00:00:00Z"}} {
		_, err := op.Audit(ctx, bad)
		wantAPIError(t, "audit with "+bad.Values().Encode(), err, http.StatusBadRequest)
	}
	tok := newToken(t, adm, "wall", "viewer")
	_, err = apiclient.New(m.URL(), tok.Secret).Audit(ctx, apitypes.AuditQuery{})
	wantAPIError(t, "a viewer reads the audit log", err, http.StatusForbidden)
	// Append-only: no method but GET is routed.
	for _, method := range []string{"DELETE", "PUT", "POST", "PATCH"} {
		wantAPIError(t, method+" /api/v1/audit", adm.Do(ctx, method, "/api/v1/audit", nil, nil), http.StatusMethodNotAllowed)
		wantAPIError(t, method+" /api/v1/audit/"+all.Items[0].ID, adm.Do(ctx, method, "/api/v1/audit/"+all.Items[0].ID, nil, nil), http.StatusNotFound)
	}
}
