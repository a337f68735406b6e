package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// The releases page: per stack, each release's adoption, its error rate and p95
// across the fleet against the release before it, and the deployments running
// it that are behind, by reason. Its bulk form previews a pin, rollback or
// unpin over a selection and confirms it through registry.Pin, the function
// behind the REST API's POST /api/v1/pins.

// healthWindow is how much telemetry the releases page compares (its
// template says "last 24 h").
const healthWindow = 24 * time.Hour

// releasesData is the releases page.
type releasesData struct {
	Stacks []stackRow
	// Telemetry is false when the manager has no telemetry store; TelErr says
	// in words why the figures are missing when the query failed.
	Telemetry bool
	TelErr    string
	Form      bulkForm
	// StackNames, Versions and Statuses feed the bulk form's choices.
	StackNames []string
	Versions   []string
	Statuses   []fleet.Status
	// RolloutsOn is set when the manager runs progressive rollouts.
	RolloutsOn bool
}

// stackRow is one stack's section.
type stackRow struct {
	Stack    string
	Latest   string
	Total    int
	Releases []releaseRow
	// Rollouts are the stack's newest rollouts; RolloutsErr says why they
	// could not be read.
	Rollouts    []rolloutRow
	RolloutsErr string
}

// releaseRow is one release of a stack.
type releaseRow struct {
	Version   string
	Published time.Time
	// Listed is false for a version deployments run that was never published.
	Listed  bool
	Latest  bool
	Running int
	Desired int
	Pinned  int
	// Share is Running over the stack's total, in [0,1].
	Share float64
	// Stats are the release's fleet-wide figures over the window; HasStats is
	// false when it served no request in it.
	Stats    telquery.Stats
	HasStats bool
	// Prev is the release before it with figures to compare against ("" none).
	Prev      string
	PrevStats telquery.Stats
	Behind    []behindCount
}

// BarWidth is the adoption bar's length out of 100.
func (r releaseRow) BarWidth() string { return strconv.FormatFloat(r.Share*100, 'f', 1, 64) }

// P95 is the release's p95 latency with its unit.
func (r releaseRow) P95() string { return msText(r.Stats.P95) }

// Delta says how the release compares with the previous one, in words:
// "+4.5 pts errors, +120.0 ms p95".
func (r releaseRow) Delta() string {
	de, dp := (r.Stats.ErrorRate-r.PrevStats.ErrorRate)*100, r.Stats.P95-r.PrevStats.P95
	p95 := msText(math.Abs(dp))
	if dp < 0 {
		p95 = "−" + p95
	} else {
		p95 = "+" + p95
	}
	return fmt.Sprintf("%+.1f pts errors, %s p95", de, p95)
}

// DeltaClass marks a comparison worse (error rate up a point or p95 up 20%),
// better, or about the same.
func (r releaseRow) DeltaClass() string {
	de, dp := r.Stats.ErrorRate-r.PrevStats.ErrorRate, r.Stats.P95-r.PrevStats.P95
	switch {
	case de >= 0.01 || (r.PrevStats.P95 > 0 && dp >= 0.2*r.PrevStats.P95):
		return "worse"
	case de <= -0.01 || (r.PrevStats.P95 > 0 && dp <= -0.2*r.PrevStats.P95):
		return "better"
	}
	return "same"
}

// msText formats milliseconds with a unit a person reads at a glance.
func msText(ms float64) string {
	return humanDuration(time.Duration(ms * float64(time.Millisecond)))
}

// behindCount is how many deployments running a release are behind their
// desired release for reason.
type behindCount struct {
	Reason fleet.BehindReason
	Count  int
}

