package apitypes

import (
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
)

// Token states of a deployment (Deployment.TokenState).
const (
	TokenActive   = "active"
	TokenRotating = "rotating"
	TokenRevoked  = "revoked"
)

// TokenRotation is the optional body of POST /api/v1/deployments/{id}/rotate-token.
type TokenRotation struct {
	// Reason goes into the audit trail.
	Reason string `json:"reason,omitempty"`
	// Overlap bounds how long the old token stays valid if the agent does not
	// check in with the new one first, as a Go duration ("24h"); empty means
	// until the agent checks in with it.
	Overlap string `json:"overlap,omitempty"`
}

// Ways a rotated token reaches the agent (RotatedToken.Delivery).
const (
	// DeliveryPushed: the agent holds a push connection and was offered it now.
	DeliveryPushed = "pushed"
	// DeliveryNextCheckin: the agent gets it in the reply to its next check-in.
	DeliveryNextCheckin = "next-checkin"
	// DeliveryManual: the deployment had no valid token, so nothing can carry
	// the new one to the agent: install it by hand.
	DeliveryManual = "manual"
)

// RotatedToken answers a rotation; Token is shown only this once.
type RotatedToken struct {
	DeploymentID string `json:"deployment_id"`
	Token        string `json:"token"`
	// Delivery says how the agent gets the token: pushed, next-checkin or manual.
	Delivery string `json:"delivery"`
	// PreviousTokenValid is whether the old token still works until the agent
	// uses the new one.
	PreviousTokenValid bool `json:"previous_token_valid"`
	// PreviousTokenValidUntil is the overlap deadline, if one was set.
	PreviousTokenValidUntil *time.Time `json:"previous_token_valid_until"`
}

// TokenRevocation is the body of POST /api/v1/deployments/{id}/revoke-token.
type TokenRevocation struct {
	// Reason goes into the audit trail; required.
	Reason string `json:"reason"`
	// PreviousOnly revokes only the previous token of a rotation in progress,
	// ending its overlap; otherwise every token of the deployment is revoked.
	PreviousOnly bool `json:"previous_only,omitempty"`
}

// DeploymentDeletion is the body of DELETE /api/v1/deployments/{id}.
type DeploymentDeletion struct {
	// Reason goes into the audit trail; required.
	Reason string `json:"reason"`
}

// DeploymentChange is one entry of the token and deletion audit trail.
type DeploymentChange = fleet.DeploymentChange
