package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/web/chart"
	"github.com/periscope-dev/periscope/internal/store"
)

// The deployment page answers "what is it running, is it worse than before,
// and what do I do": status, release and actions on top, the evidence (RED by
// release, the comparison the regression detector made, error logs, traces,
// pins, notifications) under it. Everything is read through the same registry
// and telemetry functions as the REST API (GET /api/v1/deployments/{id},
// /events, /pins/history, /red, /releases/compare, /logs, /spans).

// defaultRange is the time range of a page's charts when the URL names none:
// three hours at the rollups' one-minute resolution is 60 points of 3 minutes.
const defaultRange = 3 * time.Hour

// compareWindow is how much of each release the comparison takes, the
// regression detector's default window, so the page shows the figures it used.
const compareWindow = 30 * time.Minute

// severityError is the OTLP severity number of ERROR.
const severityError = 17

// timeRange is a page's one time range, from since/until in the URL.
type timeRange struct {
	Since, Until time.Time
	// SinceParam and UntilParam are the URL's values, kept for links.
	SinceParam, UntilParam string
}

// parseRange reads since/until (RFC 3339 or a duration before now) with the
// default range when absent.
func parseRange(q url.Values, now time.Time) (timeRange, error) {
	tr := timeRange{SinceParam: q.Get("since"), UntilParam: q.Get("until")}
	var err error
	if tr.Since, err = telquery.ParseTime(tr.SinceParam, now); err != nil {
		return tr, err
	}
	if tr.Until, err = telquery.ParseTime(tr.UntilParam, now); err != nil {
		return tr, err
	}
	if tr.Until.IsZero() {
		tr.Until = now
	}
	if tr.Since.IsZero() {
		tr.Since = tr.Until.Add(-defaultRange)
	}
	if !tr.Until.After(tr.Since) {
		return tr, fmt.Errorf("until (%s) must be after since (%s)", tr.Until.UTC().Format(time.RFC3339), tr.Since.UTC().Format(time.RFC3339))
	}
	return tr, nil
}

// rangeChoice is one of the quick time ranges offered above the charts.
type rangeChoice struct {
	Label, Since string
	Current      bool
	// Href is the page's link with this range (set where a page keeps other
	// parameters; the deployment page's is ?since=).
	Href string
}

func rangeChoices(tr timeRange) []rangeChoice {
	out := []rangeChoice{{Label: "1 h", Since: "1h"}, {Label: "3 h", Since: "3h"}, {Label: "6 h", Since: "6h"}, {Label: "24 h", Since: "24h"}}
	for i := range out {
		out[i].Current = tr.UntilParam == "" && (tr.SinceParam == out[i].Since || (tr.SinceParam == "" && out[i].Since == "3h"))
	}
	return out
}

// deploymentData is the deployment page's content.
type deploymentData struct {
	// Title is how the page names the deployment: its name, else its id.
	Title    string
	View     registry.View
	D        fleet.Deployment
	E        fleet.Evaluation
	Releases []registry.ReleaseView
	// PinTarget is the release the pin form preselects: the previous one when it
	// is older, else the latest.
	PinTarget string
	// Applies says when the agent applies a change: "at once (push)" or "at its
	// next check-in (pull)".
	Applies string
	Events  []fleet.Event
	Pins    []fleet.PinChange
	// Flash is the audit entry an action just created; Error what refused it.
	Flash []fleet.PinChange
	Error string
	// Unchanged is set when the action found the deployment already as asked.
	Unchanged bool

	Range   timeRange
	Ranges  []rangeChoice
	NoStore bool
	TelErr  string
	Charts  []chartView
	Legend  []legendEntry
	HasRED  bool
	Compare *telquery.Comparison
	CmpRows []cmpRow
	CmpErr  string
	// Regressed is set when the status reason is regressed-after-release.
	Regressed  bool
	ErrorLogs  []telquery.Log
	LogsLink   string
	Failed     []telquery.Span
	Slow       []telquery.Span
	SlowOver   float64
	TracesLink string

	Notes     []store.Notification
	NotesNone bool

	// Commands is the commands panel: the desired release's declarations, the
	// customer's rule, the forms and the recent invocations.
	Commands *commandsPanel

	// Runtime is the deployment's runtime state over the last
	// telquery.DefaultRuntimeWindow before the range's end (the same document
	// as GET /api/v1/deployments/{id}/runtime); RuntimeErr says why the
	// signals could not be read (the components still show).
	Runtime    runtimeview.Runtime
	RuntimeErr string
}

