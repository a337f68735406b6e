// Package apiclient is the Go client of the manager's REST API, used by the CLI
// verbs, the demo and tests.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// Client talks to one manager with one API token.
type Client struct {
	Base  string
	Token string
	HTTP  *http.Client
}

// New returns a client for the manager at base.
func New(base, token string) *Client {
	return &Client{Base: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Error is an error response from the manager.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("manager answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Do sends a request with an optional JSON body and decodes a JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the manager at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return answerError(resp.StatusCode, data)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// answerError turns an error answer into an *Error, keeping the manager's code
// when the body is the API's JSON error and the raw text otherwise (a proxy's page).
func answerError(status int, data []byte) error {
	var e apitypes.Error
	if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
		return &Error{Status: status, Code: e.Error.Code, Message: e.Error.Message}
	}
	return &Error{Status: status, Code: "http", Message: strings.TrimSpace(string(data))}
}

// Filter narrows deployment lists and summaries.
type Filter struct {
	Status, Customer, Cloud, Region, Release, Stack, Text string
	// Labels must all be present with these values.
	Labels map[string]string
	// Behind is "any", "latest" or a behind reason; Pinned is "true" or "false".
	Behind, Pinned string
}

func (f Filter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"status": f.Status, "customer": f.Customer, "cloud": f.Cloud, "region": f.Region,
		"release": f.Release, "stack": f.Stack, "q": f.Text, "behind": f.Behind, "pinned": f.Pinned} {
		if s != "" {
			v.Set(k, s)
		}
	}
	keys := make([]string, 0, len(f.Labels))
	for k := range f.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.Add("label", k+"="+f.Labels[k])
	}
	return v
}

// Deployments returns every deployment matching f, following pages.
func (c *Client) Deployments(ctx context.Context, f Filter) ([]apitypes.Deployment, error) {
	var all []apitypes.Deployment
	v := f.values()
	v.Set("limit", "1000")
	for {
		var page apitypes.DeploymentList
		if err := c.Do(ctx, "GET", "/api/v1/deployments?"+v.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.Next == "" {
			return all, nil
		}
		v.Set("after", page.Next)
	}
}

// Deployment returns one deployment.
func (c *Client) Deployment(ctx context.Context, id string) (apitypes.Deployment, error) {
	var d apitypes.Deployment
	err := c.Do(ctx, "GET", "/api/v1/deployments/"+url.PathEscape(id), nil, &d)
	return d, err
}

// CreateDeployment registers a deployment; the answer carries its agent token.
func (c *Client) CreateDeployment(ctx context.Context, nd apitypes.NewDeployment) (apitypes.Deployment, error) {
	var d apitypes.Deployment
	err := c.Do(ctx, "POST", "/api/v1/deployments", nd, &d)
	return d, err
}

// CreateDeployments registers many deployments at once.
func (c *Client) CreateDeployments(ctx context.Context, nds []apitypes.NewDeployment) ([]apitypes.Deployment, error) {
	var out apitypes.DeploymentList
	err := c.Do(ctx, "POST", "/api/v1/deployments/batch", apitypes.NewDeployments{Deployments: nds}, &out)
	return out.Items, err
}

// Events returns a deployment's status history ("" for the whole fleet), newest first.
func (c *Client) Events(ctx context.Context, id string, limit int) ([]apitypes.Event, error) {
	path := "/api/v1/events"
	if id != "" {
		path = "/api/v1/deployments/" + url.PathEscape(id) + "/events"
	}
	var out struct {
		Items []apitypes.Event `json:"items"`
	}
	err := c.Do(ctx, "GET", fmt.Sprintf("%s?limit=%d", path, limit), nil, &out)
	return out.Items, err
}

// Summary returns the fleet counts for f.
func (c *Client) Summary(ctx context.Context, f Filter) (apitypes.Summary, error) {
	var s apitypes.Summary
	err := c.Do(ctx, "GET", "/api/v1/summary?"+f.values().Encode(), nil, &s)
	return s, err
}

// Releases lists releases (of one stack when stack is not empty).
func (c *Client) Releases(ctx context.Context, stack string) ([]apitypes.Release, error) {
	var out struct {
		Items []apitypes.Release `json:"items"`
	}
	err := c.Do(ctx, "GET", "/api/v1/releases?"+url.Values{"stack": {stack}}.Encode(), nil, &out)
	return out.Items, err
}

// CreateRelease publishes a release.
func (c *Client) CreateRelease(ctx context.Context, nr apitypes.NewRelease) (apitypes.Release, error) {
	var r apitypes.Release
	err := c.Do(ctx, "POST", "/api/v1/releases", nr, &r)
	return r, err
}