func (s *Server) releasesPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	d := releasesData{Telemetry: s.tel != nil, RolloutsOn: s.rollouts != nil, Form: bulkFormFrom(r.URL.Query())}
	if d.Form.Action == "" {
		d.Form.Action = string(fleet.ActionPin)
	}
	versions := map[string]bool{}
	for _, ad := range s.fleet.Adoption("") {
		published := map[string]time.Time{}
		for _, rv := range s.fleet.Releases(ad.Stack) {
			published[rv.Release.Version] = rv.Release.CreatedAt
		}
		st := stackRow{Stack: ad.Stack, Latest: ad.Latest, Total: ad.Total}
		for _, ra := range ad.Releases {
			row := releaseRow{Version: ra.Version, Published: published[ra.Version], Listed: ra.Published, Latest: ra.Version == ad.Latest,
				Running: ra.Running, Desired: ra.Desired, Pinned: ra.Pinned}
			if ad.Total > 0 {
				row.Share = float64(ra.Running) / float64(ad.Total)
			}
			for _, reason := range fleet.BehindReasons {
				if n := ra.Behind[reason]; n > 0 {
					row.Behind = append(row.Behind, behindCount{reason, n})
				}
			}
			if ra.Published {
				versions[ra.Version] = true
			}
			st.Releases = append(st.Releases, row)
		}
		if s.rollouts != nil {
			rows, err := s.stackRolloutRows(r.Context(), ad.Stack)
			if err != nil {
				s.log.Warn("releases page: rollouts", "stack", ad.Stack, "err", err)
				st.RolloutsErr = "The rollouts could not be read; the manager's log has the details."
			}
			st.Rollouts = rows
		}
		d.StackNames = append(d.StackNames, ad.Stack)
		d.Stacks = append(d.Stacks, st)
	}
	for v := range versions {
		d.Versions = append(d.Versions, v)
	}
	sort.Slice(d.Versions, func(i, j int) bool { return fleet.CompareVersions(d.Versions[i], d.Versions[j]) > 0 })
	d.Statuses = fleet.Statuses
	if s.tel != nil {
		if err := s.releaseHealth(r.Context(), d.Stacks); err != nil {
			s.log.Warn("releases page: release health", "err", err)
			d.TelErr = "The telemetry store did not answer (" + err.Error() + "); adoption is shown without error rates and latencies."
		}
	}
	s.render(w, r, sess, http.StatusOK, "releases", "Releases", d)
}

// releaseHealth fills each release's fleet-wide figures over the window with
// one RED query per stack grouped by release (GET /api/v1/red?group_by=release
// is its JSON twin), each compared with the next older release that has any.
func (s *Server) releaseHealth(ctx context.Context, stacks []stackRow) error {
	now := s.clock.Now()
	for i := range stacks {
		st := &stacks[i]
		red, err := s.tel.RED(ctx, telquery.REDQuery{
			Filter:  telquery.Filter{Stack: st.Stack, Since: now.Add(-healthWindow), Until: now},
			Step:    healthWindow,
			GroupBy: telquery.ByRelease,
		})
		if err != nil {
			return fmt.Errorf("RED of stack %s: %w", st.Stack, err)
		}
		by := map[string]telquery.Stats{}
		for _, sr := range red.Series {
			by[sr.Group] = sr.Total
		}
		// Releases are newest first: the previous one is further down.
		for j := range st.Releases {
			rel := &st.Releases[j]
			rel.Stats, rel.HasStats = by[rel.Version]
			rel.HasStats = rel.HasStats && rel.Stats.Requests > 0
			for _, older := range st.Releases[j+1:] {
				if ps, ok := by[older.Version]; ok && ps.Requests > 0 {
					rel.Prev, rel.PrevStats = older.Version, ps
					break
				}
			}
		}
	}
	return nil
}

// bulkForm is the bulk change as the form states it: the action, the
// selection and, for a pin, the target release.
type bulkForm struct {
	Action   string
	Stack    string
	Release  string // the release the selected deployments run
	Customer string
	Status   string
	Labels   string // "key=value, key=value"
	Target   string // the release to pin to
	Reason   string
}

// query is the form as URL parameters, for links back to the preview.
func (b bulkForm) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"action": b.Action, "stack": b.Stack, "release": b.Release, "customer": b.Customer,
		"status": b.Status, "labels": b.Labels, "target": b.Target} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func bulkFormFrom(v url.Values) bulkForm {
	g := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	b := bulkForm{Action: g("action"), Stack: g("stack"), Release: g("release"), Customer: g("customer"),
		Status: g("status"), Labels: g("labels"), Target: g("target"), Reason: g("reason")}
	if b.Action != string(fleet.ActionPin) {
		b.Target = "" // the form keeps the field; only a pin has a target
	}
	return b
}

// filter turns the selection into the fleet's filter, or says what is wrong.
func (b bulkForm) filter() (fleet.Filter, error) {
	f := fleet.Filter{Stack: b.Stack, Release: b.Release, Customer: b.Customer}
	if b.Status != "" {
		st, err := fleet.ParseStatus(b.Status)
		if err != nil {
			return f, fmt.Errorf("status: %w", err)
		}
		f.Status = st
	}
	for _, l := range strings.Split(b.Labels, ",") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return f, fmt.Errorf("labels: %q is not key=value", l)
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if f.IsZero() {
		return f, errors.New("choose which deployments: a stack, a release they run, a customer, a status or labels (the dashboard does not change the whole fleet at once; the CLI's --all does)")
	}
	switch fleet.PinAction(b.Action) {
	case fleet.ActionPin:
		if b.Target == "" {
			return f, errors.New("choose the release to pin to")
		}
	case fleet.ActionRollback, fleet.ActionUnpin:
	default:
		return f, fmt.Errorf("action %q: choose pin, rollback or unpin", b.Action)
	}
	return f, nil
}

