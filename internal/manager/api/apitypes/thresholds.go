package apitypes

import (
	"time"

	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Thresholds is a deployment's runtime thresholds and whether its agent holds
// them: the answer of GET and PUT /api/v1/deployments/{id}/thresholds.
type Thresholds struct {
	DeploymentID string `json:"deployment_id"`
	// Thresholds are the deployment's own (empty when it has none).
	Thresholds thresholds.Set `json:"thresholds"`
	// Effective is what its agent checks: Thresholds, else its customer's or
	// the fleet's default from the manager's configuration; EffectiveFrom
	// says which ("deployment", "customer", "fleet"; "" when none applies).
	Effective     thresholds.Set `json:"effective"`
	EffectiveFrom string         `json:"effective_from,omitempty"`
	// Hash names Effective; the agent reports the hash of the set it holds.
	Hash string `json:"hash"`
	// AgentHash is the hash of the set the agent last reported holding, and
	// AgentError why it refused the last set it refused; both absent until
	// the agent reported since the manager started.
	AgentHash  *string    `json:"agent_hash,omitempty"`
	AgentError string     `json:"agent_error,omitempty"`
	ReportedAt *time.Time `json:"reported_at,omitempty"`
	// InSync is whether the agent holds Effective.
	InSync bool `json:"in_sync"`
}

// NewThresholds is the body of PUT /api/v1/deployments/{id}/thresholds: the
// deployment's whole own set (an empty one removes it, and the defaults
// apply) and why.
type NewThresholds struct {
	Thresholds thresholds.Set `json:"thresholds"`
	Reason     string         `json:"reason"`
}

// Check implements Checker.
func (n NewThresholds) Check() error {
	if err := checkLen("reason", n.Reason, MaxReasonBytes); err != nil {
		return err
	}
	return n.Thresholds.Validate()
}
