package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store"
)

// The audit page: the manager's one audit log (GET /api/v1/audit), newest
// first, with the API's filters and cursor paging, plus a pin change's id
// (the bulk action's redirect shows the change it made).

// auditChangeScan bounds how far back the page looks for a pin change's
// entries: the filter is applied here, over the pin entries, not in the store.
const auditChangeScan = 5000

// auditActions are the actions and groups the filter suggests; the field takes
// any action, so commands added later need no change here.
var auditActions = []string{
	"command.", store.ActionCommandInvoke, store.ActionCommandCancel, store.ActionCommandResult,
	store.ActionPinPrefix, "pin.pin", "pin.rollback", "pin.unpin",
	store.ActionDeploymentPrefix, "deployment.rotate-token", "deployment.revoke-token", "deployment.retire-previous-token", "deployment.delete",
	"token.", store.ActionTokenCreate, store.ActionTokenRevoke, store.ActionSignIn,
}

// auditEntry is one row of the log.
type auditEntry struct {
	store.AuditEntry
	// What says what changed, in words ("desired 2.0.0 → pinned to 1.9.0").
	What string
	// Change is the pin change it belongs to ("" for other actions).
	Change string
	// Invocation is the command invocation it records ("" for other actions).
	Invocation string
}

// auditData is the audit page.
type auditData struct {
	Actor, Action, Deployment, Customer, Outcome, Since, Until, Change string
	Actions                                                            []string
	Entries                                                            []auditEntry
	// Older links to the next page; Newest back to the first when paging.
	Older, Newest string
	Filtered      bool
	Problem       string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	q := r.URL.Query()
	d := auditData{Actor: q.Get("actor"), Action: q.Get("action"), Deployment: q.Get("deployment"), Customer: q.Get("customer"),
		Outcome: q.Get("outcome"), Since: q.Get("since"), Until: q.Get("until"), Change: strings.TrimSpace(q.Get("change")), Actions: auditActions}
	d.Filtered = d.Actor != "" || d.Action != "" || d.Deployment != "" || d.Customer != "" || d.Outcome != "" || d.Since != "" || d.Until != "" || d.Change != ""
	f, err := api.ParseAuditFilter(q, s.clock.Now())
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "Unreadable filter", strings.TrimPrefix(err.Error(), telquery.ErrInvalid.Error()+": ")+
			". Times are RFC 3339 (2026-11-24T10:00:00Z) or a duration before now (24h).")
		return
	}
	var entries []store.AuditEntry
	var next string
	if d.Change != "" {
		entries, err = s.changeEntries(r, f, d.Change)
	} else {
		entries, next, err = s.audit.ListAudit(r.Context(), f)
	}
	switch {
	case errors.Is(err, store.ErrBadCursor):
		s.fail(w, r, sess, http.StatusBadRequest, "Stale page", "That page of the audit log is not one this manager gave out. Start again from the newest entries.")
		return
	case err != nil:
		s.log.Error("audit page", "err", err)
		d.Problem = "The audit log could not be read; the manager log has the details."
	}
	for _, e := range entries {
		d.Entries = append(d.Entries, describeAudit(e))
	}
	keep := func(cursor string) string {
		return "/audit" + string(query("actor", d.Actor, "action", d.Action, "deployment", d.Deployment, "customer", d.Customer,
			"outcome", d.Outcome, "since", d.Since, "until", d.Until, "limit", q.Get("limit"), "cursor", cursor))
	}
	if next != "" {
		d.Older = keep(next)
	}
	if f.After != "" {
		d.Newest = keep("")
	}
	s.render(w, r, sess, http.StatusOK, "audit", "Audit", d)
}

// changeEntries are the entries of one pin change among the newest
// auditChangeScan pin entries matching f. A change's entries share one instant,
// so the scan stops at the page where they were found.
func (s *Server) changeEntries(r *http.Request, f store.AuditFilter, change string) ([]store.AuditEntry, error) {
	f.Action, f.Limit, f.After = store.ActionPinPrefix, 1000, ""
	var out []store.AuditEntry
	for scanned := 0; scanned < auditChangeScan; scanned += f.Limit {
		page, next, err := s.audit.ListAudit(r.Context(), f)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			if auditDetail(e).ChangeID == change {
				out = append(out, e)
			}
		}
		if len(out) > 0 || next == "" {
			break
		}
		f.After = next
	}
	return out, nil
}

// auditDetails are the Detail fields the page puts in words.
type auditDetails struct {
	ChangeID string `json:"change_id"`
	From     string `json:"from_release"`
	To       string `json:"to_release"`
	Running  string `json:"running_release"`
	What     string `json:"what"`
	Remote   string `json:"remote"`
	Left     int64  `json:"failures_not_recorded_before"`
	// A sign-in's sessions of the same token ended to stay within its limit.
	Ended int `json:"sessions_ended"`
	// A command entry's invocation, and why it was refused.
	Invocation string `json:"invocation"`
	Refused    string `json:"refused"`
}

func auditDetail(e store.AuditEntry) auditDetails {
	var d auditDetails
	_ = json.Unmarshal([]byte(e.Detail), &d) // what is not an object says nothing here
	return d
}

// describeAudit puts an entry's particulars in words.
func describeAudit(e store.AuditEntry) auditEntry {
	d := auditDetail(e)
	out := auditEntry{AuditEntry: e}
	switch {
	case strings.HasPrefix(e.Action, store.ActionPinPrefix):
		out.Change = d.ChangeID
		to := "pinned to " + d.To
		if e.Action == store.ActionPinPrefix+"unpin" {
			to = "follows the latest, " + d.To
		}
		out.What = "desired " + orNone(d.From) + " → " + to + " (was running " + orDash(d.Running) + ")"
	case strings.HasPrefix(e.Action, "command."):
		out.Invocation, out.What = d.Invocation, "command "+e.Target
		if d.Refused != "" {
			out.What += " — refused: " + d.Refused
		}
	case d.What != "":
		out.What = d.What
	case e.Action == store.ActionSignIn && d.Remote != "":
		out.What = "from " + d.Remote
		if d.Left > 0 {
			out.What += " (" + strconv.FormatInt(d.Left, 10) + " failed sign-ins before it not recorded)"
		}
		if d.Ended == 1 {
			out.What += "; ended this token's session used least recently (at its limit)"
		} else if d.Ended > 1 {
			out.What += "; ended this token's " + strconv.Itoa(d.Ended) + " sessions used least recently (at its limit)"
		}
		if d.Refused != "" {
			out.What += " — refused: " + d.Refused
		}
	case e.Action == store.ActionTokenCreate || e.Action == store.ActionTokenRevoke:
		out.What = "API token " + e.Target
	default:
		out.What = e.Detail
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
