// Package fleet is the model of a vendor's fleet: deployments, releases and the
// status of each deployment. It holds plain data and pure functions only; keeping
// state, persisting it and serving it are other packages' jobs.
package fleet

import (
	"fmt"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Mode is how a deployment reaches the manager, as observed at check-in.
type Mode string

// Observed check-in modes.
const (
	// ModeUnknown is a deployment that has not checked in yet.
	ModeUnknown Mode = ""
	// ModePush is a deployment holding an open WebSocket: changes reach it at once.
	ModePush Mode = "push"
	// ModePull is a deployment that polls over HTTP: changes reach it at its next poll.
	ModePull Mode = "pull"
)

// Deployment is one install of the vendor's stack in a customer's cloud.
//
// The first group of fields is declared by the vendor when the deployment is
// registered; the second is what the deployment's agent last reported.
type Deployment struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Customer  string            `json:"customer"`
	Platform  string            `json:"platform"`
	Cloud     string            `json:"cloud"`
	Region    string            `json:"region"`
	Stack     string            `json:"stack"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"created_at"`

	Mode           Mode      `json:"mode"`
	Connected      bool      `json:"connected"`
	RunningRelease string    `json:"release"`
	AgentVersion   string    `json:"agent_version"`
	InstanceUID    string    `json:"agent_instance_uid"`
	LastCheckin    time.Time `json:"last_checkin"`
	Health         Health    `json:"health"`
	ConfigHash     string    `json:"config_hash"`
	// ExpectedConfigHash is the effective-configuration hash the deployment should
	// report; empty means the vendor has no expectation and drift is not checked.
	ExpectedConfigHash string      `json:"expected_config_hash"`
	Update             UpdateState `json:"update"`
	// Pin holds the deployment on a release; nil means it follows the latest.
	Pin *Pin `json:"pin"`
	// PreviousRelease is the release the deployment ran before RunningRelease;
	// a rollback pins it there.
	PreviousRelease string `json:"previous_release,omitempty"`
	// ReleaseSince is when the deployment was first seen on RunningRelease.
	ReleaseSince time.Time `json:"release_since,omitzero"`
	// AcceptsReleases is true when the agent applies an offered release itself
	// (it has an update hook); otherwise someone must redeploy it.
	AcceptsReleases bool `json:"accepts_releases"`
	// OfferHash is the hash of the last release offer the agent reported on.
	OfferHash string `json:"-"`
	// Regression is set while the running release's telemetry is clearly worse
	// than the previous release's.
	Regression *Regression `json:"regression,omitempty"`
	// BehindSince is when the deployment last started running something other
	// than its desired release (zero while it is not behind).
	BehindSince time.Time `json:"behind_since,omitzero"`
	// TelemetryLoss is the telemetry its agent dropped after accepting it; nil
	// while it has dropped none.
	TelemetryLoss *TelemetryLoss `json:"telemetry_loss,omitempty"`
	// CommandRule is the customer's rule for remote commands, as its agent last
	// reported it; nil until an agent reports one.
	CommandRule *command.Rule `json:"command_rule,omitempty"`
	// Thresholds are the runtime thresholds past which the deployment's agent
	// reports it unhealthy, set by the vendor; the zero Set checks nothing.
	Thresholds thresholds.Set `json:"thresholds,omitzero"`
}

// Regression is the evidence that a release made a deployment worse: its
// figures on the release against those on the release it ran before.
type Regression struct {
	Release           string  `json:"release"`
	Previous          string  `json:"previous_release"`
	Requests          int64   `json:"requests"`
	PreviousRequests  int64   `json:"previous_requests"`
	ErrorRate         float64 `json:"error_rate"`
	PreviousErrorRate float64 `json:"previous_error_rate"`
	P95               float64 `json:"p95_ms"`
	PreviousP95       float64 `json:"previous_p95_ms"`
	// Worse names what crossed its threshold: "error_rate", "p95" or both.
	Worse []string  `json:"worse"`
	Since time.Time `json:"since"`
}

