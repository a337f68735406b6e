package telquery

import (
	"net/url"
	"time"
)

// ErrorRateQuery asks for the per-minute error rate of several deployments at
// once (the fleet table's sparklines): one query for a page of deployments.
type ErrorRateQuery struct {
	// Deployments are the deployments to answer for, 1 to MaxErrorRateDeployments.
	Deployments []string
	// Since and Until bound the window (default: the last hour up to now), at
	// most MaxErrorRateWindow long.
	Since, Until time.Time
}

// Bounds of an ErrorRateQuery.
const (
	MaxErrorRateDeployments = 1000
	MaxErrorRateWindow      = 24 * time.Hour
)

// ErrorRates answers an ErrorRateQuery: a series of one-minute points per
// deployment, in the order asked, every minute of the window present.
type ErrorRates struct {
	Since   time.Time         `json:"since"`
	Until   time.Time         `json:"until"`
	StepSec float64           `json:"step_seconds"`
	Series  []ErrorRateSeries `json:"series"`
}

// ErrorRateSeries is one deployment's requests and errors over the window.
type ErrorRateSeries struct {
	Deployment string `json:"deployment"`
	// Requests and Errors are the window's totals.
	Requests int64            `json:"requests"`
	Errors   int64            `json:"errors"`
	Points   []ErrorRatePoint `json:"points"`
}

// ErrorRatePoint is one minute: its requests, errors, and their ratio (0 when
// there was no request; Requests tells a quiet minute from a clean one).
type ErrorRatePoint struct {
	Time      time.Time `json:"time"`
	Requests  int64     `json:"requests"`
	Errors    int64     `json:"errors"`
	ErrorRate float64   `json:"error_rate"`
}

// ParseErrorRateQuery reads an ErrorRateQuery from URL parameters: deployment
// (repeatable), since and until.
func ParseErrorRateQuery(v url.Values, now time.Time) (ErrorRateQuery, error) {
	q := ErrorRateQuery{Deployments: v["deployment"]}
	if len(q.Deployments) == 0 || len(q.Deployments) > MaxErrorRateDeployments {
		return q, invalid("deployment: give 1 to %d deployments (repeat the parameter), got %d", MaxErrorRateDeployments, len(q.Deployments))
	}
	for _, d := range q.Deployments {
		if d == "" {
			return q, invalid("deployment: an empty id")
		}
	}
	var err error
	if q.Since, err = ParseTime(v.Get("since"), now); err != nil {
		return q, err
	}
	if q.Until, err = ParseTime(v.Get("until"), now); err != nil {
		return q, err
	}
	until := q.Until
	if until.IsZero() {
		until = now
	}
	if !q.Since.IsZero() && !until.After(q.Since) {
		return q, invalid("until (%s) must be after since (%s)", until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	if !q.Since.IsZero() && until.Sub(q.Since) > MaxErrorRateWindow {
		return q, invalid("the window from since to until is %s, over the limit of %s", until.Sub(q.Since), MaxErrorRateWindow)
	}
	return q, nil
}

// Values encodes q as URL parameters.
func (q ErrorRateQuery) Values() url.Values {
	v := url.Values{"deployment": q.Deployments}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	return v
}
