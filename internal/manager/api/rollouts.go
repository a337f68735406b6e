package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// Rollouts is what the API needs of the rollout engine.
type Rollouts interface {
	StartRollout(ctx context.Context, req rollouts.StartRequest) (rollouts.State, error)
	Get(ctx context.Context, id string) (rollouts.State, error)
	List(ctx context.Context, f store.RolloutFilter) ([]rollouts.State, error)
	Resume(ctx context.Context, id string, a rollouts.Actor) (rollouts.State, error)
	Abort(ctx context.Context, id string, a rollouts.Actor) (rollouts.State, error)
	Skip(ctx context.Context, id, dep string, a rollouts.Actor) (rollouts.State, error)
	Plans() []rolloutplan.Plan
	SetPlan(ctx context.Context, p rolloutplan.Plan, a rollouts.Actor) error
	RemovePlan(ctx context.Context, stack string, a rollouts.Actor) error
	Windows() []rollouts.WindowsEntry
	SetWindows(ctx context.Context, kind, owner string, ws rolloutplan.Windows, a rollouts.Actor) error
	RemoveWindows(ctx context.Context, kind, owner string, a rollouts.Actor) error
}

// maxRolloutPage bounds GET /api/v1/rollouts.
const maxRolloutPage = 500

// WithRollouts makes the rollout routes answer from r, and returns a for
// chaining. Without it they answer 503.
func (a *API) WithRollouts(r Rollouts) *API {
	r = orNil(r)
	a.rollouts = r
	return a
}

func (a *API) rolloutRoutes() []Route {
	return []Route{
		{"GET", "/api/v1/rollouts", auth.RoleViewer, a.listRollouts},
		{"POST", "/api/v1/rollouts", auth.RoleOperator, a.startRollout},
		{"GET", "/api/v1/rollout-plans", auth.RoleViewer, a.rolloutPlans},
		{"PUT", "/api/v1/rollout-plans/{stack}", auth.RoleOperator, a.putRolloutPlan},
		{"DELETE", "/api/v1/rollout-plans/{stack}", auth.RoleOperator, a.deleteRolloutPlan},
		{"GET", "/api/v1/rollouts/{id}", auth.RoleViewer, a.getRollout},
		{"POST", "/api/v1/rollouts/{id}/resume", auth.RoleOperator, a.rolloutAction("resume")},
		{"POST", "/api/v1/rollouts/{id}/abort", auth.RoleOperator, a.rolloutAction("abort")},
		{"POST", "/api/v1/rollouts/{id}/skip", auth.RoleOperator, a.rolloutAction("skip")},
		{"GET", "/api/v1/update-windows", auth.RoleViewer, a.listWindows},
		{"GET", "/api/v1/update-windows/customers/{owner}", auth.RoleViewer, a.getWindows(store.WindowsOfCustomer)},
		{"PUT", "/api/v1/update-windows/customers/{owner}", auth.RoleOperator, a.putWindows(store.WindowsOfCustomer)},
		{"DELETE", "/api/v1/update-windows/customers/{owner}", auth.RoleOperator, a.deleteWindows(store.WindowsOfCustomer)},
		{"GET", "/api/v1/update-windows/deployments/{owner}", auth.RoleViewer, a.getWindows(store.WindowsOfDeployment)},
		{"PUT", "/api/v1/update-windows/deployments/{owner}", auth.RoleOperator, a.putWindows(store.WindowsOfDeployment)},
		{"DELETE", "/api/v1/update-windows/deployments/{owner}", auth.RoleOperator, a.deleteWindows(store.WindowsOfDeployment)},
	}
}

func (a *API) rolloutsOff(w http.ResponseWriter) bool {
	return unavailable(w, a.rollouts == nil, "this manager runs no progressive rollouts")
}

func actor(tok auth.APIToken, reason string) rollouts.Actor {
	return rollouts.Actor{Name: tok.Name, Role: string(tok.Role), Reason: reason}
}

func (a *API) listRollouts(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	if a.rolloutsOff(w) {
		return
	}
	q := r.URL.Query()
	f := store.RolloutFilter{Stack: q.Get("stack"), Limit: 100}
	switch q.Get("unfinished") {
	case "", "false":
	case "true":
		f.Unfinished = true
	default:
		writeError(w, http.StatusBadRequest, "invalid", "unfinished: want true or false")
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxRolloutPage {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("limit: want a number from 1 to %d", maxRolloutPage))
			return
		}
		f.Limit = n
	}
	rs, err := a.rollouts.List(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, apitypes.RolloutList{Rollouts: rs})
}

func (a *API) startRollout(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	if a.rolloutsOff(w) {
		return
	}
	var body apitypes.NewRollout
	if !decode(w, r, &body) {
		return
	}
	if a.fleet != nil {
		rels := a.fleet.Releases(body.Stack)
		if !slices.ContainsFunc(rels, func(rv registry.ReleaseView) bool { return rv.Release.Version == body.Release }) {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("release %s of stack %s is not published; publish it first (POST /api/v1/releases)", body.Release, body.Stack))
			return
		}
		if body.Baseline == "" {
			body.Baseline = previousRelease(rels, body.Release)
		}
	}
	s, err := a.rollouts.StartRollout(r.Context(), rollouts.StartRequest{Stack: body.Stack, Release: body.Release, Baseline: body.Baseline,
		Urgent: body.Urgent, Actor: actor(tok, body.Reason)})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
}

