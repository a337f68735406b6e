package store

import (
	"context"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
)

// Invocation is one remote command run on one deployment, as the manager keeps
// it: who asked, why, when it moved through its states, and what it produced.
type Invocation struct {
	ID           string `json:"id"`
	DeploymentID string `json:"deployment_id"`
	Customer     string `json:"customer"`
	Command      string `json:"command"`
	// Params are the validated parameters (numbers come back as json.Number).
	Params command.Params `json:"params,omitempty"`
	// Spec is the declaration the parameters were checked against, sent to the
	// agent with the invocation; nil for one refused as undeclared.
	Spec *command.Spec `json:"-"`
	// Reason is why the operator ran it.
	Reason string `json:"reason"`
	// Actor and ActorRole are the API token's name and role.
	Actor     string        `json:"actor"`
	ActorRole string        `json:"actor_role,omitempty"`
	State     command.State `json:"state"`
	// StateReason explains a refusal, failure, expiry or cancellation.
	StateReason string    `json:"state_reason,omitempty"`
	QueuedAt    time.Time `json:"queued_at"`
	Deadline    time.Time `json:"deadline"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	// Result is what the run produced, once it ended (zero before).
	command.Result
}

// InvocationFilter selects invocations. Empty fields match everything; Since is
// inclusive on the queued time. Invocations come newest first; After is the
// cursor of the last one of the previous page.
type InvocationFilter struct {
	DeploymentID, Customer, Command string
	State                           command.State
	Since                           time.Time
	Limit                           int
	After                           string
}

// Commands persists remote-command invocations under the rules of the package
// documentation.
type Commands interface {
	// CreateInvocations inserts invocations and appends the audit entries in
	// one transaction; ErrConflict if any id exists, in which case nothing is
	// written.
	CreateInvocations(ctx context.Context, invs []Invocation, audit []AuditEntry) error
	// AdvanceInvocation moves the invocation inv.ID of deployment
	// inv.DeploymentID to inv.State, writing its reason, times and result, only
	// if inv.State follows the stored state (command.State.Follows). A time
	// already stored is kept. ErrNotFound if that deployment has no such
	// invocation, ErrConflict (with the stored invocation) if the move is not
	// forward. When the move happens and audit is not nil, the entries audit
	// returns for the invocation as stored are appended in the same
	// transaction: a result is never stored without its audit entry.
	AdvanceInvocation(ctx context.Context, inv Invocation, audit AuditFunc) (Invocation, error)
	// CancelInvocation moves a queued invocation to cancelled with reason, at
	// at; ErrNotFound if there is none, ErrConflict (with the stored invocation)
	// if it is no longer queued: one already handed to an agent may be running.
	// The entries audit returns are appended in the same transaction.
	CancelInvocation(ctx context.Context, id, reason string, at time.Time, audit AuditFunc) (Invocation, error)
	// GetInvocation returns one invocation; ErrNotFound if there is none.
	GetInvocation(ctx context.Context, id string) (Invocation, error)
	// ListInvocations returns up to f.Limit invocations matching f, newest
	// first, and the cursor of the next page ("" when there is none).
	ListInvocations(ctx context.Context, f InvocationFilter) ([]Invocation, string, error)
	// PendingInvocations returns the queued and delivered invocations of one
	// deployment, oldest first: what its agent has yet to acknowledge running.
	PendingInvocations(ctx context.Context, deploymentID string) ([]Invocation, error)
	// PendingDeployments returns the deployments that have queued or delivered
	// invocations, in no particular order: one read that spares every other
	// deployment's check-in a read of its own after a manager starts.
	PendingDeployments(ctx context.Context) ([]string, error)
	// OverdueInvocations returns up to limit invocations not yet final whose
	// deadline is at or before now, oldest deadline first.
	OverdueInvocations(ctx context.Context, now time.Time, limit int) ([]Invocation, error)
}

// AuditFunc returns the audit entries a change to inv writes, given inv as it
// is stored after the change.
type AuditFunc func(inv Invocation) []AuditEntry
