package web

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/web/chart"
)

// fleetPageSize is the table's page: 30–40 rows fit a laptop screen, and
// fifty keep a page light while showing a large filter's first screenful.
const fleetPageSize = 50

// sparkWindow is the span of the table's error-rate sparklines.
const sparkWindow = time.Hour

// fleetData is the fleet page's content: the counts, the adoption bars and one
// page of the deployment table.
type fleetData struct {
	// Fleet is the summary of every deployment: the counts link to filters
	// of the whole fleet.
	Fleet      registry.Summary
	Counts     []statusCount
	Pinned     countLink
	Behind     countLink
	Problems   int
	AllHealthy bool
	// Summary is the one line that says whether anything is wrong.
	Summary string

	Adoption []adoptionBar

	Filter   fleetFilter
	Chips    []chip
	Stacks   []string
	Statuses []fleet.Status
	// BehindOptions are the values of the behind filter.
	BehindOptions []string
	Notice        string // a filter or cursor the page could not use, in words

	Rows []fleetRow
	// Range is "1–50 of 1,234"; PrevURL and NextURL page the table.
	Range            string
	PrevURL, NextURL string
	// SparkScale names the sparklines' shared y-scale; SparkNote says why
	// there are none.
	SparkScale, SparkNote string

	// Empty is a manager without any deployment: the page teaches how to add one.
	Empty      bool
	ManagerURL string
	AsOf       time.Time
}

// statusCount is one status's count, a link that filters the table by it.
type statusCount struct {
	Status fleet.Status
	N      string
	Zero   bool
	Active bool
}

// countLink is the pinned or behind count beside the statuses.
type countLink struct {
	N      string
	Zero   bool
	Active bool
}

// adoptionBar is one stack's releases as a stacked bar.
type adoptionBar struct {
	Stack, Latest string
	Total         string
	Segments      []segment
}

// segment is one release's share of its stack's bar, in a 1000-wide viewBox.
type segment struct {
	Label   string // the version, or "not reporting"
	Version string
	N       string
	Percent string
	X, W    float64
	Class   string
	Latest  bool
	URL     string
}

// fleetRow is one deployment in the table.
type fleetRow struct {
	V         registry.View
	Labels    []labelLink
	MoreLabel int
	Behind    string // the reason in words, when behind
	Spark     template.HTML
	SparkText string
}

type labelLink struct{ Text, URL string }

// chip is an active filter with a link that removes it.
type chip struct{ Name, Value, Remove string }

// fleetFilter is the table's filter as it is in the URL.
type fleetFilter struct {
	Status, Customer, Cloud, Region, Release, Stack, Behind, Pinned, Q string
	Labels                                                             []string
	Any                                                                bool
}

// filterParams are the URL parameters of the fleet filter, in the order
// chips show them.
var filterParams = []string{"status", "customer", "cloud", "region", "stack", "release", "behind", "pinned", "label", "q"}

// behindOptions are what the behind filter takes: any, latest, or a reason.
func behindOptions() []string {
	out := []string{"any", "latest"}
	for _, r := range fleet.BehindReasons {
		out = append(out, string(r))
	}
	return append(out, string(fleet.BehindPinned))
}

// parseFleetFilter reads the filter from the URL. A value the registry would
// not understand is dropped and named in the returned notice, so a mistyped
// link still shows the fleet.
func parseFleetFilter(q url.Values) (fleetFilter, fleet.Filter, []string) {
	var bad []string
	ff := fleetFilter{Customer: q.Get("customer"), Cloud: q.Get("cloud"), Region: q.Get("region"),
		Release: q.Get("release"), Stack: q.Get("stack"), Q: strings.TrimSpace(q.Get("q"))}
	f := fleet.Filter{Customer: ff.Customer, Cloud: ff.Cloud, Region: ff.Region, Release: ff.Release, Stack: ff.Stack, Text: ff.Q}
	if s := q.Get("status"); s != "" {
		if st, err := fleet.ParseStatus(s); err == nil {
			ff.Status, f.Status = s, st
		} else {
			bad = append(bad, fmt.Sprintf("status %q is not one of healthy, unhealthy, updating, failed, stale, pending", s))
		}
	}
	if s := q.Get("behind"); s != "" {
		if slices.Contains(behindOptions(), s) {
			ff.Behind, f.Behind = s, s
		} else {
			bad = append(bad, fmt.Sprintf("behind %q is not any, latest or a reason such as pull-pending", s))
		}
	}
	if s := q.Get("pinned"); s != "" {
		if b, err := strconv.ParseBool(s); err == nil {
			ff.Pinned, f.Pinned = strconv.FormatBool(b), strconv.FormatBool(b)
		} else {
			bad = append(bad, fmt.Sprintf("pinned %q is not true or false", s))
		}
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			bad = append(bad, fmt.Sprintf("label %q is not key=value", l))
			continue
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
		ff.Labels = append(ff.Labels, l)
	}
	ff.Any = !f.IsZero()
	return ff, f, bad
}

