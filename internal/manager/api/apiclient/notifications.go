package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// NotificationFilter narrows a list of notifications; zero fields match all.
type NotificationFilter struct {
	Deployment string
	// State is a delivery state (pending, delivered, failed) or a notification
	// state (entered, resolved).
	State string
	// Limit bounds the answer (the manager's default, 100, when zero).
	Limit int
}

// Notifications returns the status changes sent to webhooks, newest first, with
// how each delivery went. A manager without webhooks answers an *Error with
// status 503.
func (c *Client) Notifications(ctx context.Context, f NotificationFilter) ([]apitypes.Notification, error) {
	v := url.Values{}
	if f.Deployment != "" {
		v.Set("deployment", f.Deployment)
	}
	if f.State != "" {
		v.Set("state", f.State)
	}
	if f.Limit != 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	path := "/api/v1/notifications"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out apitypes.NotificationList
	err := c.Do(ctx, "GET", path, nil, &out)
	return out.Items, err
}
