package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// The operator rotates a deployment's token, revokes it and deletes the
// deployment from the CLI; history shows who did each and why.
func TestDeploymentTokenVerbs(t *testing.T) {
	lm := startManager(t)
	out := lm.mustRun(t, "deployments", "rotate-token", "acme-prod", "--reason", "quarterly", "--overlap", "24h", "-o", "json")
	var rot apitypes.RotatedToken
	if err := json.Unmarshal([]byte(out), &rot); err != nil {
		t.Fatalf("rotate-token -o json: %v\n%s", err, out)
	}
	if !strings.HasPrefix(rot.Token, "pdt_") || !rot.PreviousTokenValid || rot.PreviousTokenValidUntil == nil {
		t.Errorf("rotate-token answered %+v", rot)
	}
	contains(t, lm.mustRun(t, "deployments", "show", "acme-prod"), "Agent token", "rotating")
	if _, err := lm.run(t, "deployments", "revoke-token", "acme-prod"); err == nil || !strings.Contains(err.Error(), "reason") {
		t.Errorf("revoke-token without --reason: %v, want it asked for", err)
	}
	contains(t, lm.mustRun(t, "deployments", "revoke-token", "acme-prod", "--reason", "leaked"), "revoked", "rotate-token acme-prod")
	contains(t, lm.mustRun(t, "deployments", "rotate-token", "acme-prod", "--reason", "reinstall"), "PERISCOPE_AGENT_TOKEN", "restart the agent")
	if _, err := lm.run(t, "deployments", "delete", "acme-prod"); err == nil {
		t.Error("delete without --reason succeeded")
	}
	contains(t, lm.mustRun(t, "deployments", "delete", "acme-prod", "--reason", "customer left"), "acme-prod deleted")
	if _, err := lm.run(t, "deployments", "show", "acme-prod"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("show after delete: %v, want 404", err)
	}
	if out := lm.mustRun(t, "deployments", "list"); strings.Contains(out, "acme-prod") {
		t.Errorf("deleted deployment still listed:\n%s", out)
	}
	hist := lm.mustRun(t, "deployments", "history", "acme-prod")
	contains(t, hist, "delete", "customer left", "revoke-token", "leaked", "rotate-token", "quarterly", "release-bot")
	if strings.Contains(hist, rot.Token) {
		t.Errorf("history shows a token:\n%s", hist)
	}
}
