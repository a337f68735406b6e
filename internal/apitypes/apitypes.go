// Package apitypes holds the JSON shapes of the REST API under /api/v1, shared by
// the server (internal/api) and its Go client (internal/apiclient). The OpenAPI
// document is checked against these types by a test.
package apitypes

import (
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
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
	Pinned           bool               `json:"pinned"`
	Pin              *fleet.Pin         `json:"pin"`
	Behind           fleet.BehindReason `json:"behind"`
	NextPollExpected *time.Time         `json:"next_poll_expected"`

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

	// Token is the agent token, present only in the response that created the deployment.
	Token string `json:"token,omitempty"`
}

// DeploymentList is one page of deployments.
type DeploymentList struct {
	Items []Deployment `json:"items"`
	// Total is how many deployments match the filter across all pages.
	Total int `json:"total"`
	// Next is the cursor for the following page ("" on the last page).
	Next string `json:"next"`
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
}

// NewRelease is the body of POST /api/v1/releases.
type NewRelease struct {
	Stack   string `json:"stack"`
	Version string `json:"version"`
	Notes   string `json:"notes,omitempty"`
}

// Summary is the fleet at a glance.
type Summary struct {
	Total     int                        `json:"total"`
	ByStatus  map[fleet.Status]int       `json:"by_status"`
	ByRelease map[string]int             `json:"by_release"`
	Behind    map[fleet.BehindReason]int `json:"behind"`
	Pinned    int                        `json:"pinned"`
}

// Event is a status change.
type Event = fleet.Event

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
