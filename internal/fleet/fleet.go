// Package fleet is the model of a vendor's fleet: deployments, releases and the
// status of each deployment. It holds plain data and pure functions only; keeping
// state, persisting it and serving it are other packages' jobs.
package fleet

import (
	"strings"
	"time"
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
}

// Event records a change of a deployment's status.
type Event struct {
	DeploymentID string    `json:"deployment_id"`
	At           time.Time `json:"at"`
	From         Status    `json:"from"`
	To           Status    `json:"to"`
	Reason       string    `json:"reason"`
}

// Filter selects deployments. Empty fields match everything; Text matches a
// case-insensitive substring of the id, name or customer.
type Filter struct {
	Status   Status
	Customer string
	Cloud    string
	Region   string
	Release  string
	Stack    string
	Text     string
}

// Match reports whether d, whose evaluation is e, passes the filter.
func (f Filter) Match(d *Deployment, e Evaluation) bool {
	switch {
	case f.Status != "" && e.Status != f.Status,
		f.Customer != "" && d.Customer != f.Customer,
		f.Cloud != "" && d.Cloud != f.Cloud,
		f.Region != "" && d.Region != f.Region,
		f.Release != "" && d.RunningRelease != f.Release,
		f.Stack != "" && d.Stack != f.Stack:
		return false
	}
	if f.Text != "" {
		t := strings.ToLower(f.Text)
		if !containsFold(d.ID, t) && !containsFold(d.Name, t) && !containsFold(d.Customer, t) {
			return false
		}
	}
	return true
}

func containsFold(s, lowerSub string) bool {
	return strings.Contains(strings.ToLower(s), lowerSub)
}
