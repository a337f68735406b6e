package api

import (
	"net/http"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// deploymentRuntime answers a deployment's runtime state: its components from
// the agent's health and the newest runtime signals in the window (since=,
// until=; the last 10 minutes by default).
func (a *API) deploymentRuntime(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	t, ok := a.store(w)
	if !ok {
		return
	}
	v, err := a.fleet.Get(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := telquery.ParseRuntimeQuery(v.Deployment.ID, r.URL.Query(), a.clock.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rt, err := runtimeview.Load(r.Context(), t, v.Deployment.Health, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rt)
}
