package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// get asks a telemetry query endpoint; the query type's Values is the one encoding
// the server's parser reads, so client and server cannot disagree on names.
func get[R any](ctx context.Context, c *Client, path string, v url.Values) (R, error) {
	var out R
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	err := c.Do(ctx, "GET", path, nil, &out)
	return out, err
}

// Logs returns one page of log records matching q, newest first.
func (c *Client) Logs(ctx context.Context, q telquery.LogQuery) (telquery.LogPage, error) {
	return get[telquery.LogPage](ctx, c, "/api/v1/logs", q.Values())
}

// Spans returns one page of spans matching q, newest first.
func (c *Client) Spans(ctx context.Context, q telquery.SpanQuery) (telquery.SpanPage, error) {
	return get[telquery.SpanPage](ctx, c, "/api/v1/spans", q.Values())
}

// Trace returns one trace as a tree; an unknown trace is an *Error with status 404.
func (c *Client) Trace(ctx context.Context, traceID string) (telquery.Trace, error) {
	return get[telquery.Trace](ctx, c, "/api/v1/traces/"+url.PathEscape(traceID), nil)
}

// RED returns rate, errors and duration series for q.
func (c *Client) RED(ctx context.Context, q telquery.REDQuery) (telquery.RED, error) {
	return get[telquery.RED](ctx, c, "/api/v1/red", q.Values())
}

// CompareReleases compares a release's requests with the release before it.
func (c *Client) CompareReleases(ctx context.Context, q telquery.CompareQuery) (telquery.Comparison, error) {
	return get[telquery.Comparison](ctx, c, "/api/v1/releases/compare", q.Values())
}

// Metric returns the series of one metric.
func (c *Client) Metric(ctx context.Context, q telquery.MetricQuery) (telquery.Metric, error) {
	return get[telquery.Metric](ctx, c, "/api/v1/metrics/series", q.Values())
}

// MetricNames lists the metrics with points matching q's filter.
func (c *Client) MetricNames(ctx context.Context, q telquery.MetricNamesQuery) (telquery.MetricNames, error) {
	return get[telquery.MetricNames](ctx, c, "/api/v1/metrics/names", q.Values())
}

// TailLogs calls fn with each log record matching q that the manager stores from
// now on, oldest first. It returns ctx's error when ctx ends, fn's error when fn
// fails, and an error when the manager ends the stream for any other reason.
// Since, Until, Limit and Cursor of q do not apply to a tail.
func (c *Client) TailLogs(ctx context.Context, q telquery.LogQuery, fn func(telquery.Log) error) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.Base+"/api/v1/logs/tail?"+q.Values().Encode(), nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	// A tail is open as long as the caller wants it: the client's overall request
	// timeout would cut it, so this request goes without it.
	hc := *c.HTTP
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the manager at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return answerError(resp.StatusCode, data)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var l telquery.Log
		err := dec.Decode(&l)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read log tail: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	// Trailers are known only once the body has been read to its end.
	if msg := resp.Trailer.Get(apitypes.TailErrorTrailer); msg != "" {
		return fmt.Errorf("the manager ended the log tail: %s", msg)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("the manager ended the log tail (shutting down?)")
}

// Runtime returns a deployment's runtime state over q's window (the last 10
// minutes when q sets none).
func (c *Client) Runtime(ctx context.Context, deployment string, q telquery.RuntimeQuery) (apitypes.Runtime, error) {
	return get[apitypes.Runtime](ctx, c, "/api/v1/deployments/"+url.PathEscape(deployment)+"/runtime", q.Values())
}
