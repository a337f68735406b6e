// Package store is the contract between the manager and where it keeps its
// state: fleet state (Fleet) and the notifications sent about it
// (Notifications). It holds interfaces, record types and errors, and the row decoding
// the SQL backends share (rowscan.go); backends
// live in subpackages (duckdb, the embedded default) and every backend must pass
// the storetest conformance suite.
//
// Every backend MUST:
//   - be safe for concurrent use by any number of goroutines;
//   - return ErrNotFound or ErrConflict, wrapped with context, where a method
//     says so, so callers can branch with errors.Is; SHOULD return
//     ErrUnavailable, wrapped, when a write fails for want of disk space; any
//     other error is the backend's own (I/O, a cancelled context, a closed
//     store);
//   - make each method's writes atomic: all of them or none;
//   - keep times to the microsecond at least (the same instant comes back, by
//     time.Time.Equal);
//   - keep what was written across Close and a new open of the same place.
//
// Slices and records passed in are the caller's again when a method returns (a
// backend MUST NOT keep them); slices returned belong to the caller, and MAY be
// nil when there is nothing to return. Results are in the order a method
// documents; where it documents none, callers MUST NOT rely on one.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
)

// Errors every backend returns, wrapped, so callers can branch with errors.Is.
var (
	// ErrNotFound means the named record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a record with the same key already exists.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable means the backend cannot write for now (its disk is full,
	// say): nothing of the call was written, and the same call may succeed later.
	ErrUnavailable = errors.New("store cannot write for now")
)

// DeploymentRecord is a deployment as stored: its state, the hashes of the agent
// tokens it accepts, and the last status recorded in its event history (so a
// restart does not record a status change that did not happen).
type DeploymentRecord struct {
	Deployment fleet.Deployment
	// TokenHash is the hash of the agent token in force; empty once revoked.
	TokenHash string
	// PrevTokenHash is the token a rotation replaced, accepted until the agent
	// uses the new one or until PrevTokenUntil, when that is set.
	PrevTokenHash  string
	PrevTokenUntil time.Time
	LastStatus     fleet.Status
}

// DeploymentTokens are the agent tokens one deployment accepts (see
// DeploymentRecord for the fields).
type DeploymentTokens struct {
	ID             string
	TokenHash      string
	PrevTokenHash  string
	PrevTokenUntil time.Time
}

// FleetChanges are what the writers of a store changed since a position (see
// Fleet.FleetChangesSince): how several manager replicas on one database keep
// their views of the fleet in step.
type FleetChanges struct {
	// Deployments are the deployments created or changed, as they are now.
	Deployments []DeploymentRecord
	// Deleted are the ids of the deployments deleted. An id may also be in
	// Deployments when it was created again since: apply Deleted first.
	Deleted []string
	// Releases are the releases created.
	Releases []fleet.Release
	// Next is the position to pass next time.
	Next int64
}

