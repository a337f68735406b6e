package apitypes

import (
	"encoding/json"
	"net/url"
	"strconv"
	"time"
)

// Audit log page sizes (GET /api/v1/audit?limit=).
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// AuditEntry is one entry of the manager's audit log (GET /api/v1/audit).
type AuditEntry struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
	// Actor is an API token's name, "periscope" for the manager itself, or
	// empty for a sign-in that failed; ActorRole is the token's role.
	Actor     string `json:"actor"`
	ActorRole string `json:"actor_role,omitempty"`
	// Action is dotted: command.invoke, pin.rollback, deployment.rotate-token,
	// token.create, session.signin, …
	Action       string `json:"action"`
	DeploymentID string `json:"deployment_id,omitempty"`
	Customer     string `json:"customer,omitempty"`
	// Target is what was acted on beyond the deployment: a command, a
	// release, a token name.
	Target  string `json:"target,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Detail is a JSON object with the action's particulars.
	Detail json.RawMessage `json:"detail,omitempty"`
}

// AuditPage is a page of the audit log, newest first.
type AuditPage struct {
	Items []AuditEntry `json:"items"`
	// Next is the cursor of the following page ("" on the last page).
	Next string `json:"next"`
}

// AuditQuery is the filter of GET /api/v1/audit; empty fields match everything.
// Action matches exactly or, ending in '.', as a prefix ("pin."). Since
// (inclusive) and Until (exclusive) are RFC 3339 or a duration before now
// ("24h").
type AuditQuery struct {
	Actor, Action, Deployment, Customer, Outcome string
	Since, Until                                 string
	Limit                                        int
	Cursor                                       string
}

// Values is the query's URL parameters.
func (q AuditQuery) Values() url.Values {
	v := url.Values{}
	for _, p := range []struct{ name, value string }{{"actor", q.Actor}, {"action", q.Action}, {"deployment", q.Deployment},
		{"customer", q.Customer}, {"outcome", q.Outcome}, {"since", q.Since}, {"until", q.Until}, {"cursor", q.Cursor}} {
		if p.value != "" {
			v.Set(p.name, p.value)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}
