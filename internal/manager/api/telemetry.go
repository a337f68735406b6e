package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// Telemetry is what the API needs of the operational telemetry store.
type Telemetry interface {
	Logs(ctx context.Context, q telquery.LogQuery) (telquery.LogPage, error)
	// TailLogs calls fn with each record matching q that arrives from now on,
	// oldest first, until ctx ends or fn fails.
	TailLogs(ctx context.Context, q telquery.LogQuery, fn func(telquery.Log) error) error
	Spans(ctx context.Context, q telquery.SpanQuery) (telquery.SpanPage, error)
	// Trace returns store.ErrNotFound (wrapped) when no span of the trace is stored.
	Trace(ctx context.Context, traceID string) (telquery.Trace, error)
	RED(ctx context.Context, q telquery.REDQuery) (telquery.RED, error)
	CompareReleases(ctx context.Context, q telquery.CompareQuery) (telquery.Comparison, error)
	Metric(ctx context.Context, q telquery.MetricQuery) (telquery.Metric, error)
	// ErrorRates answers the per-minute error rate of several deployments in
	// one query (the fleet table's sparklines).
	ErrorRates(ctx context.Context, q telquery.ErrorRateQuery) (telquery.ErrorRates, error)
	// MetricNames lists the metrics with points matching the filter.
	MetricNames(ctx context.Context, q telquery.MetricNamesQuery) (telquery.MetricNames, error)
	// Runtime answers a deployment's newest runtime series (runtimeview reads it).
	Runtime(ctx context.Context, q telquery.RuntimeQuery) (telquery.RuntimeMetrics, error)
}

// WithTelemetry makes the telemetry routes answer from t, reading relative times
// such as since=1h against c (the real clock when nil), and returns a for
// chaining. Without it, or with a nil t, those routes answer 503.
func (a *API) WithTelemetry(t Telemetry, c clock.Clock) *API {
	// A manager running without a store answers 503 instead of panicking.
	t = orNil(t)
	a.tel, a.clock = t, clock.Or(c)
	return a
}

// Close ends every log tail in progress and refuses new ones. http.Server.Shutdown
// waits for handlers to return, and a tail returns only when its client leaves,
// so register Close with the server's RegisterOnShutdown.
func (a *API) Close() { a.endTails() }

func (a *API) telemetryRoutes() []Route {
	return []Route{
		{"GET", "/api/v1/logs", auth.RoleViewer, queryHandler(a, params(telquery.ParseLogQuery), Telemetry.Logs)},
		{"GET", "/api/v1/logs/tail", auth.RoleViewer, a.tailLogs},
		{"GET", "/api/v1/spans", auth.RoleViewer, queryHandler(a, params(telquery.ParseSpanQuery), Telemetry.Spans)},
		{"GET", "/api/v1/traces/{id}", auth.RoleViewer, queryHandler(a, traceID, Telemetry.Trace)},
		{"GET", "/api/v1/red", auth.RoleViewer, queryHandler(a, params(telquery.ParseREDQuery), Telemetry.RED)},
		{"GET", "/api/v1/releases/compare", auth.RoleViewer, queryHandler(a, params(telquery.ParseCompareQuery), Telemetry.CompareReleases)},
		{"GET", "/api/v1/metrics/series", auth.RoleViewer, queryHandler(a, params(telquery.ParseMetricQuery), Telemetry.Metric)},
		{"GET", "/api/v1/error-rates", auth.RoleViewer, queryHandler(a, params(telquery.ParseErrorRateQuery), Telemetry.ErrorRates)},
		{"GET", "/api/v1/metrics/names", auth.RoleViewer, queryHandler(a, params(telquery.ParseMetricNamesQuery), Telemetry.MetricNames)},
		{"GET", "/api/v1/deployments/{id}/runtime", auth.RoleViewer, a.deploymentRuntime},
	}
}

// store answers 503 when the manager runs without a telemetry store, so a client
// can tell "not enabled" from "nothing found".
func (a *API) store(w http.ResponseWriter) (Telemetry, bool) {
	if a.tel == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this manager has no telemetry store")
		return nil, false
	}
	return a.tel, true
}

// params adapts a telquery parser to read the request's URL parameters.
func params[Q any](parse func(url.Values, time.Time) (Q, error)) func(*http.Request, time.Time) (Q, error) {
	return func(r *http.Request, now time.Time) (Q, error) { return parse(r.URL.Query(), now) }
}

// traceID reads the trace id from the path, refusing a malformed one before it
// reaches the store.
func traceID(r *http.Request, _ time.Time) (string, error) {
	return telquery.CheckTraceID(r.PathValue("id"))
}

// queryHandler serves a query endpoint: every one parses its request, asks the
// store and answers JSON, so they differ only in the parser and the store method.
func queryHandler[Q, R any](a *API, parse func(*http.Request, time.Time) (Q, error), run func(Telemetry, context.Context, Q) (R, error)) func(http.ResponseWriter, *http.Request, auth.APIToken) {
	return func(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
		t, ok := a.store(w)
		if !ok {
			return
		}
		q, err := parse(r, a.clock.Now())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		res, err := run(t, r.Context(), q)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// tailLogs streams matching log records as NDJSON until the client goes away.
// Headers go out before the first record so a client knows at once that the tail
// is live; an error after that can only be reported in the trailer.
func (a *API) tailLogs(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	t, ok := a.store(w)
	if !ok {
		return
	}
	q, err := telquery.ParseLogQuery(r.URL.Query(), a.clock.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if a.closing.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the manager is shutting down")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(a.closing, cancel)()
	// The controller reaches Flush through wrappers that implement Unwrap.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", apitypes.TailErrorTrailer)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		a.log.Warn("log tail cannot flush; the client sees records only when the stream ends", "err", err)
	}
	enc := json.NewEncoder(w)
	err = t.TailLogs(ctx, q, func(l telquery.Log) error {
		if err := enc.Encode(l); err != nil {
			return err
		}
		return rc.Flush()
	})
	if r.Context().Err() != nil {
		return // the client left; nobody reads a trailer
	}
	var msg string
	switch {
	case a.closing.Err() != nil:
		msg = "the manager is shutting down"
	case err == nil:
		return
	case errors.Is(err, telquery.ErrInvalid):
		msg = err.Error()
	default:
		a.log.Error("log tail failed", "path", r.URL.Path, "err", err)
		msg = "internal error; the manager log has details"
	}
	h.Set(apitypes.TailErrorTrailer, msg)
}
