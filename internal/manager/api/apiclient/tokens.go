package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// RotateToken issues deployment id a new agent token (returned only now); the
// old one stays valid until the agent uses the new one, or for overlap ("" for
// no deadline).
func (c *Client) RotateToken(ctx context.Context, id string, req apitypes.TokenRotation) (apitypes.RotatedToken, error) {
	var out apitypes.RotatedToken
	err := c.Do(ctx, "POST", pinPath(id, "rotate-token"), req, &out)
	return out, err
}

// RevokeToken revokes deployment id's agent tokens (or, with PreviousOnly, the
// previous token of a rotation) at once.
func (c *Client) RevokeToken(ctx context.Context, id string, req apitypes.TokenRevocation) (apitypes.Deployment, error) {
	var out apitypes.Deployment
	err := c.Do(ctx, "POST", pinPath(id, "revoke-token"), req, &out)
	return out, err
}

// DeleteDeployment deletes deployment id and its tokens; reason is required.
func (c *Client) DeleteDeployment(ctx context.Context, id, reason string) error {
	return c.Do(ctx, "DELETE", "/api/v1/deployments/"+url.PathEscape(id), apitypes.DeploymentDeletion{Reason: reason}, nil)
}

// DeploymentHistory returns up to limit token and deletion audit entries of
// deployment id, newest first (also of a deleted deployment).
func (c *Client) DeploymentHistory(ctx context.Context, id string, limit int) ([]apitypes.DeploymentChange, error) {
	var out struct {
		Items []apitypes.DeploymentChange `json:"items"`
	}
	err := c.Do(ctx, "GET", pinPath(id, "history")+"?limit="+strconv.Itoa(limit), nil, &out)
	return out.Items, err
}

// APITokens lists the operator API tokens (names and roles; never secrets).
func (c *Client) APITokens(ctx context.Context) ([]apitypes.Token, error) {
	var out struct {
		Items []apitypes.Token `json:"items"`
	}
	err := c.Do(ctx, "GET", "/api/v1/tokens", nil, &out)
	return out.Items, err
}

// CreateAPIToken issues an operator API token; the answer carries its secret,
// which the manager never shows again.
func (c *Client) CreateAPIToken(ctx context.Context, nt apitypes.NewToken) (apitypes.Token, error) {
	var out apitypes.Token
	err := c.Do(ctx, "POST", "/api/v1/tokens", nt, &out)
	return out, err
}

// RevokeAPIToken revokes operator API token id at once.
func (c *Client) RevokeAPIToken(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(id), nil, nil)
}
