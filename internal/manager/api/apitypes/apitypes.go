// Package apitypes holds the JSON shapes of the REST API under /api/v1, shared by
// the server (internal/api) and its Go client (internal/apiclient). The OpenAPI
// document is checked against these types by a test.
package apitypes

import (
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// Deployment is a deployment as the API shows it: declared fields, what its agent
// reported, and its status evaluated now.
type Deployment struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Customer string            `json:"customer"`
	Platform string            `json:"platform"`
	Cloud    string            `json:"cloud"`
	Region   string            `json:"region"`
	Stack    string            `json:"stack"`
	Labels   map[string]string `json:"labels"`

	Release          string             `json:"release"`
	DesiredRelease   string             `json:"desired_release"`
	LatestRelease    string             `json:"latest_release"`
	Status           fleet.Status       `json:"status"`
	StatusReason     string             `json:"status_reason"`
	StatusSince      *time.Time         `json:"status_since"`
	StatusReasonCode string             `json:"status_reason_code"`
	Pinned           bool               `json:"pinned"`
	Pin              *fleet.Pin         `json:"pin"`
	Behind           fleet.BehindReason `json:"behind"`
	BehindSince      *time.Time         `json:"behind_since"`
	NextPollExpected *time.Time         `json:"next_poll_expected"`
	// Wave is the rollout wave a waiting-for-wave deployment waits for.
	Wave string `json:"wave,omitempty"`
	// Expected is when its wave is expected to open (waiting-for-wave) or its
	// next update window starts (outside-window); absent when unknown.
	Expected *time.Time `json:"expected,omitempty"`
	// VersionsBehind counts the stack's releases newer than the running one.
	VersionsBehind int `json:"versions_behind"`
	// SupersededAt is when the running release stopped being the latest.
	SupersededAt *time.Time `json:"superseded_at"`
	// PreviousRelease is what the deployment ran before; a rollback pins it.
	PreviousRelease string `json:"previous_release"`
	// ReleaseSince is when the deployment was first seen on its running release.
	ReleaseSince *time.Time `json:"release_since"`
	// AcceptsReleases is true when the agent applies offered releases itself.
	AcceptsReleases bool `json:"accepts_releases"`
	// Regression is the evidence that the running release is worse than the
	// previous one; nil when there is none.
	Regression *Regression `json:"regression"`
	// Loss is fleet.ReasonTelemetryDropped, shown beside the status, while its
	// agent dropped telemetry it had accepted within the loss quiet window.
	Loss string `json:"loss"`
	// LossReason says how much was dropped, of what and when, for people.
	LossReason string `json:"loss_reason"`
	// TelemetryLoss is what its agent dropped, added up across agent restarts;
	// nil while it has dropped nothing.
	TelemetryLoss *TelemetryLoss `json:"telemetry_loss"`

	Mode               fleet.Mode        `json:"mode"`
	Connected          bool              `json:"connected"`
	AgentVersion       string            `json:"agent_version"`
	AgentInstanceUID   string            `json:"agent_instance_uid"`
	LastCheckin        *time.Time        `json:"last_checkin"`
	Health             fleet.Health      `json:"health"`
	ConfigHash         string            `json:"config_hash"`
	ExpectedConfigHash string            `json:"expected_config_hash"`
	Update             fleet.UpdateState `json:"update"`
	CreatedAt          time.Time         `json:"created_at"`
	// TokenState is the state of the agent token: active, rotating (the
	// previous token is still valid) or revoked (none is valid).
	TokenState string `json:"token_state"`
	// PreviousTokenValidUntil is a rotation's deadline for the previous token;
	// null while it stays valid until the agent uses the new one.
	PreviousTokenValidUntil *time.Time `json:"previous_token_valid_until"`
	// Redaction is the redaction policy the agent reports it runs; null until
	// its agent reported it since the manager started (and always for agents
	// that do not report one, such as a stock Collector).
	Redaction *Redaction `json:"redaction"`
	// CommandRule is the customer's rule for remote commands as its agent
	// reports it; null until an agent reports one.
	CommandRule *command.Rule `json:"command_rule"`

	// Token is the agent token, present only in the response that created the deployment.
	Token string `json:"token,omitempty"`
	// Warnings, only in the response that created the deployment, are what
	// was accepted but looks like a mistake, such as a stack with no release.
	Warnings []string `json:"warnings,omitempty"`
}