// chartView is one chart of the small multiples, drawn.
type chartView struct {
	ID, Title string
	SVG       template.HTML
}

// legendEntry is one release in the charts' legend.
type legendEntry struct {
	Release string
	Colour  int
}

func (s *Server) deploymentPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.showDeployment(w, r, sess, http.StatusOK, "", nil)
}

// showDeployment renders the page; status and msg carry an action's refusal,
// and flash its audit entries.
func (s *Server) showDeployment(w http.ResponseWriter, r *http.Request, sess *Session, status int, msg string, flash *registry.PinResult) {
	ctx := r.Context()
	id := r.PathValue("id")
	v, err := s.fleet.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, sess, http.StatusNotFound, "No such deployment",
			fmt.Sprintf("No deployment has the id %q. The fleet page lists every deployment.", id))
		return
	}
	if err != nil {
		s.log.Error("deployment page", "id", id, "err", err)
		s.fail(w, r, sess, http.StatusInternalServerError, "This deployment could not be read", "The manager's log has the details.")
		return
	}
	now := s.clock.Now()
	d, e := v.Deployment, v.Evaluation
	data := &deploymentData{Title: deploymentTitle(d), View: v, D: d, E: e, Releases: s.fleet.Releases(d.Stack), Error: msg,
		Applies: "at its next check-in (pull)", Regressed: e.ReasonCode == fleet.ReasonRegressed}
	switch {
	case d.AgentVersion != "" && !d.AcceptsReleases:
		data.Applies = "only when someone redeploys it: its agent cannot apply releases itself (manual apply)"
	case d.Mode == fleet.ModePush && d.Connected:
		data.Applies = "at once (push)"
	}
	data.PinTarget = e.Latest
	if d.PreviousRelease != "" && fleet.CompareVersions(d.PreviousRelease, d.RunningRelease) < 0 {
		data.PinTarget = d.PreviousRelease
	}
	if data.Events, err = s.fleet.Events(ctx, id, 30); err != nil {
		s.log.Warn("deployment events", "id", id, "err", err)
	}
	if data.Pins, err = s.fleet.PinChanges(ctx, id, 20); err != nil {
		s.log.Warn("deployment pin history", "id", id, "err", err)
	}
	if flash != nil {
		data.Flash, data.Unchanged = flash.Changes, len(flash.Changes) == 0
	} else if done := r.URL.Query().Get("done"); done != "" {
		for _, p := range data.Pins {
			if p.ChangeID == done {
				data.Flash = append(data.Flash, p)
			}
		}
	}
	var specs []command.Spec
	for _, rv := range data.Releases {
		if rv.Release.Version == e.Desired {
			specs = rv.Release.Commands
		}
	}
	data.Commands = s.commandsFor(ctx, d, e.Desired, specs)
	if s.notes == nil {
		data.NotesNone = true
	} else if data.Notes, err = s.notes.List(ctx, store.NotificationQuery{Deployment: id, Limit: 10}); err != nil {
		s.log.Warn("deployment notifications", "id", id, "err", err)
	}
	data.Range, err = parseRange(r.URL.Query(), now)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "That time range is not valid", err.Error()+". Pick a range above the charts, or give since and until as RFC 3339 times or durations before now (since=6h).")
		return
	}
	data.Ranges = rangeChoices(data.Range)
	data.Runtime = runtimeview.Build(d.ID, d.Health, telquery.RuntimeMetrics{})
	if s.tel == nil {
		data.NoStore = true
	} else {
		s.deploymentEvidence(ctx, data)
	}
	s.render(w, r, sess, status, "deployment", deploymentTitle(d), data)
}

func deploymentTitle(d fleet.Deployment) string {
	if d.Name != "" {
		return d.Name
	}
	return d.ID
}

