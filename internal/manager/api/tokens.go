package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// Agent tokens and deletion of deployments. Each change is audited with the
// caller's token name as who and the body's reason as why; GET …/history reads
// the trail, also of a deployment that was deleted.

func (a *API) tokenRoutes() []Route {
	return []Route{
		{"POST", "/api/v1/deployments/{id}/rotate-token", auth.RoleOperator, a.rotateToken},
		{"POST", "/api/v1/deployments/{id}/revoke-token", auth.RoleOperator, a.revokeToken},
		{"DELETE", "/api/v1/deployments/{id}", auth.RoleOperator, a.deleteDeployment},
		{"GET", "/api/v1/deployments/{id}/history", auth.RoleViewer, a.deploymentHistory},
		{"GET", "/api/v1/deployments/history", auth.RoleViewer, a.deploymentHistory},
	}
}

// tokenStateJSON names a deployment's token state for the API.
func tokenStateJSON(t registry.TokenState) string {
	switch {
	case t.Revoked:
		return apitypes.TokenRevoked
	case t.Rotating:
		return apitypes.TokenRotating
	}
	return apitypes.TokenActive
}

func (a *API) rotateToken(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.TokenRotation
	if !decodeOptional(w, r, &body) {
		return
	}
	var overlap time.Duration
	if body.Overlap != "" {
		d, err := time.ParseDuration(body.Overlap)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("overlap: %q is not a positive duration like 24h", body.Overlap))
			return
		}
		overlap = d
	}
	id := r.PathValue("id")
	rot, err := a.fleet.RotateToken(r.Context(), registry.RotateRequest{ID: id, Overlap: overlap, By: tok.Name, ByRole: string(tok.Role), Reason: body.Reason})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := apitypes.RotatedToken{DeploymentID: id, Token: rot.Token, Delivery: apitypes.DeliveryManual,
		PreviousTokenValid: rot.Overlapping, PreviousTokenValidUntil: timePtr(rot.PreviousUntil)}
	if rot.Overlapping {
		out.Delivery = apitypes.DeliveryNextCheckin
		if v, err := a.fleet.Get(id); err == nil && v.Deployment.Connected {
			out.Delivery = apitypes.DeliveryPushed
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.TokenRevocation
	if !decode(w, r, &body) {
		return
	}
	id := r.PathValue("id")
	if err := a.fleet.RevokeToken(r.Context(), registry.RevokeRequest{ID: id, PreviousOnly: body.PreviousOnly, By: tok.Name, ByRole: string(tok.Role), Reason: body.Reason}); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.fleet.Get(id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, DeploymentJSON(v))
}

func (a *API) deleteDeployment(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.DeploymentDeletion
	if !decode(w, r, &body) {
		return
	}
	if err := a.fleet.DeleteDeployment(r.Context(), r.PathValue("id"), tok.Name, string(tok.Role), body.Reason); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) deploymentHistory(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	limit, err := intParam(r, "limit", 100, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	// One deployment's trail by path, or the whole fleet's (optionally one
	// deployment's) from GET /api/v1/deployments/history?deployment=.
	id := r.PathValue("id")
	if id == "" {
		id = r.URL.Query().Get("deployment")
	}
	chs, err := a.fleet.DeploymentChanges(r.Context(), id, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if chs == nil {
		chs = []fleet.DeploymentChange{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": chs})
}
