package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store"
)

// The audit log: read-only. No route changes or deletes an entry; only the
// manager's retention sweep removes the oldest.

// WithAudit makes GET /api/v1/audit answer from l and returns a for chaining;
// without it the route answers 503.
func (a *API) WithAudit(l store.Audit) *API {
	a.audit = l
	return a
}

func (a *API) auditRoutes() []Route {
	// Operator, not viewer: the log names every token and its role, the
	// addresses sign-ins came from and the reasons given for changes, which a
	// read-only token (a wall display, a customer-facing status page) has no
	// need to see; operators make these changes and must be able to review who
	// did what. Not admin-only, so a team's operators can audit each other.
	return []Route{{"GET", "/api/v1/audit", auth.RoleOperator, a.listAudit}}
}

// ParseAuditFilter reads an audit filter from URL parameters (actor, action,
// deployment, customer, outcome, since, until, limit, cursor), reading relative
// times against now. Errors wrap telquery.ErrInvalid.
func ParseAuditFilter(v url.Values, now time.Time) (store.AuditFilter, error) {
	f := store.AuditFilter{Actor: v.Get("actor"), Action: v.Get("action"), DeploymentID: v.Get("deployment"),
		Customer: v.Get("customer"), Outcome: v.Get("outcome"), After: v.Get("cursor"), Limit: apitypes.DefaultAuditLimit}
	var err error
	if f.Since, err = telquery.ParseTime(v.Get("since"), now); err != nil {
		return f, fmt.Errorf("since: %w", err)
	}
	if f.Until, err = telquery.ParseTime(v.Get("until"), now); err != nil {
		return f, fmt.Errorf("until: %w", err)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, fmt.Errorf("%w: since must be before until", telquery.ErrInvalid)
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > apitypes.MaxAuditLimit {
			return f, fmt.Errorf("%w: limit %q must be a whole number from 1 to %d", telquery.ErrInvalid, s, apitypes.MaxAuditLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// AuditEntryJSON is an audit entry as the API sends it.
func AuditEntryJSON(e store.AuditEntry) apitypes.AuditEntry {
	out := apitypes.AuditEntry{ID: e.ID, At: e.At, Actor: e.Actor, ActorRole: e.ActorRole, Action: e.Action, DeploymentID: e.DeploymentID,
		Customer: e.Customer, Target: e.Target, Outcome: e.Outcome, Reason: e.Reason}
	switch {
	case e.Detail == "":
	case json.Valid([]byte(e.Detail)):
		out.Detail = json.RawMessage(e.Detail)
	default:
		// The contract says an object; a writer that broke it still gets its
		// text through, as a JSON string.
		out.Detail, _ = json.Marshal(e.Detail)
	}
	return out
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	if a.audit == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this manager has no audit log")
		return
	}
	f, err := ParseAuditFilter(r.URL.Query(), a.clock.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	entries, next, err := a.audit.ListAudit(r.Context(), f)
	if errors.Is(err, store.ErrBadCursor) {
		writeError(w, http.StatusBadRequest, "invalid", "cursor: not one this manager gave out; start again without it")
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page := apitypes.AuditPage{Items: make([]apitypes.AuditEntry, len(entries)), Next: next}
	for i, e := range entries {
		page.Items[i] = AuditEntryJSON(e)
	}
	writeJSON(w, http.StatusOK, page)
}
