package store

import (
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
)

// Rollout is the release-tracking state of a deployment, which backends keep
// as one JSON document beside its other columns: it changes with releases and
// is read only with the rest of the deployment. Both backends write the same
// document, so a deployment moved from one to the other keeps it.
type Rollout struct {
	PreviousRelease string            `json:"previous_release,omitempty"`
	ReleaseSince    time.Time         `json:"release_since,omitzero"`
	AcceptsReleases bool              `json:"accepts_releases,omitempty"`
	OfferHash       string            `json:"offer_hash,omitempty"`
	Regression      *fleet.Regression `json:"regression,omitempty"`
	BehindSince     time.Time         `json:"behind_since,omitzero"`
	// TelemetryLoss is kept here rather than in a column of its own: it changes
	// seldom and is read only with the rest of the deployment.
	TelemetryLoss *fleet.TelemetryLoss `json:"telemetry_loss,omitempty"`
	// CommandRule is the customer's command rule its agent reported.
	CommandRule *command.Rule `json:"command_rule,omitempty"`
}

// RolloutOf is d's release-tracking state.
func RolloutOf(d *fleet.Deployment) Rollout {
	return Rollout{PreviousRelease: d.PreviousRelease, ReleaseSince: d.ReleaseSince, AcceptsReleases: d.AcceptsReleases,
		OfferHash: d.OfferHash, Regression: d.Regression, BehindSince: d.BehindSince, TelemetryLoss: d.TelemetryLoss,
		CommandRule: d.CommandRule}
}

// ApplyTo sets d's release-tracking state to r.
func (r Rollout) ApplyTo(d *fleet.Deployment) {
	d.PreviousRelease, d.ReleaseSince, d.AcceptsReleases = r.PreviousRelease, r.ReleaseSince, r.AcceptsReleases
	d.OfferHash, d.Regression, d.BehindSince = r.OfferHash, r.Regression, r.BehindSince
	d.TelemetryLoss, d.CommandRule = r.TelemetryLoss, r.CommandRule
}
