package apitypes

import (
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
)

// Rollout is one progressive rollout: its plan, waves with their members and
// figures, halt, timeline. The engine's state is the API's shape.
type Rollout = rollouts.State

// RolloutList is the answer of GET /api/v1/rollouts, newest first.
type RolloutList struct {
	Rollouts []Rollout `json:"rollouts"`
}

// NewRollout is the body of POST /api/v1/rollouts: roll a published release
// out through its stack's plan.
type NewRollout struct {
	Stack   string `json:"stack"`
	Release string `json:"release"`
	// Baseline is what the deployments no wave reached keep running; empty
	// means the stack's newest release older than Release.
	Baseline string `json:"baseline,omitempty"`
	// Urgent releases ignore customers' update windows; a reason is then
	// required, and both go into the audit log.
	Urgent bool   `json:"urgent,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Check implements Checker.
func (n NewRollout) Check() error {
	if err := checkNames("", "stack", n.Stack, "release", n.Release, "baseline", n.Baseline); err != nil {
		return err
	}
	return checkLen("reason", n.Reason, MaxReasonBytes)
}

// RolloutAction is the body of POST /api/v1/rollouts/{id}/resume and
// /abort, and, with Deployment, /skip.
type RolloutAction struct {
	Deployment string `json:"deployment,omitempty"`
	Reason     string `json:"reason"`
}

// Check implements Checker.
func (a RolloutAction) Check() error {
	if err := checkNames("", "deployment", a.Deployment); err != nil {
		return err
	}
	return checkLen("reason", a.Reason, MaxReasonBytes)
}

// RolloutPlans is the answer of GET /api/v1/rollout-plans: every stack's
// plan in force.
type RolloutPlans struct {
	Plans []rolloutplan.Plan `json:"plans"`
}

// NewRolloutPlan is the body of PUT /api/v1/rollout-plans/{stack}.
type NewRolloutPlan struct {
	Waves  []rolloutplan.Wave `json:"waves"`
	Reason string             `json:"reason"`
}

// Check implements Checker.
func (n NewRolloutPlan) Check() error {
	if len(n.Waves) > rolloutplan.MaxWaves {
		return checkCount("waves", MaxListItems+1)
	}
	return checkLen("reason", n.Reason, MaxReasonBytes)
}

// UpdateWindows is one customer's or deployment's update windows in force,
// and where they come from ("api" or "config").
type UpdateWindows = rollouts.WindowsEntry

// UpdateWindowsList is the answer of GET /api/v1/update-windows: every
// customer's and deployment's windows in force, customers first.
type UpdateWindowsList struct {
	Windows []UpdateWindows `json:"windows"`
}

// NewUpdateWindows is the body of PUT /api/v1/update-windows/customers/{customer}
// and /deployments/{id}: the windows replace the configuration file's for that
// owner.
type NewUpdateWindows struct {
	Windows rolloutplan.Windows `json:"windows"`
	Reason  string              `json:"reason"`
}

// Check implements Checker.
func (n NewUpdateWindows) Check() error {
	if len(n.Windows) > rolloutplan.MaxWindows {
		return checkCount("windows", MaxListItems+1)
	}
	return checkLen("reason", n.Reason, MaxReasonBytes)
}
