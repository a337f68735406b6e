package api

import (
	"net/http"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// Runtime thresholds: the vendor sets a deployment's whole set at once, with a
// reason that goes into the audit log; the agent gets it at its next check-in
// (at once over a push connection) and reports holding it.

func (a *API) thresholdsRoutes() []Route {
	return []Route{
		{"GET", "/api/v1/deployments/{id}/thresholds", auth.RoleViewer, a.getThresholds},
		{"PUT", "/api/v1/deployments/{id}/thresholds", auth.RoleOperator, a.putThresholds},
	}
}

func (a *API) getThresholds(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	id := r.PathValue("id")
	t, err := a.fleet.Thresholds(id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, thresholdsJSON(id, t))
}

func (a *API) putThresholds(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.NewThresholds
	if !decode(w, r, &body) {
		return
	}
	id := r.PathValue("id")
	t, err := a.fleet.SetThresholds(r.Context(), registry.ThresholdsRequest{ID: id, Set: body.Thresholds,
		By: tok.Name, ByRole: string(tok.Role), Reason: body.Reason})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, thresholdsJSON(id, t))
}

func thresholdsJSON(id string, t registry.Thresholds) apitypes.Thresholds {
	out := apitypes.Thresholds{DeploymentID: id, Thresholds: t.Set, Effective: t.Effective, EffectiveFrom: t.From, Hash: t.Hash, InSync: t.InSync}
	if t.Agent != nil {
		h := t.Agent.Hash
		out.AgentHash, out.AgentError, out.ReportedAt = &h, t.Agent.Error, timePtr(t.ReportedAt)
	}
	return out
}
