package telstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// ErrorRates answers the per-minute error rate of several deployments in one
// query on the rollups; see telquery.ErrorRateQuery.
func (s *Reader) ErrorRates(ctx context.Context, q telquery.ErrorRateQuery) (telquery.ErrorRates, error) {
	if len(q.Deployments) == 0 || len(q.Deployments) > telquery.MaxErrorRateDeployments {
		return telquery.ErrorRates{}, fmt.Errorf("%w: error rates of %d deployments: ask for 1 to %d", telquery.ErrInvalid, len(q.Deployments), telquery.MaxErrorRateDeployments)
	}
	win := s.windowOf(telquery.Filter{Since: q.Since, Until: q.Until}, time.Minute)
	if win.until.Sub(win.since) > telquery.MaxErrorRateWindow+time.Minute {
		return telquery.ErrorRates{}, fmt.Errorf("%w: error rates over %s: at most %s", telquery.ErrInvalid, win.until.Sub(win.since), telquery.MaxErrorRateWindow)
	}
	win.step = time.Minute
	nSteps := int((win.until.Sub(win.since) + time.Minute - 1) / time.Minute)
	out := telquery.ErrorRates{Since: win.since, Until: win.until, StepSec: 60, Series: make([]telquery.ErrorRateSeries, len(q.Deployments))}
	idx := make(map[string][]int, len(q.Deployments)) // a deployment asked twice gets its series twice
	args := make([]any, 0, len(q.Deployments)+2)
	for i, d := range q.Deployments {
		sr := &out.Series[i]
		sr.Deployment, sr.Points = d, make([]telquery.ErrorRatePoint, nSteps)
		for b := range sr.Points {
			sr.Points[b].Time = win.at(int64(b))
		}
		if idx[d] == nil {
			args = append(args, d)
		}
		idx[d] = append(idx[d], i)
	}
	in := strings.Repeat("?, ", len(args)-1) + "?"
	args = append(args, win.since, win.until)
	rs, err := s.query(ctx, "SELECT deployment, "+win.bucketExpr(s, "minute")+" b, sum(requests)::BIGINT, sum(errors)::BIGINT FROM red_minute"+
		" WHERE deployment IN ("+in+") AND minute >= ? AND minute < ? GROUP BY 1, 2", args...)
	if err != nil {
		return telquery.ErrorRates{}, fmt.Errorf("error rates: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var d string
		var b, req, errs int64
		if err := rs.Scan(&d, &b, &req, &errs); err != nil {
			return telquery.ErrorRates{}, fmt.Errorf("error rates: %w", err)
		}
		if b < 0 || b >= int64(nSteps) {
			continue
		}
		for _, i := range idx[d] {
			sr := &out.Series[i]
			p := &sr.Points[b]
			p.Requests, p.Errors = p.Requests+req, p.Errors+errs
			sr.Requests, sr.Errors = sr.Requests+req, sr.Errors+errs
		}
	}
	if err := rs.Err(); err != nil {
		return telquery.ErrorRates{}, fmt.Errorf("error rates: %w", err)
	}
	for i := range out.Series {
		for b := range out.Series[i].Points {
			if p := &out.Series[i].Points[b]; p.Requests > 0 {
				p.ErrorRate = float64(p.Errors) / float64(p.Requests)
			}
		}
	}
	return out, nil
}
