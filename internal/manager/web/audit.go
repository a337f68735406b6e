package web

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// The audit page: pin changes (registry.PinChanges, GET /api/v1/pins/history)
// and deployment token and deletion changes (registry.DeploymentChanges, GET
// /api/v1/deployments/{id}/history) in one trail, newest first, filterable by
// deployment, actor, kind and pin change.

// Audit page sizes: the first page and the most one page may show.
const (
	auditPage    = 100
	auditMaxPage = 5000
)

// auditKinds are the kinds the filter offers, pins first.
var auditKinds = []string{
	string(fleet.ActionPin), string(fleet.ActionRollback), string(fleet.ActionUnpin),
	string(fleet.ActionRotateToken), string(fleet.ActionRevokeToken), string(fleet.ActionRetireToken), string(fleet.ActionDelete),
}

// auditEntry is one row of the trail.
type auditEntry struct {
	At           time.Time
	By           string
	Kind         string
	DeploymentID string
	// What says what changed ("desired 2.0.0 → pinned to 1.9.0").
	What   string
	Reason string
	// Change is the pin change it belongs to ("" for token changes).
	Change string
}

// auditData is the audit page.
type auditData struct {
	Deployment, By, Kind, Change string
	Kinds                        []string
	Entries                      []auditEntry
	// More links to a longer page when the trail may hold more entries.
	More    string
	Limit   int
	Problem string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	q := r.URL.Query()
	d := auditData{Deployment: strings.TrimSpace(q.Get("deployment")), By: strings.TrimSpace(q.Get("by")),
		Kind: q.Get("kind"), Change: strings.TrimSpace(q.Get("change")), Kinds: auditKinds, Limit: auditPage}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		d.Limit = min(n, auditMaxPage)
	}
	if d.Kind != "" && !containsString(auditKinds, d.Kind) {
		s.fail(w, r, sess, http.StatusBadRequest, "Unknown kind", "There is no audit entry of kind “"+d.Kind+"”: choose one of "+strings.Join(auditKinds, ", ")+".")
		return
	}
	// The store functions filter by deployment and bound the count; the other
	// filters apply here, over as much of the trail as a page may show.
	fetch := d.Limit + 1
	if d.By != "" || d.Kind != "" || d.Change != "" {
		fetch = auditMaxPage + 1
	}
	pinKind := d.Kind == "" || fleet.PinAction(d.Kind) == fleet.ActionPin || fleet.PinAction(d.Kind) == fleet.ActionRollback || fleet.PinAction(d.Kind) == fleet.ActionUnpin
	var all []auditEntry
	if pinKind {
		pins, err := s.fleet.PinChanges(r.Context(), d.Deployment, fetch)
		// A deleted deployment has no pins any more, but its token trail remains.
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			s.log.Error("audit page: pin changes", "err", err)
			d.Problem = "The pin history could not be read; the manager log has the details."
		}
		for _, c := range pins {
			all = append(all, auditEntry{At: c.At, By: c.By, Kind: string(c.Action), DeploymentID: c.DeploymentID,
				What: pinWhat(c), Reason: c.Reason, Change: c.ChangeID})
		}
	}
	if (d.Kind == "" || !pinKind) && d.Change == "" {
		chs, err := s.fleet.DeploymentChanges(r.Context(), d.Deployment, fetch)
		if err != nil {
			s.log.Error("audit page: deployment changes", "err", err)
			d.Problem = "The token and deletion history could not be read; the manager log has the details."
		}
		for _, c := range chs {
			all = append(all, auditEntry{At: c.At, By: c.By, Kind: string(c.Action), DeploymentID: c.DeploymentID,
				What: c.Detail, Reason: c.Reason})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].At.After(all[j].At) })
	for _, e := range all {
		if (d.By != "" && e.By != d.By) || (d.Kind != "" && e.Kind != d.Kind) || (d.Change != "" && e.Change != d.Change) {
			continue
		}
		if len(d.Entries) == d.Limit {
			if d.Limit < auditMaxPage {
				d.More = "/audit" + string(query("deployment", d.Deployment, "by", d.By, "kind", d.Kind, "change", d.Change,
					"limit", strconv.Itoa(min(d.Limit*4, auditMaxPage))))
			}
			break
		}
		d.Entries = append(d.Entries, e)
	}
	s.render(w, r, sess, http.StatusOK, "audit", "Audit", d)
}

// pinWhat says what a pin change did to the desired release, in words.
func pinWhat(c fleet.PinChange) string {
	var to string
	switch c.Action {
	case fleet.ActionUnpin:
		to = "follows the latest, " + c.To
	default:
		to = "pinned to " + c.To
	}
	from := c.From
	if from == "" {
		from = "none"
	}
	return "desired " + from + " → " + to + " (was running " + orDash(c.Running) + ")"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