// Redaction is a deployment's effective redaction policy as its agent reports it.
type Redaction struct {
	// Effective is the policy the agent runs: the vendor's and the customer's
	// merged, the stricter of each.
	Effective redactpolicy.Effective `json:"effective"`
	// EffectiveHash identifies Effective.
	EffectiveHash string `json:"effective_hash"`
	// VendorHash names the vendor policy the agent holds ("" before it received one).
	VendorHash string `json:"vendor_hash"`
	// InSync is whether that is the manager's current vendor policy.
	InSync bool `json:"in_sync"`
	// Error is why the agent refused the last vendor policy it was sent; "" when
	// it refused none.
	Error string `json:"error,omitempty"`
	// ReportedAt is when the agent reported it.
	ReportedAt time.Time `json:"reported_at"`
}

// TelemetryLoss is what a deployment's agent dropped of the telemetry it accepted.
type TelemetryLoss struct {
	// Records counts the log records, spans and metric data points dropped.
	Records int64 `json:"records"`
	// Counts splits Records by "<signal>/<reason>", such as "logs/queue_full".
	Counts map[string]int64 `json:"counts"`
	// LastAt is when the last record was dropped.
	LastAt time.Time `json:"last_at"`
}

// DeploymentList is one page of deployments.
type DeploymentList struct {
	Items []Deployment `json:"items"`
	// Total is how many deployments match the filter across all pages.
	Total int `json:"total"`
	// Offset is how many matching deployments sort before the first item.
	Offset int `json:"offset"`
	// Next is the cursor for the following page ("" on the last page).
	Next string `json:"next"`
	// Prev is the cursor for the page before ("" on the first page).
	Prev string `json:"prev"`
}

// NewDeployment is the body of POST /api/v1/deployments.
type NewDeployment struct {
	ID       string            `json:"id,omitempty"`
	Name     string            `json:"name,omitempty"`
	Customer string            `json:"customer"`
	Platform string            `json:"platform,omitempty"`
	Cloud    string            `json:"cloud,omitempty"`
	Region   string            `json:"region,omitempty"`
	Stack    string            `json:"stack"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// NewDeployments is the body of POST /api/v1/deployments/batch.
type NewDeployments struct {
	Deployments []NewDeployment `json:"deployments"`
}

// Release is a release with its adoption.
type Release struct {
	Stack       string    `json:"stack"`
	Version     string    `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	Notes       string    `json:"notes"`
	Latest      bool      `json:"latest"`
	Deployments int       `json:"deployments"`
	// Commands are the remote commands the release declares.
	Commands []command.Spec `json:"commands,omitempty"`
}

// NewRelease is the body of POST /api/v1/releases.
type NewRelease struct {
	Stack   string `json:"stack"`
	Version string `json:"version"`
	Notes   string `json:"notes,omitempty"`
	// Commands are the remote commands the release declares (see
	// command.Spec); checked as a whole, 400 naming the first problem.
	Commands []command.Spec `json:"commands,omitempty"`
	// Urgent releases ignore customers' update windows, with or without a
	// rollout plan; Reason is then required, and both go into the audit log.
	Urgent bool   `json:"urgent,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Summary is the fleet at a glance.
type Summary struct {
	Total     int                        `json:"total"`
	ByStatus  map[fleet.Status]int       `json:"by_status"`
	ByRelease map[string]int             `json:"by_release"`
	Behind    map[fleet.BehindReason]int `json:"behind"`
	Pinned    int                        `json:"pinned"`
}

// Regression is the evidence that a release made a deployment worse: its figures
// on the release against those on the release it ran before.
type Regression = fleet.Regression

// Event is a status change.
type Event = fleet.Event

// NewPin is the body of PUT /api/v1/deployments/{id}/pin.
type NewPin struct {
	Release string `json:"release"`
	Reason  string `json:"reason"`
}

// PinReason is the body of POST /api/v1/deployments/{id}/rollback and the
// optional body of DELETE /api/v1/deployments/{id}/pin.
type PinReason struct {
	Reason string `json:"reason"`
}

// PinRequest is the body of POST /api/v1/pins: one change applied to the listed
// deployments, to those matching Filter, or to the whole fleet with All; exactly
// one of the three selects.
type PinRequest struct {
	// Action is pin, unpin or rollback.
	Action fleet.PinAction `json:"action"`
	// Release is the release to pin to (pin only).
	Release string `json:"release,omitempty"`
	// Reason goes into the audit trail; required to pin or roll back.
	Reason      string     `json:"reason,omitempty"`
	Deployments []string   `json:"deployments,omitempty"`
	Filter      *PinFilter `json:"filter,omitempty"`
	All         bool       `json:"all,omitempty"`
}

// PinFilter selects the deployments of a bulk pin change. Empty fields match
// everything; every label must be present with its value.
type PinFilter struct {
	Customer string `json:"customer,omitempty"`
	Cloud    string `json:"cloud,omitempty"`
	Region   string `json:"region,omitempty"`
	Stack    string `json:"stack,omitempty"`
	// Release is the release the deployments run now.
	Release string            `json:"release,omitempty"`
	Status  fleet.Status      `json:"status,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Behind is "any", "latest", or a behind reason (as the deployment list's
	// behind parameter).
	Behind string `json:"behind,omitempty"`
	// Pinned selects pinned (true) or unpinned (false) deployments.
	Pinned *bool `json:"pinned,omitempty"`
}