// values is the filter as URL parameters, without paging.
func (ff fleetFilter) values() url.Values {
	v := url.Values{}
	for _, kv := range [][2]string{{"status", ff.Status}, {"customer", ff.Customer}, {"cloud", ff.Cloud}, {"region", ff.Region},
		{"stack", ff.Stack}, {"release", ff.Release}, {"behind", ff.Behind}, {"pinned", ff.Pinned}, {"q", ff.Q}} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	for _, l := range ff.Labels {
		v.Add("label", l)
	}
	return v
}

// fleetURL is the fleet page with v as its query.
func fleetURL(v url.Values) string {
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

// With returns the fleet URL of the filter with key set to value (added, for
// labels), so any value in the table is a link that narrows the view.
func (ff fleetFilter) With(key, value string) string {
	v := ff.values()
	if key == "label" {
		if !slices.Contains(v["label"], value) {
			v.Add("label", value)
		}
	} else {
		v.Set(key, value)
	}
	return fleetURL(v)
}

func (ff fleetFilter) chips() []chip {
	v := ff.values()
	var out []chip
	for _, k := range filterParams {
		for _, val := range v[k] {
			rest := url.Values{}
			for k2, vs := range v {
				for _, x := range vs {
					if k2 != k || x != val {
						rest.Add(k2, x)
					}
				}
			}
			name := k
			if k == "q" {
				name = "search"
			}
			out = append(out, chip{Name: name, Value: val, Remove: fleetURL(rest)})
		}
	}
	return out
}

// fleetPage answers GET /: counts, adoption and the deployment table. With
// ?fragment=table (or the header Periscope-Fragment: table) it answers only
// the parts the page refreshes, for static/fleet.js.
func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	d := s.fleetData(r)
	if r.URL.Query().Get("fragment") == "table" || r.Header.Get("Periscope-Fragment") == "table" {
		s.fleetFragment(w, r, sess, d)
		return
	}
	s.render(w, r, sess, http.StatusOK, "fleet", "Fleet", d)
}

