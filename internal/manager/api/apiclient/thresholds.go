package apiclient

import (
	"context"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Thresholds returns deployment id's runtime thresholds and whether its agent
// holds them.
func (c *Client) Thresholds(ctx context.Context, id string) (apitypes.Thresholds, error) {
	var out apitypes.Thresholds
	err := c.Do(ctx, "GET", pinPath(id, "thresholds"), nil, &out)
	return out, err
}

// SetThresholds replaces deployment id's runtime thresholds; reason goes into
// the audit log.
func (c *Client) SetThresholds(ctx context.Context, id string, set thresholds.Set, reason string) (apitypes.Thresholds, error) {
	var out apitypes.Thresholds
	err := c.Do(ctx, "PUT", pinPath(id, "thresholds"), apitypes.NewThresholds{Thresholds: set, Reason: reason}, &out)
	return out, err
}
