package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// Rollouts lists progressive rollouts, newest first: of stack when set, only
// unfinished ones when unfinished is set, at most limit (0: the server's page).
func (c *Client) Rollouts(ctx context.Context, stack string, unfinished bool, limit int) ([]apitypes.Rollout, error) {
	q := url.Values{}
	if stack != "" {
		q.Set("stack", stack)
	}
	if unfinished {
		q.Set("unfinished", "true")
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/api/v1/rollouts"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out apitypes.RolloutList
	err := c.Do(ctx, "GET", path, nil, &out)
	return out.Rollouts, err
}

// Rollout returns rollout id.
func (c *Client) Rollout(ctx context.Context, id string) (apitypes.Rollout, error) {
	var out apitypes.Rollout
	err := c.Do(ctx, "GET", "/api/v1/rollouts/"+url.PathEscape(id), nil, &out)
	return out, err
}

// StartRollout rolls a release out through its stack's plan.
func (c *Client) StartRollout(ctx context.Context, r apitypes.NewRollout) (apitypes.Rollout, error) {
	var out apitypes.Rollout
	err := c.Do(ctx, "POST", "/api/v1/rollouts", r, &out)
	return out, err
}

// RolloutAction runs verb (resume, abort or skip; skip names dep) on rollout
// id, with reason for the audit log.
func (c *Client) RolloutAction(ctx context.Context, id, verb, dep, reason string) (apitypes.Rollout, error) {
	var out apitypes.Rollout
	err := c.Do(ctx, "POST", "/api/v1/rollouts/"+url.PathEscape(id)+"/"+url.PathEscape(verb), apitypes.RolloutAction{Deployment: dep, Reason: reason}, &out)
	return out, err
}

// UpdateWindows lists every customer's and deployment's update windows in force.
func (c *Client) UpdateWindows(ctx context.Context) ([]apitypes.UpdateWindows, error) {
	var out apitypes.UpdateWindowsList
	err := c.Do(ctx, "GET", "/api/v1/update-windows", nil, &out)
	return out.Windows, err
}

// SetUpdateWindows sets the windows of a customer or deployment (kind
// "customer" or "deployment"), with reason for the audit log.
func (c *Client) SetUpdateWindows(ctx context.Context, kind, owner string, ws apitypes.NewUpdateWindows) (apitypes.UpdateWindows, error) {
	var out apitypes.UpdateWindows
	err := c.Do(ctx, "PUT", "/api/v1/update-windows/"+url.PathEscape(kind+"s")+"/"+url.PathEscape(owner), ws, &out)
	return out, err
}

// ClearUpdateWindows removes the windows set through the API for a customer or
// deployment, with reason for the audit log.
func (c *Client) ClearUpdateWindows(ctx context.Context, kind, owner, reason string) error {
	return c.Do(ctx, "DELETE", "/api/v1/update-windows/"+url.PathEscape(kind+"s")+"/"+url.PathEscape(owner), apitypes.RolloutAction{Reason: reason}, nil)
}