// PinChange is one deployment's entry in the pin audit trail.
type PinChange = fleet.PinChange

// PinResult is what a pin change did: every change shares ChangeID; Unchanged
// counts the selected deployments that already were as asked.
type PinResult struct {
	ChangeID  string      `json:"change_id"`
	Changed   []PinChange `json:"changed"`
	Unchanged int         `json:"unchanged"`
}

// Adoption is one stack's release adoption.
type Adoption struct {
	Stack  string `json:"stack"`
	Latest string `json:"latest"`
	// Total is how many deployments the stack has.
	Total int `json:"total"`
	// Releases are newest first: the published ones, and versions deployments
	// run that were never published.
	Releases []ReleaseAdoption `json:"releases"`
}

// ReleaseAdoption counts a stack's deployments on one release.
type ReleaseAdoption struct {
	Version   string `json:"version"`
	Published bool   `json:"published"`
	// Running deployments report running it; Desired should run it, Pinned of
	// them because a pin says so.
	Running int `json:"running"`
	Desired int `json:"desired"`
	Pinned  int `json:"pinned"`
	// Behind counts the deployments running it that are behind their desired
	// release, by reason.
	Behind map[fleet.BehindReason]int `json:"behind,omitempty"`
}

// BehindDeployment is a deployment not running its stack's latest release, with
// why and for how long.
type BehindDeployment struct {
	ID             string       `json:"id"`
	Name           string       `json:"name"`
	Customer       string       `json:"customer"`
	Cloud          string       `json:"cloud"`
	Region         string       `json:"region"`
	Stack          string       `json:"stack"`
	Status         fleet.Status `json:"status"`
	Release        string       `json:"release"`
	DesiredRelease string       `json:"desired_release"`
	LatestRelease  string       `json:"latest_release"`
	// Reason is why it is behind the latest release (see fleet.Evaluation.BehindLatest).
	Reason         fleet.BehindReason `json:"reason"`
	VersionsBehind int                `json:"versions_behind"`
	SupersededAt   *time.Time         `json:"superseded_at"`
	// DaysSinceSuperseded is how long ago the running release stopped being the
	// latest, in days to one decimal.
	DaysSinceSuperseded float64 `json:"days_since_superseded"`
	// BehindSince is when it last started running something other than its
	// desired release (null when it runs its desired release, e.g. pinned).
	BehindSince      *time.Time `json:"behind_since"`
	NextPollExpected *time.Time `json:"next_poll_expected"`
	Pin              *fleet.Pin `json:"pin"`
	LastCheckin      *time.Time `json:"last_checkin"`
}

// Token is an operator API token; Secret is present only when it was just created.
type Token struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Secret string `json:"token,omitempty"`
}

// NewToken is the body of POST /api/v1/tokens.
type NewToken struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Error is every error response's body.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong: a stable code for programs, a message for people.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// TailErrorTrailer is the HTTP trailer of GET /api/v1/logs/tail that says why the
// stream ended, since the status line went out before the first record; it is
// absent when the stream ended because the client went away.
const TailErrorTrailer = "Periscope-Error"

// Runtime is the answer of GET /api/v1/deployments/{id}/runtime: the
// deployment's components, sources, ingress traffic, queues and storage.
type Runtime = runtimeview.Runtime
