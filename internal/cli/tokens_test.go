package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// An admin creates a viewer token from the CLI and sees its secret once; the
// token works for reading, is listed without its secret, and stops working
// once revoked. An operator may not manage tokens.
func TestTokensVerb(t *testing.T) {
	lm := startManager(t)
	admin := *lm
	admin.token = "psk_cli-pins-admin"

	if _, err := admin.run(t, "tokens", "create", "grafana"); err == nil || !strings.Contains(err.Error(), "--role is required") {
		t.Fatalf("create without a role: %v", err)
	}
	if _, err := admin.run(t, "tokens", "create", "grafana", "--role", "root"); err == nil || !strings.Contains(err.Error(), "viewer, operator or admin") {
		t.Fatalf("create with an unknown role: %v", err)
	}
	out := admin.mustRun(t, "tokens", "create", "grafana", "--role", "viewer", "-o", "json")
	var tok apitypes.Token
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" || tok.Role != "viewer" || tok.ID == "" {
		t.Fatalf("tokens create -o json printed %s (%v), want the token with its secret", out, err)
	}
	viewer := apiclient.New(lm.m.URL(), tok.Secret)
	if _, err := viewer.Deployments(context.Background(), apiclient.Filter{}); err != nil {
		t.Fatalf("the new viewer token cannot read: %v", err)
	}

	out = admin.mustRun(t, "tokens", "create", "ci", "--role", "operator")
	contains(t, out, "API token ci", "role operator", "shown only now")

	out = admin.mustRun(t, "tokens", "list")
	contains(t, out, "ID", "NAME", "ROLE", "grafana", "viewer", "release-bot", "operator", "ci")
	if strings.Contains(out, tok.Secret) {
		t.Errorf("tokens list shows a secret:\n%s", out)
	}
	listed := listItems[apitypes.Token](t, admin.mustRun(t, "tokens", "list", "-o", "json"))
	for _, l := range listed {
		if l.Secret != "" {
			t.Errorf("tokens list -o json carries the secret of %s", l.Name)
		}
	}

	contains(t, admin.mustRun(t, "tokens", "revoke", tok.ID), "API token "+tok.ID+" revoked.")
	if _, err := viewer.Deployments(context.Background(), apiclient.Filter{}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a revoked token still reads: %v", err)
	}
	if _, err := lm.run(t, "tokens", "list"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("an operator lists tokens: %v, want the manager's 403", err)
	}
}
