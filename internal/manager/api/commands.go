package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store"
)

// Commands is what the API needs of the remote-command service.
type Commands interface {
	Invoke(ctx context.Context, req commands.Request) ([]store.Invocation, error)
	Get(ctx context.Context, id string) (store.Invocation, error)
	List(ctx context.Context, f store.InvocationFilter) ([]store.Invocation, string, error)
	// Wait returns the invocation once final, or as it is when ctx ends.
	Wait(ctx context.Context, id string) (store.Invocation, error)
	Cancel(ctx context.Context, actor commands.Actor, id, reason string) (store.Invocation, error)
}

// MaxWait bounds the long-poll of GET /api/v1/commands/{id}?wait=.
const MaxWait = 60 * time.Second

// WithCommands makes the command routes answer from c, and returns a for
// chaining. Without it they answer 503.
func (a *API) WithCommands(c Commands) *API {
	c = orNil(c)
	a.cmds = c
	return a
}

func (a *API) commandRoutes() []Route {
	return []Route{
		{"POST", "/api/v1/deployments/{id}/commands", auth.RoleOperator, a.invokeOne},
		{"POST", "/api/v1/commands", auth.RoleOperator, a.invokeMany},
		{"GET", "/api/v1/commands", auth.RoleViewer, a.listCommands},
		{"GET", "/api/v1/commands/{id}", auth.RoleViewer, a.getCommand},
		{"POST", "/api/v1/commands/{id}/cancel", auth.RoleOperator, a.cancelCommand},
	}
}

func (a *API) commandsOff(w http.ResponseWriter) bool {
	return unavailable(w, a.cmds == nil, "this manager runs no remote commands")
}

// request turns a body into the service's request, or answers 400.
func commandRequest(w http.ResponseWriter, tok auth.APIToken, body apitypes.NewInvocation, sel registry.Selector) (commands.Request, bool) {
	req := commands.Request{Actor: commands.Actor{Name: tok.Name, Role: string(tok.Role)}, Select: sel, Command: body.Command,
		Params: body.Params, Reason: body.Reason}
	if body.Reason == "" {
		writeError(w, http.StatusBadRequest, "invalid", "reason is required: say why this command runs on a customer's deployment")
		return req, false
	}
	if body.Timeout != "" {
		d, err := time.ParseDuration(body.Timeout)
		if err != nil || d < commands.MinDeliveryAllowance || d > commands.MaxDeliveryAllowance {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("timeout: %.40q: a duration between %v and %v", body.Timeout,
				commands.MinDeliveryAllowance, commands.MaxDeliveryAllowance))
			return req, false
		}
		req.Allowance = d
	}
	return req, true
}

func (a *API) invokeOne(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	a.invoke(w, r, tok, func(body apitypes.NewInvocation) (registry.Selector, string) {
		if body.Selection != nil {
			return registry.Selector{}, "selection: this route runs on the deployment in its path; use POST /api/v1/commands for a selection"
		}
		return registry.Selector{IDs: []string{r.PathValue("id")}}, ""
	})
}

func (a *API) invokeMany(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	a.invoke(w, r, tok, func(body apitypes.NewInvocation) (registry.Selector, string) {
		s := body.Selection
		if s == nil || (len(s.IDs) == 0 && s.Customer == "" && s.Stack == "" && s.Release == "" && s.Status == "" && len(s.Labels) == 0) {
			return registry.Selector{}, "selection: name deployment ids or at least one of customer, stack, release, status, labels"
		}
		f, err := pinFilter(apitypes.PinFilter{Customer: s.Customer, Stack: s.Stack, Release: s.Release, Status: s.Status, Labels: s.Labels})
		if err != nil {
			return registry.Selector{}, "selection." + err.Error()
		}
		return registry.Selector{IDs: s.IDs, Filter: f}, ""
	})
}

// invoke runs a command on what selectFrom picks from the body (or answers 400
// with its message): one invocation for a route with the deployment in its
// path, a list for a selection.
func (a *API) invoke(w http.ResponseWriter, r *http.Request, tok auth.APIToken, selectFrom func(apitypes.NewInvocation) (registry.Selector, string)) {
	if a.commandsOff(w) {
		return
	}
	var body apitypes.NewInvocation
	if !decode(w, r, &body) {
		return
	}
	sel, msg := selectFrom(body)
	if msg != "" {
		writeError(w, http.StatusBadRequest, "invalid", msg)
		return
	}
	req, ok := commandRequest(w, tok, body, sel)
	if !ok {
		return
	}
	invs, err := a.cmds.Invoke(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if body.Selection == nil {
		writeJSON(w, http.StatusCreated, invs[0])
		return
	}
	writeJSON(w, http.StatusCreated, apitypes.InvocationList{Items: invs})
}

func (a *API) listCommands(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	if a.commandsOff(w) {
		return
	}
	limit, err := intParam(r, "limit", 100, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	q := r.URL.Query()
	f := store.InvocationFilter{DeploymentID: q.Get("deployment"), Customer: q.Get("customer"), Command: q.Get("command"),
		State: command.State(q.Get("state")), Limit: limit, After: q.Get("after")}
	if f.State != "" && !f.State.Valid() {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("state: %.40q: want one of %v", f.State, command.States()))
		return
	}
	if s := q.Get("since"); s != "" {
		if f.Since, err = time.Parse(time.RFC3339, s); err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "since: an RFC 3339 time")
			return
		}
	}
	if f.After != "" && !isDigits(f.After) {
		writeError(w, http.StatusBadRequest, "invalid", "after: a cursor from a previous page's next")
		return
	}
	invs, next, err := a.cmds.List(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if invs == nil {
		invs = []store.Invocation{}
	}
	writeJSON(w, http.StatusOK, apitypes.InvocationList{Items: invs, Next: next})
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0 && len(s) <= 18
}

func (a *API) getCommand(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	if a.commandsOff(w) {
		return
	}
	id := r.PathValue("id")
	wait := time.Duration(0)
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > MaxWait {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("wait: %.40q: a duration up to %v", s, MaxWait))
			return
		}
		wait = d
	}
	var inv store.Invocation
	var err error
	if wait == 0 {
		inv, err = a.cmds.Get(r.Context(), id)
	} else {
		// The wait ends at its bound, when the client goes, or at shutdown.
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		stop := context.AfterFunc(a.closing, cancel)
		inv, err = a.cmds.Wait(ctx, id)
		stop()
		cancel()
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (a *API) cancelCommand(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	if a.commandsOff(w) {
		return
	}
	var body apitypes.CommandCancel
	if !decode(w, r, &body) {
		return
	}
	if body.Reason == "" {
		writeError(w, http.StatusBadRequest, "invalid", "reason is required")
		return
	}
	inv, err := a.cmds.Cancel(r.Context(), commands.Actor{Name: tok.Name, Role: string(tok.Role)}, r.PathValue("id"), body.Reason)
	if errors.Is(err, store.ErrConflict) {
		writeJSON(w, http.StatusConflict, apitypes.Error{Error: apitypes.ErrorBody{Code: "conflict",
			Message: fmt.Sprintf("invocation %s is %s: only a queued invocation can be cancelled", inv.ID, inv.State)}})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}