// fleetFragment renders the refreshed parts alone, into a buffer like a page.
func (s *Server) fleetFragment(w http.ResponseWriter, r *http.Request, sess *Session, d *fleetData) {
	var buf bytes.Buffer
	t := s.pages.byName["fleet"]
	if err := t.ExecuteTemplate(&buf, "fleet-live", view{Title: "Fleet", Nav: "fleet", Session: sess, Now: s.clock.Now(), Data: d}); err != nil {
		s.log.Error("render fleet fragment", "err", err)
		http.Error(w, "the fleet table could not be drawn; the manager log has details", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

func (s *Server) fleetData(r *http.Request) *fleetData {
	q := r.URL.Query()
	now := s.clock.Now()
	d := &fleetData{AsOf: now, Statuses: fleet.Statuses, BehindOptions: behindOptions(), ManagerURL: managerURL(r)}
	var f fleet.Filter
	var bad []string
	d.Filter, f, bad = parseFleetFilter(q)
	d.Chips = d.Filter.chips()

	// The counts and adoption are of the whole fleet (the count links filter
	// the whole fleet); the table is of the filter. One pass reads all three.
	page := registry.Page{Limit: fleetPageSize, After: q.Get("after"), Before: q.Get("before"), Order: registry.OrderProblems}
	sum, adoption, l, err := s.fleet.Overview(f, page)
	if err != nil {
		bad = append(bad, "this page of the table is out of date or malformed, so it starts from the top")
		page.After, page.Before = "", ""
		sum, adoption, l, _ = s.fleet.Overview(f, page)
	}
	d.Fleet = sum
	d.Empty = d.Fleet.Total == 0
	s.fleetCounts(d)
	s.fleetAdoption(d, adoption)

	d.Notice = strings.Join(bad, "; ")
	if l.Total > 0 {
		d.Range = fmt.Sprintf("%s–%s of %s", thousands(l.Offset+1), thousands(l.Offset+len(l.Items)), thousands(l.Total))
	} else {
		d.Range = "0 of 0"
	}
	base := d.Filter.values()
	if l.Prev != "" {
		v := cloneValues(base)
		v.Set("before", l.Prev)
		d.PrevURL = fleetURL(v)
	}
	if l.Next != "" {
		v := cloneValues(base)
		v.Set("after", l.Next)
		d.NextURL = fleetURL(v)
	}
	d.Rows = make([]fleetRow, len(l.Items))
	for i, v := range l.Items {
		d.Rows[i] = fleetRow{V: v, Behind: behindWords(v.Evaluation, now)}
		d.Rows[i].Labels, d.Rows[i].MoreLabel = labelLinks(d.Filter, v.Deployment.Labels)
	}
	s.sparklines(r.Context(), d, now)
	return d
}

func (s *Server) fleetCounts(d *fleetData) {
	sum := d.Fleet
	for _, st := range fleet.Statuses {
		n := sum.ByStatus[st]
		d.Counts = append(d.Counts, statusCount{Status: st, N: thousands(n), Zero: n == 0, Active: d.Filter.Status == string(st)})
	}
	behind := 0
	for _, n := range sum.Behind {
		behind += n
	}
	d.Pinned = countLink{N: thousands(sum.Pinned), Zero: sum.Pinned == 0, Active: d.Filter.Pinned == "true"}
	d.Behind = countLink{N: thousands(behind), Zero: behind == 0, Active: d.Filter.Behind == "any"}
	bad := map[fleet.Status]int{}
	for _, st := range []fleet.Status{fleet.StatusUnhealthy, fleet.StatusFailed, fleet.StatusStale} {
		bad[st] = sum.ByStatus[st]
		d.Problems += sum.ByStatus[st]
	}
	switch {
	case sum.Total == 0:
	case sum.ByStatus[fleet.StatusHealthy] == sum.Total && behind == 0:
		d.AllHealthy = true
		d.Summary = "All " + plural(sum.Total, "deployment", "deployments") + " healthy and on their desired release."
	case d.Problems > 0:
		var parts []string
		for _, st := range []fleet.Status{fleet.StatusUnhealthy, fleet.StatusFailed, fleet.StatusStale} {
			if bad[st] > 0 {
				parts = append(parts, thousands(bad[st])+" "+string(st))
			}
		}
		d.Summary = plural(d.Problems, "deployment needs", "deployments need") + " attention: " + strings.Join(parts, ", ") + "."
		if behind > 0 {
			d.Summary += " " + plural(behind, "is behind its", "are behind their") + " desired release."
		}
	default:
		var parts []string
		for _, st := range []fleet.Status{fleet.StatusUpdating, fleet.StatusPending} {
			if n := sum.ByStatus[st]; n > 0 {
				parts = append(parts, thousands(n)+" "+string(st))
			}
		}
		if behind > 0 {
			parts = append(parts, thousands(behind)+" behind")
		}
		d.Summary = "Nothing is failing; " + strings.Join(parts, ", ") + "."
	}
}

// plural is "1 deployment" or "3 deployments" (counted with separators).
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return thousands(n) + " " + many
}

func (s *Server) fleetAdoption(d *fleetData, adoption []registry.Adoption) {
	for _, a := range adoption {
		if a.Total == 0 {
			continue
		}
		bar := adoptionBar{Stack: a.Stack, Latest: a.Latest, Total: plural(a.Total, "deployment", "deployments")}
		x, running := 0.0, 0
		add := func(label, version string, n int, class string, latest bool, link string) {
			w := 1000 * float64(n) / float64(a.Total)
			bar.Segments = append(bar.Segments, segment{Label: label, Version: version, N: thousands(n),
				Percent: percent(float64(n) / float64(a.Total)), X: math.Round(x*10) / 10, W: math.Round(w*10) / 10,
				Class: class, Latest: latest, URL: link})
			x += w
		}
		i := 0
		for _, ra := range a.Releases {
			if ra.Running == 0 {
				continue
			}
			running += ra.Running
			add(ra.Version, ra.Version, ra.Running, "seg-"+strconv.Itoa(i%5+1), ra.Version == a.Latest,
				fleetURL(url.Values{"stack": {a.Stack}, "release": {ra.Version}}))
			i++
		}
		if rest := a.Total - running; rest > 0 {
			add("not reporting", "", rest, "seg-none", false, fleetURL(url.Values{"stack": {a.Stack}, "status": {string(fleet.StatusPending)}}))
		}
		d.Adoption = append(d.Adoption, bar)
		d.Stacks = append(d.Stacks, a.Stack)
	}
}

// sparklines asks the telemetry store once for the page's error rates and
// draws every row on one y-scale.
func (s *Server) sparklines(ctx context.Context, d *fleetData, now time.Time) {
	if len(d.Rows) == 0 {
		return
	}
	if s.tel == nil {
		d.SparkNote = "This manager keeps no telemetry, so there are no error rates to show."
		return
	}
	ids := make([]string, len(d.Rows))
	for i, row := range d.Rows {
		ids[i] = row.V.Deployment.ID
	}
	er, err := s.tel.ErrorRates(ctx, telquery.ErrorRateQuery{Deployments: ids, Since: now.Add(-sparkWindow), Until: now})
	if err != nil {
		s.log.Warn("fleet page: error rates", "err", err)
		d.SparkNote = "Error rates could not be read from the telemetry store just now; the manager log has details."
		return
	}
	peak := 0.0
	for _, sr := range er.Series {
		for _, p := range sr.Points {
			if p.Requests > 0 {
				peak = max(peak, p.ErrorRate)
			}
		}
	}
	top := chart.NiceMax(peak, 0.01)
	d.SparkScale = "0–" + percent(top)
	for i := range d.Rows {
		if i >= len(er.Series) {
			break
		}
		sr := er.Series[i]
		vals := make([]float64, len(sr.Points))
		worst := -1
		for j, p := range sr.Points {
			vals[j] = math.NaN()
			if p.Requests > 0 {
				vals[j] = p.ErrorRate
				if worst < 0 || p.ErrorRate > sr.Points[worst].ErrorRate {
					worst = j
				}
			}
		}
		text := "No requests in the last hour."
		if sr.Requests > 0 {
			text = fmt.Sprintf("Last hour: %s of %s requests failed (%s).", thousands64(sr.Errors), thousands64(sr.Requests),
				percent(float64(sr.Errors)/float64(sr.Requests)))
			if w := sr.Points[worst]; w.Errors > 0 {
				text += fmt.Sprintf(" Worst minute %s UTC: %s (%s of %s).", w.Time.UTC().Format("15:04"), percent(w.ErrorRate),
					thousands64(w.Errors), thousands64(w.Requests))
			}
		}
		d.Rows[i].SparkText = text
		class := "spark"
		if sr.Errors > 0 {
			class += " failing"
		}
		d.Rows[i].Spark = chart.Sparkline{Width: 120, Height: 22, Max: top, Values: vals, Title: text, Class: class}.SVG()
	}
}

// behindWords says why a deployment is behind and what happens next.
func behindWords(e fleet.Evaluation, now time.Time) string {
	switch e.Behind {
	case "":
		return ""
	case fleet.BehindPullPending:
		s := "polls for " + e.Desired
		if !e.NextPollExpected.IsZero() {
			s += ", next expected " + ago(now, e.NextPollExpected)
		}
		return s
	case fleet.BehindUnreachable:
		return "push connection lost; " + e.Desired + " waits for it to reconnect"
	case fleet.BehindConfigDrift:
		return "reports a configuration other than the expected one"
	case fleet.BehindUpdateFailed:
		return "the update to " + e.Desired + " failed"
	case fleet.BehindAwaitingApply:
		return "offered " + e.Desired + ", not applying it yet"
	case fleet.BehindManualApply:
		return "its agent cannot apply releases: redeploy it on " + e.Desired
	}
	return string(e.Behind)
}

// labelLinks turns up to three labels into filter links, sorted by key.
func labelLinks(ff fleetFilter, labels map[string]string) ([]labelLink, int) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []labelLink
	for _, k := range keys {
		if len(out) == 3 {
			return out, len(keys) - 3
		}
		kv := k + "=" + labels[k]
		out = append(out, labelLink{Text: kv, URL: ff.With("label", kv)})
	}
	return out, 0
}

// managerURL is this manager's base URL as the browser reached it, for the
// commands the empty state shows.
func managerURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// thousands formats n with thousands separators: 1,234.
func thousands(n int) string { return thousands64(int64(n)) }

func thousands64(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