// Summary says what regressed, with the figures, for a status reason.
func (r *Regression) Summary() string {
	var parts []string
	for _, w := range r.Worse {
		switch w {
		case "error_rate":
			parts = append(parts, fmt.Sprintf("error rate %.1f%% vs %.1f%%", 100*r.ErrorRate, 100*r.PreviousErrorRate))
		case "p95":
			parts = append(parts, fmt.Sprintf("p95 %.0f ms vs %.0f ms", r.P95, r.PreviousP95))
		}
	}
	return fmt.Sprintf("%s on %s (%d requests) against %s (%d requests)", strings.Join(parts, ", "), r.Release, r.Requests, r.Previous, r.PreviousRequests)
}

// PinAction is what a pin change did.
type PinAction string

// Pin actions recorded in the audit trail.
const (
	ActionPin      PinAction = "pin"
	ActionUnpin    PinAction = "unpin"
	ActionRollback PinAction = "rollback"
)

// PinChange is one deployment's entry in the pin audit trail. All deployments
// changed by one request share its ChangeID.
type PinChange struct {
	ChangeID string    `json:"change_id"`
	At       time.Time `json:"at"`
	By       string    `json:"by"`
	// ByRole is the role of By's token, for the audit log (not kept in the
	// pin trail itself).
	ByRole       string    `json:"-"`
	Reason       string    `json:"reason"`
	Action       PinAction `json:"action"`
	DeploymentID string    `json:"deployment_id"`
	// From and To are the desired release before and after the change.
	From string `json:"from_release"`
	To   string `json:"to_release"`
	// Running is the release the deployment ran when the change was made.
	Running string `json:"running_release"`
}

// Health is the runtime health an agent reported.
type Health struct {
	// Reported is false until the agent has said anything about its health; an
	// unreported health does not make a deployment unhealthy.
	Reported   bool                       `json:"reported"`
	Healthy    bool                       `json:"healthy"`
	Status     string                     `json:"status,omitempty"`
	LastError  string                     `json:"last_error,omitempty"`
	Components map[string]ComponentHealth `json:"components,omitempty"`
}

