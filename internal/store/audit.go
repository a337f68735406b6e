package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// The manager's one audit log: every operator action (commands, pins and
// rollbacks, deployment token changes and deletion, API token creation and
// revocation, dashboard sign-ins) as append-only entries. No API changes or
// deletes an entry; only retention (PruneAudit) removes the oldest.

// Audit actions. The dotted prefix groups them for filtering ("command." matches
// every command action).
const (
	ActionCommandInvoke = "command.invoke" // outcome "queued" or "refused"
	ActionCommandCancel = "command.cancel"
	ActionCommandResult = "command.result" // outcome is the invocation's final state

	// Pin changes: "pin." and the fleet.PinAction; Target is the desired
	// release after the change.
	ActionPinPrefix = "pin."
	// Deployment token changes and deletion: "deployment." and the
	// fleet.DeploymentAction.
	ActionDeploymentPrefix = "deployment."
	// ActionThresholdsSet changed a deployment's runtime thresholds; Detail
	// holds the set before and after.
	ActionThresholdsSet = "thresholds.set"
	ActionTokenCreate   = "token.create" // Target is the new API token's name
	ActionTokenRevoke   = "token.revoke" // Target is the revoked API token's name
	// ActionSignIn is a dashboard sign-in; a failed one names no actor and
	// never the token tried, only the address in Detail.
	ActionSignIn = "session.signin"
)

// Outcomes of the actions that are not commands (commands use their
// invocation states).
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// ErrBadCursor means ListAudit was given an After that is not a cursor it
// returned.
var ErrBadCursor = errors.New("not an audit cursor")

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	// ID orders entries with At; the store assigns one when it is empty.
	ID string    `json:"id"`
	At time.Time `json:"at"`
	// Actor is who acted: an API token's name, "agent:<deployment>" or "periscope"
	// for the manager itself. ActorRole is the token's role, when there is one.
	Actor     string `json:"actor"`
	ActorRole string `json:"actor_role,omitempty"`
	Action    string `json:"action"`
	// DeploymentID and Customer are the deployment acted on, when there is one.
	DeploymentID string `json:"deployment_id,omitempty"`
	Customer     string `json:"customer,omitempty"`
	// Target names what was acted on beyond the deployment: a command, a
	// release, a token name.
	Target  string `json:"target,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Detail is a JSON object with the action's particulars (parameters,
	// invocation id, exit status, output size and hash, from and to releases).
	Detail string `json:"detail,omitempty"`
}

// AuditFilter selects audit entries. Empty fields match everything; Action
// matches exactly or, ending in '.', as a prefix; Since is inclusive and Until
// exclusive. Entries come newest first; After is the Cursor of the last entry of
// the previous page.
type AuditFilter struct {
	Actor, Action, DeploymentID, Customer, Outcome string
	Since, Until                                   time.Time
	Limit                                          int
	After                                          string
}

// Audit is the audit log's storage.
type Audit interface {
	// AppendAudit appends entries in one transaction.
	AppendAudit(ctx context.Context, entries []AuditEntry) error
	// ListAudit returns up to f.Limit entries matching f, newest first, and the
	// cursor of the next page ("" when there is none); ErrBadCursor if f.After
	// is not a cursor it returned.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, string, error)
	// PruneAudit removes entries older than before and says how many.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}

// pinDetail is the Detail of a pin change's audit entry.
type pinDetail struct {
	ChangeID string `json:"change_id"`
	From     string `json:"from_release"`
	To       string `json:"to_release"`
	Running  string `json:"running_release"`
}

// PinAudit is the audit log entry of a pin change of a deployment of customer.
func PinAudit(c fleet.PinChange, customer string) AuditEntry {
	return AuditEntry{At: c.At, Actor: c.By, ActorRole: c.ByRole, Action: ActionPinPrefix + string(c.Action),
		DeploymentID: c.DeploymentID, Customer: customer, Target: c.To, Outcome: OutcomeSucceeded, Reason: c.Reason,
		Detail: detailJSON(pinDetail{ChangeID: c.ChangeID, From: c.From, To: c.To, Running: c.Running})}
}

// PinAudits is the audit log entries of pin changes, each with the customer of
// its deployment among recs (what ApplyPins writes).
func PinAudits(recs []DeploymentRecord, changes []fleet.PinChange) []AuditEntry {
	customer := make(map[string]string, len(recs))
	for i := range recs {
		customer[recs[i].Deployment.ID] = recs[i].Deployment.Customer
	}
	out := make([]AuditEntry, len(changes))
	for i, c := range changes {
		out[i] = PinAudit(c, customer[c.DeploymentID])
	}
	return out
}

// DeploymentAudit is the audit log entry of a token change or deletion of a
// deployment of customer.
func DeploymentAudit(c fleet.DeploymentChange, customer string) AuditEntry {
	return AuditEntry{At: c.At, Actor: c.By, ActorRole: c.ByRole, Action: ActionDeploymentPrefix + string(c.Action),
		DeploymentID: c.DeploymentID, Customer: customer, Outcome: OutcomeSucceeded, Reason: c.Reason,
		Detail: detailJSON(struct {
			What string `json:"what,omitempty"`
		}{c.Detail})}
}

// ThresholdsAudit is the audit log entry of a change of the thresholds of
// deployment id of customer, from old to set, by actor (of role) at at.
func ThresholdsAudit(id, customer string, old, set thresholds.Set, at time.Time, actor, role, reason string) AuditEntry {
	return AuditEntry{At: at, Actor: actor, ActorRole: role, Action: ActionThresholdsSet, DeploymentID: id, Customer: customer,
		Target: set.Summary(), Outcome: OutcomeSucceeded, Reason: reason,
		Detail: detailJSON(struct {
			From thresholds.Set `json:"from"`
			To   thresholds.Set `json:"to"`
		}{old, set})}
}

// detailJSON encodes a Detail object without HTML escaping, as a backend's SQL
// JSON functions would.
func detailJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only plain string structs are encoded here.
		panic(fmt.Sprintf("encode audit detail: %v", err))
	}
	return strings.TrimSuffix(b.String(), "\n")
}
