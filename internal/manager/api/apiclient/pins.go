package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

func pinPath(id, what string) string {
	return "/api/v1/deployments/" + url.PathEscape(id) + "/" + what
}

// PinDeployment pins deployment id to release; reason goes into the audit trail.
func (c *Client) PinDeployment(ctx context.Context, id, release, reason string) (apitypes.PinResult, error) {
	var out apitypes.PinResult
	err := c.Do(ctx, "PUT", pinPath(id, "pin"), apitypes.NewPin{Release: release, Reason: reason}, &out)
	return out, err
}

// UnpinDeployment makes deployment id follow its stack's latest release again;
// reason may be empty.
func (c *Client) UnpinDeployment(ctx context.Context, id, reason string) (apitypes.PinResult, error) {
	var body any
	if reason != "" {
		body = apitypes.PinReason{Reason: reason}
	}
	var out apitypes.PinResult
	err := c.Do(ctx, "DELETE", pinPath(id, "pin"), body, &out)
	return out, err
}

// RollbackDeployment pins deployment id to the release it ran before its
// current one.
func (c *Client) RollbackDeployment(ctx context.Context, id, reason string) (apitypes.PinResult, error) {
	var out apitypes.PinResult
	err := c.Do(ctx, "POST", pinPath(id, "rollback"), apitypes.PinReason{Reason: reason}, &out)
	return out, err
}

// ChangePins applies one pin, unpin or rollback to many deployments, all or none.
func (c *Client) ChangePins(ctx context.Context, req apitypes.PinRequest) (apitypes.PinResult, error) {
	var out apitypes.PinResult
	err := c.Do(ctx, "POST", "/api/v1/pins", req, &out)
	return out, err
}

// PinHistory returns up to limit pin audit entries, newest first, of one
// deployment ("" for the whole fleet).
func (c *Client) PinHistory(ctx context.Context, deployment string, limit int) ([]apitypes.PinChange, error) {
	v := url.Values{}
	if deployment != "" {
		v.Set("deployment", deployment)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Items []apitypes.PinChange `json:"items"`
	}
	err := c.Do(ctx, "GET", "/api/v1/pins/history?"+v.Encode(), nil, &out)
	return out.Items, err
}

// Adoption returns, per stack (one stack when stack is not empty), how many
// deployments run, should run and are pinned to each release.
func (c *Client) Adoption(ctx context.Context, stack string) ([]apitypes.Adoption, error) {
	v := url.Values{}
	if stack != "" {
		v.Set("stack", stack)
	}
	var out struct {
		Items []apitypes.Adoption `json:"items"`
	}
	err := c.Do(ctx, "GET", "/api/v1/releases/adoption?"+v.Encode(), nil, &out)
	return out.Items, err
}

// Behind returns the deployments matching f that are not on their stack's latest
// release, longest behind first.
func (c *Client) Behind(ctx context.Context, f Filter) ([]apitypes.BehindDeployment, error) {
	var out struct {
		Items []apitypes.BehindDeployment `json:"items"`
	}
	err := c.Do(ctx, "GET", "/api/v1/deployments/behind?"+f.values().Encode(), nil, &out)
	return out.Items, err
}