// ComponentHealth is the health of one component an agent runs or watches.
type ComponentHealth struct {
	Healthy   bool   `json:"healthy"`
	Status    string `json:"status,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Restarts counts the component's restarts as its agent reported them.
	Restarts int64 `json:"restarts,omitempty"`
	// Watched is true when the agent reported the component in
	// FormatComponentError's form, so Status and Restarts are its own (a
	// replica's "crash-loop"), not OpAMP's generic status.
	Watched bool `json:"watched,omitempty"`
	// Since is when the manager first saw the component in its present health
	// and status (the manager's clock: an agent's is not trusted).
	Since time.Time `json:"since,omitzero"`
}

// UpdatePhase is where a deployment is in applying a release.
type UpdatePhase string

// Update phases reported by agents.
const (
	UpdateNone     UpdatePhase = ""
	UpdateApplying UpdatePhase = "applying"
	UpdateApplied  UpdatePhase = "applied"
	UpdateFailed   UpdatePhase = "failed"
)

// UpdateState is the last release change an agent reported.
type UpdateState struct {
	Phase   UpdatePhase `json:"phase,omitempty"`
	Release string      `json:"release,omitempty"`
	Error   string      `json:"error,omitempty"`
	At      time.Time   `json:"at,omitzero"`
}

// Pin holds a deployment on one release, with who asked and why.
type Pin struct {
	Release string    `json:"release"`
	By      string    `json:"by"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Release is one version of a vendor's stack.
type Release struct {
	Stack     string    `json:"stack"`
	Version   string    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	Notes     string    `json:"notes"`
	// Commands are the remote commands the release declares.
	Commands []command.Spec `json:"commands,omitempty"`
}

// Event records a change of a deployment's status.
type Event struct {
	DeploymentID string    `json:"deployment_id"`
	At           time.Time `json:"at"`
	From         Status    `json:"from"`
	To           Status    `json:"to"`
	Reason       string    `json:"reason"`
	// ReasonCode is the machine-readable cause (see the Reason… constants).
	ReasonCode string `json:"reason_code,omitempty"`
	// Release is the release the deployment ran at the time.
	Release string `json:"release,omitempty"`
}

// Filter selects deployments. Empty fields match everything; Text matches a
// case-insensitive substring of the id, name or customer; every label in Labels
// must be present with that value.
type Filter struct {
	Status   Status
	Customer string
	Cloud    string
	Region   string
	Release  string
	Stack    string
	Text     string
	Labels   map[string]string
	// Behind selects deployments by how they lag: "any" (not on their desired
	// release), "latest" (not on their stack's latest release, pinned included),
	// or a reason, matched against the desired release or, for "pinned", the latest.
	Behind string
	// Pinned selects pinned ("true") or unpinned ("false") deployments.
	Pinned string
}

// IsZero reports whether f matches every deployment.
func (f Filter) IsZero() bool {
	return f.Status == "" && f.Customer == "" && f.Cloud == "" && f.Region == "" && f.Release == "" &&
		f.Stack == "" && f.Text == "" && len(f.Labels) == 0 && f.Behind == "" && f.Pinned == ""
}

// Match reports whether d, whose evaluation is e, passes the filter.
func (f Filter) Match(d *Deployment, e Evaluation) bool {
	switch {
	case f.Status != "" && e.Status != f.Status,
		f.Customer != "" && d.Customer != f.Customer,
		f.Cloud != "" && d.Cloud != f.Cloud,
		f.Region != "" && d.Region != f.Region,
		f.Release != "" && d.RunningRelease != f.Release,
		f.Stack != "" && d.Stack != f.Stack,
		!f.matchBehind(e),
		f.Pinned == "true" && !e.Pinned,
		f.Pinned == "false" && e.Pinned:
		return false
	}
	for k, v := range f.Labels {
		if got, ok := d.Labels[k]; !ok || got != v {
			return false
		}
	}
	if f.Text != "" {
		t := strings.ToLower(f.Text)
		if !containsFold(d.ID, t) && !containsFold(d.Name, t) && !containsFold(d.Customer, t) {
			return false
		}
	}
	return true
}

func (f Filter) matchBehind(e Evaluation) bool {
	switch f.Behind {
	case "":
		return true
	case "any":
		return e.Behind != ""
	case "latest":
		return e.BehindLatest() != ""
	case string(BehindPinned):
		return e.BehindLatest() == BehindPinned
	}
	return string(e.Behind) == f.Behind
}

func containsFold(s, lowerSub string) bool {
	return strings.Contains(strings.ToLower(s), lowerSub)
}

// DeploymentAction names an audited change to a deployment's credentials or
// lifecycle.
type DeploymentAction string

// Deployment actions in the audit trail.
const (
	// ActionRotateToken issued a new agent token; the old one stays valid
	// until the agent checks in with the new one (or an overlap deadline).
	ActionRotateToken DeploymentAction = "rotate-token"
	// ActionRevokeToken made the deployment's tokens (or only the previous
	// one) invalid at once.
	ActionRevokeToken DeploymentAction = "revoke-token"
	// ActionRetireToken is the manager ending a rotation's overlap: the agent
	// used the new token, or the overlap deadline passed.
	ActionRetireToken DeploymentAction = "retire-previous-token"
	// ActionDelete removed the deployment and its tokens.
	ActionDelete DeploymentAction = "delete"
)

// DeploymentChange is one entry in the audit trail of deployments' tokens and
// deletions. It outlives the deployment it names.
type DeploymentChange struct {
	At time.Time `json:"at"`
	By string    `json:"by"`
	// ByRole is the role of By's token, for the audit log (not kept in the
	// deployment trail itself).
	ByRole       string           `json:"-"`
	Reason       string           `json:"reason"`
	Action       DeploymentAction `json:"action"`
	DeploymentID string           `json:"deployment_id"`
	// Detail says what the change did, for people (never a token).
	Detail string `json:"detail,omitempty"`
}
