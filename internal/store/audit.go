package store

import (
	"context"
	"time"
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
)

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
	// cursor of the next page ("" when there is none).
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, string, error)
	// PruneAudit removes entries older than before and says how many.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}