// deploymentEvidence reads the telemetry: RED by release (then the slowest
// requests, over its p99), the comparison, error logs and failed requests. The
// three independent reads run at once, each filling its own fields; a failing
// one says so in its section.
func (s *Server) deploymentEvidence(ctx context.Context, data *deploymentData) {
	d := data.D
	f := telquery.Filter{Deployment: d.ID, Since: data.Range.Since, Until: data.Range.Until}
	data.LogsLink = "/logs" + string(query("deployment", d.ID, "release", d.RunningRelease, "min_severity", "error"))
	data.TracesLink = "/traces" + string(query("deployment", d.ID))
	var wg sync.WaitGroup
	wg.Go(func() {
		red, err := s.tel.RED(ctx, telquery.REDQuery{Filter: f, GroupBy: telquery.ByRelease})
		if err != nil {
			s.log.Warn("deployment RED", "id", d.ID, "err", err)
			data.TelErr = "The request figures could not be read: " + err.Error()
			return
		}
		data.HasRED = len(red.Series) > 0
		data.Charts, data.Legend = redCharts(red, data.Range, releaseMarkers(red, d, data.Range))
		// Slowest: the entry spans at or over the range's p99.
		var p99 float64
		for _, sr := range red.Series {
			p99 = math.Max(p99, sr.Total.P99)
		}
		if p99 <= 0 {
			return
		}
		data.SlowOver = p99
		slow, err := s.tel.Spans(ctx, telquery.SpanQuery{Filter: f, RootsOnly: true, MinDuration: time.Duration(p99 * float64(time.Millisecond)), Limit: 20})
		if err != nil {
			s.log.Warn("deployment slow spans", "id", d.ID, "err", err)
		}
		data.Slow = slow.Spans
		slices.SortStableFunc(data.Slow, func(a, b telquery.Span) int { return cmp.Compare(b.DurationMS, a.DurationMS) })
		data.Slow = data.Slow[:min(5, len(data.Slow))]
	})
	wg.Go(func() {
		c, err := s.tel.CompareReleases(ctx, telquery.CompareQuery{
			Filter: telquery.Filter{Deployment: d.ID, Release: d.RunningRelease}, Against: previousOf(d), Window: compareWindow})
		if err != nil {
			data.CmpErr = err.Error()
			return
		}
		data.Compare, data.CmpRows = &c, comparisonRows(c)
	})
	wg.Go(func() {
		rt, err := runtimeview.Load(ctx, s.tel, d.Health, telquery.RuntimeQuery{Deployment: d.ID, Until: data.Range.Until})
		if err != nil {
			s.log.Warn("deployment runtime", "id", d.ID, "err", err)
			data.RuntimeErr = "The runtime signals could not be read: " + err.Error()
			return
		}
		data.Runtime = rt
	})
	wg.Go(func() {
		lf := f
		lf.Release = d.RunningRelease
		logs, err := s.tel.Logs(ctx, telquery.LogQuery{Filter: lf, MinSeverity: severityError, Limit: 5})
		if err != nil {
			s.log.Warn("deployment error logs", "id", d.ID, "err", err)
		}
		data.ErrorLogs = logs.Logs
		failed, err := s.tel.Spans(ctx, telquery.SpanQuery{Filter: f, ErrorsOnly: true, Limit: 5})
		if err != nil {
			s.log.Warn("deployment failed spans", "id", d.ID, "err", err)
		}
		data.Failed = failed.Spans
	})
	wg.Wait()
}

// previousOf is the release to compare with: the regression's, else the one
// the deployment ran before ("" lets the store pick the one before).
func previousOf(d fleet.Deployment) string {
	if d.Regression != nil && d.Regression.Release == d.RunningRelease {
		return d.Regression.Previous
	}
	return d.PreviousRelease
}

