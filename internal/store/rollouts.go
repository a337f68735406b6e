package store

import (
	"context"
	"time"
)

// Audit actions of progressive rollouts: Target is the release; the actor is an
// operator's token name or "rollout:<id>" when the rollout acted by itself.
const (
	ActionRolloutPrefix = "rollout."
	ActionRolloutStart  = "rollout.start"  // Detail says whether it ignores update windows (urgent)
	ActionRolloutWave   = "rollout.wave"   // a wave opened or passed
	ActionRolloutHalt   = "rollout.halt"   // a gate failed; Reason names it with the figures
	ActionRolloutResume = "rollout.resume" // an operator resumed a halted rollout
	ActionRolloutAbort  = "rollout.abort"  // an operator aborted it: every deployment it moved is pinned back
	ActionRolloutSkip   = "rollout.skip"   // an operator left a deployment out of it
	ActionRolloutDone   = "rollout.complete"
	ActionRolloutPlan   = "rollout.plan" // a stack's plan was set or removed through the API
	// ActionUpdateWindows: a customer's or deployment's update windows were
	// set or removed through the API; Target is "customer:<name>" or
	// "deployment:<id>".
	ActionUpdateWindows = "rollout.windows"
)

// RolloutRecord is one progressive rollout of a release as stored. The
// engine's state is one JSON document, State, which only the engine reads; the
// columns beside it are what listing needs.
type RolloutRecord struct {
	ID      string
	Stack   string
	Release string
	// Phase is the engine's word for where the rollout is (running, halted,
	// completed, …), kept for listing.
	Phase string
	// Done is set once the rollout decides no deployment's release any more
	// (completed, aborted, or superseded by one that reached every deployment).
	Done      bool
	StartedAt time.Time
	UpdatedAt time.Time
	// Version counts the writes of the record, from 1 at creation: each
	// UpdateRollout writes Version one more than the one it read, so of two
	// writers that read the same record only the first succeeds.
	Version int64
	// State is a JSON object. It comes back as an equal JSON value, not
	// necessarily the same bytes (a backend may normalise spacing and key order).
	State []byte
}

// RolloutFilter selects rollouts for ListRollouts. Empty fields match
// everything; Limit 0 means no bound.
type RolloutFilter struct {
	Stack string
	// Unfinished selects only rollouts that are not Done.
	Unfinished bool
	Limit      int
}

// RolloutPlanRecord is a stack's rollout plan as set through the API (JSON of
// a rolloutplan.Plan, returned as an equal JSON value); it replaces the plan the
// configuration file gives.
type RolloutPlanRecord struct {
	Stack     string
	Plan      []byte
	UpdatedAt time.Time
	UpdatedBy string
}

// Rollouts persists progressive rollouts and the plans set through the API.
// Methods that take audit entries append them in the same transaction as the
// change, so the audit log never says a rollout did what its state does not.
type Rollouts interface {
	// CreateRollout inserts r, whose Version must be 1, and appends entries,
	// in one transaction; ErrConflict if a rollout with r.ID exists.
	CreateRollout(ctx context.Context, r RolloutRecord, entries []AuditEntry) error
	// UpdateRollout overwrites the phase, Done, UpdatedAt, Version and State of
	// rollout r.ID and appends entries, in one transaction, provided its stored
	// Version is r.Version-1. ErrNotFound when there is no such rollout,
	// ErrConflict when another write came first; either way nothing is written.
	UpdateRollout(ctx context.Context, r RolloutRecord, entries []AuditEntry) error
	// GetRollout returns rollout id; ErrNotFound if there is none.
	GetRollout(ctx context.Context, id string) (RolloutRecord, error)
	// ListRollouts returns the rollouts f selects, newest StartedAt first
	// (then by id).
	ListRollouts(ctx context.Context, f RolloutFilter) ([]RolloutRecord, error)

	// PutRolloutPlan sets (inserts or replaces) the plan of p.Stack and appends
	// entry, in one transaction.
	PutRolloutPlan(ctx context.Context, p RolloutPlanRecord, entry AuditEntry) error
	// DeleteRolloutPlan removes the plan of stack and appends entry, in one
	// transaction; ErrNotFound if there is none.
	DeleteRolloutPlan(ctx context.Context, stack string, entry AuditEntry) error
	// ListRolloutPlans returns every plan set through the API, by stack.
	ListRolloutPlans(ctx context.Context) ([]RolloutPlanRecord, error)
	// PutUpdateWindows sets (inserts or replaces) the windows of w.Kind and
	// w.Owner and appends entry, in one transaction.
	PutUpdateWindows(ctx context.Context, w UpdateWindowsRecord, entry AuditEntry) error
	// DeleteUpdateWindows removes the windows of kind and owner and appends
	// entry, in one transaction; ErrNotFound if there are none.
	DeleteUpdateWindows(ctx context.Context, kind, owner string, entry AuditEntry) error
	// ListUpdateWindows returns every owner's windows set through the API, by
	// kind then owner.
	ListUpdateWindows(ctx context.Context) ([]UpdateWindowsRecord, error)
}

// Kinds of owners of update windows.
const (
	WindowsOfCustomer   = "customer"
	WindowsOfDeployment = "deployment"
)

// UpdateWindowsRecord is one customer's or deployment's update windows as set
// through the API; they replace the configuration file's for that owner.
type UpdateWindowsRecord struct {
	// Kind is WindowsOfCustomer or WindowsOfDeployment; Owner names it.
	Kind, Owner string
	// Windows is JSON of a rolloutplan.Windows, returned as an equal JSON value.
	Windows   []byte
	UpdatedAt time.Time
	UpdatedBy string
}