// Fleet persists deployments, releases, status events, operator tokens and the
// audit log, under the rules of the package documentation (concurrency,
// ownership, atomic batches). The methods that write an audit trail of their own
// (ApplyPins, SetDeploymentTokens, DeleteDeployment) also append it to the audit
// log, in the same transaction, as does ApplyThresholds.
//
// A deployment's state includes its thresholds (fleet.Deployment.Thresholds),
// which every method that writes the state keeps like any other field.
type Fleet interface {
	Audit

	// CreateDeployments inserts new deployments; ErrConflict if any id or token
	// hash exists, in which case none is inserted.
	CreateDeployments(ctx context.Context, recs []DeploymentRecord) error
	// UpdateDeployments overwrites the mutable state (everything but id, token
	// hashes and creation time) of existing deployments; unknown ids are ignored.
	UpdateDeployments(ctx context.Context, recs []DeploymentRecord) error
	// ListDeployments returns every deployment.
	ListDeployments(ctx context.Context) ([]DeploymentRecord, error)
	// SetDeploymentTokens replaces the tokens a deployment accepts and appends
	// the audit entries, in one transaction; ErrNotFound if there is no such
	// deployment, ErrConflict if a new hash belongs to another deployment.
	SetDeploymentTokens(ctx context.Context, t DeploymentTokens, changes []fleet.DeploymentChange) error
	// DeleteDeployment removes a deployment and its tokens and appends the audit
	// entry, in one transaction; ErrNotFound if there is none with that id. Its
	// events and audit entries stay.
	DeleteDeployment(ctx context.Context, id string, change fleet.DeploymentChange) error
	// ListDeploymentChanges returns up to limit token and deletion audit
	// entries, newest first, of one deployment (deleted or not) or, when
	// deploymentID is empty, of all.
	ListDeploymentChanges(ctx context.Context, deploymentID string, limit int) ([]fleet.DeploymentChange, error)

	// CreateRelease inserts a release; ErrConflict if stack and version exist.
	CreateRelease(ctx context.Context, r fleet.Release) error
	// ListReleases returns every release.
	ListReleases(ctx context.Context) ([]fleet.Release, error)

	// ApplyPins writes the pins (Deployment.Pin, nothing else) of existing
	// deployments and appends the pin audit entries, in one transaction. It
	// leaves the rest as stored, so a pin made on one manager replica never
	// undoes a check-in another replica wrote.
	ApplyPins(ctx context.Context, recs []DeploymentRecord, changes []fleet.PinChange) error
	// ApplyThresholds writes the thresholds (Deployment.Thresholds, nothing
	// else) of an existing deployment and appends the audit entry, in one
	// transaction; ErrNotFound if there is no deployment with that id, in
	// which case nothing is written.
	ApplyThresholds(ctx context.Context, rec DeploymentRecord, entry AuditEntry) error

	// UpdateCheckins writes what check-ins own of existing deployments:
	// everything UpdateDeployments writes except the operator's state (name,
	// customer, stack, labels, expected configuration hash, pin, thresholds),
	// which it leaves as stored. A deployment whose stored last check-in is
	// later than the record's is left alone: another manager replica heard
	// its agent since. Unknown ids are ignored.
	UpdateCheckins(ctx context.Context, recs []DeploymentRecord) error
	// FleetChangesSince returns what was written after position after: the
	// deployments created or changed (tokens included), as they are now, the
	// ids of deployments deleted, and the releases created, with the position
	// to pass next. Position 0 is the beginning: every deployment and release,
	// no deletions. A write that commits after a call is in a later call's
	// answer, never lost; it MAY appear in more than one. A position is only
	// valid with the open store that returned it.
	FleetChangesSince(ctx context.Context, after int64) (FleetChanges, error)

	// ListPinChanges returns up to limit pin audit entries, newest first, of one
	// deployment or, when deploymentID is empty, of all.
	ListPinChanges(ctx context.Context, deploymentID string, limit int) ([]fleet.PinChange, error)

	// AppendEvents records status changes.
	AppendEvents(ctx context.Context, evs []fleet.Event) error
	// ListEvents returns up to limit events, newest first, of one deployment or,
	// when deploymentID is empty, of all.
	ListEvents(ctx context.Context, deploymentID string, limit int) ([]fleet.Event, error)

	// CreateAPIToken stores an operator token; ErrConflict if the id or hash exists.
	CreateAPIToken(ctx context.Context, t auth.APIToken) error
	// ListAPITokens returns every operator token (hashes included).
	ListAPITokens(ctx context.Context) ([]auth.APIToken, error)
	// DeleteAPIToken removes a token and, in the same transaction, the
	// dashboard sessions signed in with it (SessionRecord.TokenID), so they
	// stop counting against the session limits at once; ErrNotFound if there
	// is none with that id.
	DeleteAPIToken(ctx context.Context, id string) error

	// Close releases the backend; it is safe to call more than once.
	Close() error
}
