package apiclient

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// CommandFilter narrows a list of invocations; zero fields match all.
type CommandFilter struct {
	Deployment, Customer, Command, State string
	Since                                time.Time
	// Limit bounds the page (the manager's default, 100, when zero); After is
	// the previous page's Next.
	Limit int
	After string
}

// RunCommand runs a declared command on one deployment and returns its
// invocation, queued or refused with the reason.
func (c *Client) RunCommand(ctx context.Context, deployment string, req apitypes.NewInvocation) (apitypes.Invocation, error) {
	var out apitypes.Invocation
	err := c.Do(ctx, "POST", "/api/v1/deployments/"+url.PathEscape(deployment)+"/commands", req, &out)
	return out, err
}

// RunCommands runs a declared command on req.Selection, one invocation per
// deployment.
func (c *Client) RunCommands(ctx context.Context, req apitypes.NewInvocation) ([]apitypes.Invocation, error) {
	var out apitypes.InvocationList
	err := c.Do(ctx, "POST", "/api/v1/commands", req, &out)
	return out.Items, err
}

// Commands returns one page of invocations, newest first.
func (c *Client) Commands(ctx context.Context, f CommandFilter) (apitypes.InvocationList, error) {
	v := url.Values{}
	for k, s := range map[string]string{"deployment": f.Deployment, "customer": f.Customer, "command": f.Command, "state": f.State, "after": f.After} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !f.Since.IsZero() {
		v.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if f.Limit != 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	return get[apitypes.InvocationList](ctx, c, "/api/v1/commands", v)
}

// Command returns one invocation; with wait > 0 the manager holds the answer
// until the invocation ends or wait passes (at most a minute).
func (c *Client) Command(ctx context.Context, id string, wait time.Duration) (apitypes.Invocation, error) {
	v := url.Values{}
	if wait > 0 {
		v.Set("wait", wait.String())
	}
	return get[apitypes.Invocation](ctx, c, "/api/v1/commands/"+url.PathEscape(id), v)
}

// WaitCommand returns invocation id once it has ended, asking again until ctx
// ends; each ask waits less than the client's 30-second timeout.
func (c *Client) WaitCommand(ctx context.Context, id string) (apitypes.Invocation, error) {
	for {
		inv, err := c.Command(ctx, id, 25*time.Second)
		if err != nil || inv.State.Final() {
			return inv, err
		}
		if err := ctx.Err(); err != nil {
			return inv, err
		}
	}
}

// CancelCommand cancels a queued invocation; another answers an *Error with
// status 409.
func (c *Client) CancelCommand(ctx context.Context, id, reason string) (apitypes.Invocation, error) {
	var out apitypes.Invocation
	err := c.Do(ctx, "POST", "/api/v1/commands/"+url.PathEscape(id)+"/cancel", apitypes.CommandCancel{Reason: reason}, &out)
	return out, err
}