// releaseMarkers are the release changes inside the range: when the current
// release started (the registry knows it to the check-in), and where each other
// release's requests begin after another's (from the figures themselves).
func releaseMarkers(red telquery.RED, d fleet.Deployment, tr timeRange) []chart.Marker {
	var out []chart.Marker
	inside := func(at time.Time) bool { return !at.Before(tr.Since) && !at.After(tr.Until) }
	if d.RunningRelease != "" && inside(d.ReleaseSince) {
		out = append(out, chart.Marker{At: d.ReleaseSince, Label: d.RunningRelease, Kind: "release"})
	}
	type first struct {
		rel string
		at  time.Time
	}
	var firsts []first
	for _, sr := range red.Series {
		for _, p := range sr.Points {
			if p.Requests > 0 {
				firsts = append(firsts, first{sr.Group, p.Time})
				break
			}
		}
	}
	slices.SortFunc(firsts, func(a, b first) int { return a.at.Compare(b.at) })
	for i, f := range firsts {
		// The release seen first was running when the range began: no change.
		if i == 0 || f.rel == d.RunningRelease || !inside(f.at) {
			continue
		}
		out = append(out, chart.Marker{At: f.at, Label: f.rel, Kind: "release"})
	}
	return out
}

// redCharts draws error rate, throughput and latency as small multiples over
// one time axis, one series per release (latency: p50, p95, p99 per release).
func redCharts(red telquery.RED, tr timeRange, markers []chart.Marker) ([]chartView, []legendEntry) {
	// Oldest release first, so colours stay put as new releases arrive.
	series := slices.Clone(red.Series)
	slices.SortFunc(series, func(a, b telquery.REDSeries) int { return fleet.CompareVersions(a.Group, b.Group) })
	errRate := chart.TimeSeries{ID: "error-rate", Title: "Error rate", Format: percent}
	through := chart.TimeSeries{ID: "throughput", Title: "Throughput", Format: perSecond}
	latency := chart.TimeSeries{ID: "latency", Title: "Latency p50 / p95 / p99", Format: millis}
	var legend []legendEntry
	for i, sr := range series {
		rel := sr.Group
		legend = append(legend, legendEntry{Release: rel, Colour: i%chart.Palette + 1})
		var er, tp, p50, p95, p99 []chart.Point
		for _, p := range sr.Points {
			nan := math.NaN()
			if p.Requests == 0 {
				er = append(er, chart.Point{T: p.Time, V: nan})
				tp = append(tp, chart.Point{T: p.Time, V: nan})
				p50, p95, p99 = append(p50, chart.Point{T: p.Time, V: nan}), append(p95, chart.Point{T: p.Time, V: nan}), append(p99, chart.Point{T: p.Time, V: nan})
				continue
			}
			er = append(er, chart.Point{T: p.Time, V: p.ErrorRate})
			tp = append(tp, chart.Point{T: p.Time, V: p.Rate})
			p50 = append(p50, chart.Point{T: p.Time, V: p.P50})
			p95 = append(p95, chart.Point{T: p.Time, V: p.P95})
			p99 = append(p99, chart.Point{T: p.Time, V: p.P99})
		}
		errRate.Series = append(errRate.Series, chart.Series{Name: rel, Release: rel, Colour: i, Points: er})
		through.Series = append(through.Series, chart.Series{Name: rel, Release: rel, Colour: i, Points: tp})
		latency.Series = append(latency.Series,
			chart.Series{Name: rel + " p50", Release: rel, Colour: i, Dash: 2, Points: p50},
			chart.Series{Name: rel + " p95", Release: rel, Colour: i, Points: p95},
			chart.Series{Name: rel + " p99", Release: rel, Colour: i, Dash: 1, Points: p99})
	}
	var out []chartView
	for _, c := range []*chart.TimeSeries{&errRate, &through, &latency} {
		c.Since, c.Until, c.Markers = tr.Since, tr.Until, markers
		out = append(out, chartView{ID: c.ID, Title: c.Title, SVG: template.HTML(c.SVG())})
	}
	return out, legend
}

// perSecond formats a rate of requests.
func perSecond(v float64) string {
	switch {
	case v == 0:
		return "0/s"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + "/s"
	default:
		return strconv.FormatFloat(v, 'f', 0, 64) + "/s"
	}
}

// millis formats a latency given in milliseconds.
func millis(v float64) string { return humanDuration(time.Duration(v * float64(time.Millisecond))) }

// pinAction pins the deployment to the release the form names.
func (s *Server) pinAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.pinChange(w, r, sess, fleet.ActionPin, r.PostFormValue("release"))
}

