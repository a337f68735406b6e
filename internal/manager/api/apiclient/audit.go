package apiclient

import (
	"context"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// Audit returns a page of the audit log matching q, newest first; pass the
// page's Next as q.Cursor for the following one.
func (c *Client) Audit(ctx context.Context, q apitypes.AuditQuery) (apitypes.AuditPage, error) {
	var out apitypes.AuditPage
	path := "/api/v1/audit"
	if v := q.Values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	err := c.Do(ctx, "GET", path, nil, &out)
	return out, err
}