// bulkChange is one deployment the change would move, in words.
type bulkChange struct {
	ID, Name, Customer string
	Running            string
	// From and To are its desired release before and after; Pinned says
	// whether it ends pinned (to To) or follows the latest.
	From, To string
	Pinned   bool
}

// bulkPlan is what a bulk change would do, computed the way registry.Pin
// decides it, so the preview lists exactly what the confirmation changes.
type bulkPlan struct {
	Changes   []bulkChange
	Unchanged int
	// Refused names deployments the change cannot apply to, with why; the
	// registry refuses the whole change then, so the preview says so first.
	Refused []string
	// Digest fingerprints the changes; the confirmation carries it and is
	// refused if the plan is no longer the same.
	Digest string
}

// IDs are the deployments the plan changes.
func (p bulkPlan) IDs() []string {
	ids := make([]string, len(p.Changes))
	for i, c := range p.Changes {
		ids[i] = c.ID
	}
	return ids
}

// maxRefusedListed bounds how many refused deployments the preview names.
const maxRefusedListed = 10

func (s *Server) planBulk(b bulkForm, f fleet.Filter) bulkPlan {
	var p bulkPlan
	action := fleet.PinAction(b.Action)
	published := map[string]bool{} // stack → has b.Target
	views, _ := s.fleet.List(f, registry.Page{})
	for _, v := range views {
		d, ev := v.Deployment, v.Evaluation
		target, why := "", ""
		switch action {
		case fleet.ActionPin:
			has, seen := published[d.Stack]
			if !seen {
				for _, rv := range s.fleet.Releases(d.Stack) {
					has = has || rv.Release.Version == b.Target
				}
				published[d.Stack] = has
			}
			target = b.Target
			if !has {
				why = fmt.Sprintf("release %s is not published for its stack %s", b.Target, d.Stack)
			}
		case fleet.ActionRollback:
			target = d.PreviousRelease
			if target == "" || fleet.CompareVersions(target, d.RunningRelease) > 0 {
				why = "no earlier release to roll back to"
			}
		}
		if why != "" {
			if len(p.Refused) < maxRefusedListed {
				p.Refused = append(p.Refused, d.ID+": "+why)
			}
			continue
		}
		pinned := d.Pin != nil
		if (target == "" && !pinned) || (target != "" && pinned && d.Pin.Release == target) {
			p.Unchanged++
			continue
		}
		c := bulkChange{ID: d.ID, Name: d.Name, Customer: d.Customer, Running: d.RunningRelease, From: ev.Desired, To: ev.Latest, Pinned: target != ""}
		if c.Pinned {
			c.To = target
		}
		p.Changes = append(p.Changes, c)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", b.Action, b.Target)
	for _, c := range p.Changes {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%t\x00", c.ID, c.From, c.To, c.Pinned)
	}
	p.Digest = hex.EncodeToString(h.Sum(nil)[:16])
	return p
}

// bulkData is the preview page (also the page after a refused confirmation).
type bulkData struct {
	Form releasesData
	Bulk bulkForm
	Plan bulkPlan
	// Problem says in words why there is no preview, or why the change was
	// not made; Stale is set when the fleet moved since the preview.
	Problem string
	Stale   bool
	// Done is the change just made (the result page).
	Done *registry.PinResult
	// Edit links to the releases page's form, filled with this selection.
	Edit string
	// Shown are the changes listed (all of them, or the first previewShown
	// until the page is asked for all); All links to the full list.
	Shown []bulkChange
	All   string
}

// previewShown is how many changes a preview lists unless asked for all: a
// change over thousands of deployments would otherwise weigh megabytes.
const previewShown = 500

func (s *Server) bulkPreview(w http.ResponseWriter, r *http.Request, sess *Session) {
	b := bulkFormFrom(r.URL.Query())
	s.showBulk(w, r, sess, http.StatusOK, bulkData{Bulk: b})
}

// showBulk computes the plan for d.Bulk and renders the preview with it.
func (s *Server) showBulk(w http.ResponseWriter, r *http.Request, sess *Session, status int, d bulkData) {
	d.Form = s.formChoices()
	d.Edit = "/releases?" + d.Bulk.query().Encode() + "#bulk-form"
	f, err := d.Bulk.filter()
	if err != nil {
		if d.Problem == "" {
			d.Problem = err.Error()
		}
		if status == http.StatusOK && r.Method == http.MethodPost {
			status = http.StatusBadRequest
		}
		s.render(w, r, sess, status, "releases-bulk", "Bulk change", d)
		return
	}
	d.Plan = s.planBulk(d.Bulk, f)
	d.Shown = d.Plan.Changes
	if len(d.Shown) > previewShown && r.URL.Query().Get("all") == "" {
		d.Shown = d.Shown[:previewShown]
		q := d.Bulk.query()
		q.Set("all", "1")
		d.All = "/releases/bulk?" + q.Encode()
	}
	s.render(w, r, sess, status, "releases-bulk", "Bulk change", d)
}

// formChoices are the stacks and published versions the bulk form offers.
func (s *Server) formChoices() releasesData {
	var d releasesData
	versions := map[string]bool{}
	for _, rv := range s.fleet.Releases("") {
		versions[rv.Release.Version] = true
		if !containsString(d.StackNames, rv.Release.Stack) {
			d.StackNames = append(d.StackNames, rv.Release.Stack)
		}
	}
	for v := range versions {
		d.Versions = append(d.Versions, v)
	}
	sort.Strings(d.StackNames)
	sort.Slice(d.Versions, func(i, j int) bool { return fleet.CompareVersions(d.Versions[i], d.Versions[j]) > 0 })
	return d
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) bulkAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	b := bulkFormFrom(r.PostForm)
	f, err := b.filter()
	if err != nil {
		s.showBulk(w, r, sess, http.StatusBadRequest, bulkData{Bulk: b, Problem: err.Error()})
		return
	}
	plan := s.planBulk(b, f)
	switch {
	case b.Reason == "" && fleet.PinAction(b.Action) != fleet.ActionUnpin:
		s.showBulk(w, r, sess, http.StatusBadRequest, bulkData{Bulk: b, Problem: "Say why: a " + b.Action + " needs a reason, which goes into the audit trail. Nothing was changed."})
		return
	case plan.Digest != r.PostForm.Get("plan"):
		s.showBulk(w, r, sess, http.StatusConflict, bulkData{Bulk: b, Stale: true,
			Problem: "The fleet changed since this preview (a deployment joined or left the selection, or its pin or release changed), so nothing was changed. Review the new preview below and confirm again."})
		return
	case len(plan.Refused) > 0:
		s.showBulk(w, r, sess, http.StatusBadRequest, bulkData{Bulk: b, Problem: "Nothing was changed: the change cannot apply to every selected deployment."})
		return
	case len(plan.Changes) == 0:
		s.showBulk(w, r, sess, http.StatusOK, bulkData{Bulk: b, Problem: "Nothing to change: every selected deployment already is as asked."})
		return
	}
	res, err := s.fleet.Pin(r.Context(), registry.PinRequest{Select: registry.Selector{IDs: plan.IDs()},
		Action: fleet.PinAction(b.Action), Release: b.Target, By: sess.Token.Name, ByRole: string(sess.Token.Role), Reason: b.Reason})
	if err != nil {
		status, msg := http.StatusInternalServerError, "The change could not be stored; nothing was changed. The manager log has the details."
		switch {
		case errors.Is(err, registry.ErrConflict):
			status, msg = http.StatusConflict, "Another change holds part of this selection right now, so nothing was changed: "+plainErr(err)+"."
		case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrNotFound):
			status, msg = http.StatusBadRequest, "Nothing was changed: "+plainErr(err)+"."
		default:
			s.log.Error("bulk pin change", "by", sess.Token.Name, "err", err)
		}
		s.showBulk(w, r, sess, status, bulkData{Bulk: b, Problem: msg})
		return
	}
	http.Redirect(w, r, "/audit?change="+url.QueryEscape(res.ChangeID), http.StatusSeeOther)
}

// plainErr is a registry error for people: without the sentinel's trailing
// ": invalid" or ": conflict".
func plainErr(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{registry.ErrInvalid, registry.ErrConflict, registry.ErrNotFound} {
		msg = strings.TrimSuffix(msg, ": "+sentinel.Error())
	}
	return msg
}