// unpinAction releases the pin: the deployment follows its stack's latest.
func (s *Server) unpinAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.pinChange(w, r, sess, fleet.ActionUnpin, "")
}

// rollbackAction pins the deployment to the release it ran before.
func (s *Server) rollbackAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.pinChange(w, r, sess, fleet.ActionRollback, "")
}

// pinChange runs a pin change through the registry's Pin, the one the REST API
// uses, as the session's token, and answers 303 back to the page, whose flash
// shows the audit entry; a refusal is said in words on the page.
func (s *Server) pinChange(w http.ResponseWriter, r *http.Request, sess *Session, action fleet.PinAction, release string) {
	id := r.PathValue("id")
	res, err := s.fleet.Pin(r.Context(), registry.PinRequest{Select: registry.Selector{IDs: []string{id}}, Action: action,
		Release: release, By: sess.Token.Name, ByRole: string(sess.Token.Role), Reason: r.PostFormValue("reason")})
	switch {
	case err == nil && len(res.Changes) == 0:
		s.showDeployment(w, r, sess, http.StatusOK, "", &res)
	case err == nil:
		http.Redirect(w, r, "/deployments/"+url.PathEscape(id)+"?done="+url.QueryEscape(res.ChangeID)+"#flash", http.StatusSeeOther)
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, sess, http.StatusNotFound, "No such deployment", fmt.Sprintf("No deployment has the id %q.", id))
	case errors.Is(err, store.ErrConflict):
		s.showDeployment(w, r, sess, http.StatusConflict, "Another pin change is in progress for this deployment; nothing was changed. Try again in a moment. ("+err.Error()+")", nil)
	case errors.Is(err, registry.ErrInvalid):
		msg := strings.TrimSuffix(err.Error(), ": "+registry.ErrInvalid.Error())
		s.showDeployment(w, r, sess, http.StatusBadRequest, "Nothing was changed: "+msg+".", nil)
	default:
		s.log.Error("dashboard pin change", "id", id, "action", action, "err", err)
		s.showDeployment(w, r, sess, http.StatusInternalServerError, "The change could not be stored; nothing was changed. The manager's log has the details.", nil)
	}
}

// cmpRow is one figure of the comparison: both releases and the difference.
type cmpRow struct {
	Figure, Current, Previous, Change string
	// Worse marks a change for the worse that the page highlights.
	Worse bool
}

// comparisonRows lays out a comparison as the regression detector reads it.
func comparisonRows(c telquery.Comparison) []cmpRow {
	cur, prev := c.Current, c.Previous
	signed := func(v float64, f func(float64) string) string {
		switch {
		case v > 0:
			return "+" + f(v)
		case v < 0:
			return "−" + f(-v)
		}
		return "no change"
	}
	ratio := func(a, b float64) string {
		if b <= 0 {
			return ""
		}
		return " (×" + strconv.FormatFloat(a/b, 'f', 1, 64) + ")"
	}
	pts := func(v float64) string { return strconv.FormatFloat(v*100, 'f', 1, 64) + " points" }
	lat := func(name string, a, b float64) cmpRow {
		return cmpRow{Figure: name + " latency", Current: millis(a), Previous: millis(b), Change: signed(a-b, millis) + ratio(a, b), Worse: a > b*1.5 && a-b >= 100}
	}
	return []cmpRow{
		{Figure: "Error rate", Current: percent(cur.ErrorRate), Previous: percent(prev.ErrorRate), Change: signed(cur.ErrorRate-prev.ErrorRate, pts),
			Worse: cur.ErrorRate-prev.ErrorRate >= 0.05},
		lat("p50", cur.P50, prev.P50),
		lat("p95", cur.P95, prev.P95),
		lat("p99", cur.P99, prev.P99),
		{Figure: "Throughput", Current: perSecond(cur.Rate), Previous: perSecond(prev.Rate), Change: signed(cur.Rate-prev.Rate, perSecond)},
		{Figure: "Requests", Current: strconv.FormatInt(cur.Requests, 10), Previous: strconv.FormatInt(prev.Requests, 10),
			Change: signed(float64(cur.Requests-prev.Requests), func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) })},
	}
}