// previousRelease is the newest of rels older than release ("" when none is).
func previousRelease(rels []registry.ReleaseView, release string) string {
	best := ""
	for _, rv := range rels {
		v := rv.Release.Version
		if fleet.CompareVersions(v, release) < 0 && (best == "" || fleet.CompareVersions(v, best) > 0) {
			best = v
		}
	}
	return best
}

func (a *API) getRollout(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	if a.rolloutsOff(w) {
		return
	}
	s, err := a.rollouts.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

// rolloutAction serves the operator action named verb: resume, abort or skip.
func (a *API) rolloutAction(verb string) func(http.ResponseWriter, *http.Request, auth.APIToken) {
	return func(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
		if a.rolloutsOff(w) {
			return
		}
		var body apitypes.RolloutAction
		if !decode(w, r, &body) {
			return
		}
		id, act := r.PathValue("id"), actor(tok, body.Reason)
		var (
			s   rollouts.State
			err error
		)
		switch verb {
		case "resume":
			s, err = a.rollouts.Resume(r.Context(), id, act)
		case "abort":
			s, err = a.rollouts.Abort(r.Context(), id, act)
		default:
			if body.Deployment == "" {
				writeError(w, http.StatusBadRequest, "invalid", "deployment: name the deployment to leave out")
				return
			}
			s, err = a.rollouts.Skip(r.Context(), id, body.Deployment, act)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s)
	}
}

func (a *API) rolloutPlans(w http.ResponseWriter, _ *http.Request, _ auth.APIToken) {
	if a.rolloutsOff(w) {
		return
	}
	writeJSON(w, http.StatusOK, apitypes.RolloutPlans{Plans: a.rollouts.Plans()})
}

func (a *API) putRolloutPlan(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	if a.rolloutsOff(w) {
		return
	}
	var body apitypes.NewRolloutPlan
	if !decode(w, r, &body) {
		return
	}
	p := rolloutplan.Plan{Stack: r.PathValue("stack"), Waves: body.Waves}
	if err := a.rollouts.SetPlan(r.Context(), p, actor(tok, body.Reason)); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (a *API) deleteRolloutPlan(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	a.removeSetting(w, r, tok, func(ctx context.Context, act rollouts.Actor) error {
		return a.rollouts.RemovePlan(ctx, r.PathValue("stack"), act)
	})
}

// removeSetting serves a DELETE of something set through the API (a plan,
// windows): an optional body with the reason, 204 once removed.
func (a *API) removeSetting(w http.ResponseWriter, r *http.Request, tok auth.APIToken, remove func(context.Context, rollouts.Actor) error) {
	if a.rolloutsOff(w) {
		return
	}
	var body apitypes.RolloutAction
	if !decodeOptional(w, r, &body) {
		return
	}
	if err := remove(r.Context(), actor(tok, body.Reason)); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listWindows(w http.ResponseWriter, _ *http.Request, _ auth.APIToken) {
	if a.rolloutsOff(w) {
		return
	}
	writeJSON(w, http.StatusOK, apitypes.UpdateWindowsList{Windows: a.rollouts.Windows()})
}

// getWindows serves one owner's windows in force, 404 when it has none (it
// may update at any time).
func (a *API) getWindows(kind string) func(http.ResponseWriter, *http.Request, auth.APIToken) {
	return func(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
		if a.rolloutsOff(w) {
			return
		}
		owner := r.PathValue("owner")
		for _, en := range a.rollouts.Windows() {
			if en.Kind == kind && en.Owner == owner {
				writeJSON(w, http.StatusOK, en)
				return
			}
		}
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s %s has no update windows of its own: it may update at any time (or in its customer's windows)", kind, owner))
	}
}

func (a *API) putWindows(kind string) func(http.ResponseWriter, *http.Request, auth.APIToken) {
	return func(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
		if a.rolloutsOff(w) {
			return
		}
		var body apitypes.NewUpdateWindows
		if !decode(w, r, &body) {
			return
		}
		owner := r.PathValue("owner")
		if err := a.rollouts.SetWindows(r.Context(), kind, owner, body.Windows, actor(tok, body.Reason)); err != nil {
			a.fail(w, r, err)
			return
		}
		a.getWindows(kind)(w, r, tok)
	}
}

func (a *API) deleteWindows(kind string) func(http.ResponseWriter, *http.Request, auth.APIToken) {
	return func(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
		a.removeSetting(w, r, tok, func(ctx context.Context, act rollouts.Actor) error {
			return a.rollouts.RemoveWindows(ctx, kind, r.PathValue("owner"), act)
		})
	}
}
