package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// The rollouts of the releases page and the rollout page: waves in order
// with their deployments, each wave's phase, bake time left and gate figures
// against their thresholds, the halt reason, the timeline, and the operator
// actions. Both read and act through the rollout engine, the same calls as
// GET /api/v1/rollouts and POST /api/v1/rollouts/{id}/resume|abort|skip.

// Rollouts is what the dashboard needs of the rollout engine.
type Rollouts interface {
	List(ctx context.Context, f store.RolloutFilter) ([]rollouts.State, error)
	Get(ctx context.Context, id string) (rollouts.State, error)
	Resume(ctx context.Context, id string, a rollouts.Actor) (rollouts.State, error)
	Abort(ctx context.Context, id string, a rollouts.Actor) (rollouts.State, error)
	Skip(ctx context.Context, id, dep string, a rollouts.Actor) (rollouts.State, error)
}

// stackRollouts is how many rollouts of a stack the releases page lists.
const stackRollouts = 5

// rolloutRow is one rollout in a stack's list on the releases page.
type rolloutRow struct {
	rollouts.State
	// WaveText says where it is: "wave 2 of 3 (stores)".
	WaveText string
}

// PhaseClass maps a rollout's phase onto the page's status vocabulary.
func (r rolloutRow) PhaseClass() string { return phaseClass(r.Phase) }

func phaseClass(p rollouts.Phase) string {
	switch p {
	case rollouts.PhaseRunning:
		return statusClass(fleet.StatusUpdating)
	case rollouts.PhaseHalted:
		return statusClass(fleet.StatusUnhealthy)
	case rollouts.PhaseCompleted:
		return statusClass(fleet.StatusHealthy)
	case rollouts.PhaseAborted:
		return statusClass(fleet.StatusFailed)
	}
	return statusClass(fleet.StatusPending) // superseded
}

func waveText(s *rollouts.State) string {
	n := len(s.Waves)
	if s.Wave >= n {
		return fmt.Sprintf("all %d waves passed", n)
	}
	return fmt.Sprintf("wave %d of %d (%s)", s.Wave+1, n, s.Waves[s.Wave].Name)
}

// stackRolloutRows reads the newest rollouts of stack for the releases page.
func (s *Server) stackRolloutRows(ctx context.Context, stack string) ([]rolloutRow, error) {
	states, err := s.rollouts.List(ctx, store.RolloutFilter{Stack: stack, Limit: stackRollouts})
	if err != nil {
		return nil, fmt.Errorf("rollouts of stack %s: %w", stack, err)
	}
	rows := make([]rolloutRow, len(states))
	for i := range states {
		rows[i] = rolloutRow{State: states[i], WaveText: waveText(&states[i])}
	}
	return rows, nil
}

// rolloutData is the rollout page.
type rolloutData struct {
	rolloutRow
	Waves []waveView
	// Timeline is newest first.
	Timeline []rollouts.Event
	// CanResume, CanAbort and CanSkip say which actions its phase allows.
	CanResume, CanAbort, CanSkip bool
	// Skippable are the deployments skip may name: those of the stack not
	// on the release and not skipped yet.
	Skippable []string
	// Problem says why the last action was refused; Done names the action
	// just made (resume, abort, skip).
	Problem, Done string
	// Form keeps what the operator typed when an action is refused.
	Reason, Deployment string
}

// waveView is one wave on the rollout page.
type waveView struct {
	Name string
	// Phase is the wave's phase in words: waiting, updating, baking, passed,
	// halted, stopped; PhaseClass its badge colour.
	Phase, PhaseClass string
	Select            string
	Bake              time.Duration
	// BakeLeft is what remains of the bake while it bakes; BakeEnds when it
	// ends.
	BakeLeft time.Duration
	BakeEnds time.Time
	Opened   time.Time
	Passed   time.Time
	Figures  rollouts.Figures
	Gates    []gateView
	Members  []memberView
}

// gateView is one gate of a wave: its figure against its threshold.
type gateView struct {
	Name      string
	Count     int
	Allowed   int
	Threshold string
	OK        bool
}

// memberView is one deployment of an opened wave.
type memberView struct {
	ID string
	// From is the release it ran when the wave opened.
	From    string
	Running string
	Status  fleet.Status
	Pinned  string
	Skipped bool
	// Offender is set when a failing gate counted it.
	Offender bool
	// Missing is set when it was deleted since.
	Missing bool
}

// StatusClass is the member's status badge colour.
func (m memberView) StatusClass() string { return statusClass(m.Status) }

func (s *Server) rolloutPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.showRollout(w, r, sess, http.StatusOK, rolloutData{Done: r.URL.Query().Get("done")})
}

// showRollout renders rollout {id} with d's problem or outcome.
func (s *Server) showRollout(w http.ResponseWriter, r *http.Request, sess *Session, status int, d rolloutData) {
	if s.rollouts == nil {
		s.fail(w, r, sess, http.StatusServiceUnavailable, "No rollouts", "This manager runs no progressive rollouts.")
		return
	}
	id := r.PathValue("id")
	st, err := s.rollouts.Get(r.Context(), id)
	switch {
	case errors.Is(err, rollouts.ErrNotFound):
		s.fail(w, r, sess, http.StatusNotFound, "No such rollout", fmt.Sprintf("No rollout has the id %q. The releases page lists each stack's rollouts.", id))
		return
	case err != nil:
		s.log.Error("rollout page", "id", id, "err", err)
		s.fail(w, r, sess, http.StatusInternalServerError, "Rollout unavailable", "The rollout could not be read. The manager's log has the details.")
		return
	}
	if !slices.Contains([]string{"resume", "abort", "skip"}, d.Done) {
		d.Done = ""
	}
	d.rolloutRow = rolloutRow{State: st, WaveText: waveText(&st)}
	d.fill(s, s.clock.Now())
	s.render(w, r, sess, status, "rollout", "Rollout of "+st.Release+" to "+st.Stack, d)
}

// fill computes the page's waves, timeline and actions from the rollout.
func (d *rolloutData) fill(s *Server, now time.Time) {
	st := &d.State
	views, _ := s.fleet.List(fleet.Filter{Stack: st.Stack}, registry.Page{})
	byID := make(map[string]fleet.Deployment, len(views))
	statusOf := make(map[string]fleet.Status, len(views))
	for _, v := range views {
		byID[v.Deployment.ID] = v.Deployment
		statusOf[v.Deployment.ID] = v.Evaluation.Status
	}
	offender := map[string]bool{}
	if st.Halt != nil {
		for _, id := range st.Halt.Offenders {
			offender[id] = true
		}
	}
	for i, ws := range st.Waves {
		var plan rolloutplan.Wave
		if i < len(st.Plan.Waves) {
			plan = st.Plan.Waves[i]
		}
		wv := waveView{Name: ws.Name, Select: selectionText(plan.Select), Bake: time.Duration(plan.Bake), Opened: ws.OpenedAt, Passed: ws.PassedAt, Figures: ws.Figures}
		wv.Phase = wavePhase(st, i)
		switch wv.Phase {
		case "passed":
			wv.PhaseClass = statusClass(fleet.StatusHealthy)
		case "halted":
			wv.PhaseClass = statusClass(fleet.StatusUnhealthy)
		case "updating", "baking":
			wv.PhaseClass = statusClass(fleet.StatusUpdating)
		default:
			wv.PhaseClass = statusClass(fleet.StatusPending)
		}
		if wv.Phase == "baking" {
			wv.BakeEnds = ws.BakeStart.Add(wv.Bake)
			wv.BakeLeft = max(wv.BakeEnds.Sub(now), 0)
		}
		if !ws.OpenedAt.IsZero() {
			wv.Gates = gateViews(plan.Effective(), ws.Figures)
		}
		for _, id := range sortedMemberIDs(ws.Members) {
			m := memberView{ID: id, From: ws.Members[id], Skipped: slices.Contains(st.Skipped, id), Offender: offender[id]}
			if dep, ok := byID[id]; ok {
				m.Running, m.Status = dep.RunningRelease, statusOf[id]
				if dep.Pin != nil {
					m.Pinned = dep.Pin.Release
				}
			} else {
				m.Missing = true
			}
			wv.Members = append(wv.Members, m)
		}
		d.Waves = append(d.Waves, wv)
	}
	d.Timeline = make([]rollouts.Event, len(st.Timeline))
	for i, ev := range st.Timeline {
		d.Timeline[len(st.Timeline)-1-i] = ev
	}
	d.CanResume = st.Phase == rollouts.PhaseHalted
	d.CanAbort = st.Phase == rollouts.PhaseRunning || st.Phase == rollouts.PhaseHalted || st.Phase == rollouts.PhaseSuperseded
	d.CanSkip = st.Phase == rollouts.PhaseRunning || st.Phase == rollouts.PhaseHalted
	if d.CanSkip {
		for _, v := range views {
			if v.Deployment.RunningRelease != st.Release && !slices.Contains(st.Skipped, v.Deployment.ID) {
				d.Skippable = append(d.Skippable, v.Deployment.ID)
			}
		}
		slices.Sort(d.Skippable)
	}
}

// wavePhase is wave i's phase in words.
func wavePhase(st *rollouts.State, i int) string {
	ws := st.Waves[i]
	switch {
	case !ws.PassedAt.IsZero():
		return "passed"
	case ws.OpenedAt.IsZero():
		if st.Phase == rollouts.PhaseRunning || st.Phase == rollouts.PhaseHalted {
			return "waiting"
		}
		return "not opened"
	case st.Phase == rollouts.PhaseHalted && i == st.Wave:
		return "halted"
	case st.Phase != rollouts.PhaseRunning:
		return "stopped"
	case ws.BakeStart.IsZero():
		return "updating"
	}
	return "baking"
}

// gateViews are a wave's gates with its figures, in a fixed order.
func gateViews(g rolloutplan.Gates, f rollouts.Figures) []gateView {
	var out []gateView
	for _, gate := range []struct {
		name  string
		t     *rolloutplan.Threshold
		count int
	}{{"regressed", g.Regressed, f.Regressed}, {"failed updates", g.FailedUpdates, f.FailedUpdates},
		{"components down", g.ComponentsDown, f.ComponentsDown}, {"stale", g.Stale, f.Stale}} {
		if gate.t == nil {
			continue
		}
		allowed := gate.t.Allowed(f.Size)
		text := gate.t.String()
		if gate.t.MaxPercent != nil {
			text += fmt.Sprintf(": %d here", allowed) // a share means little without the wave's size
		}
		out = append(out, gateView{Name: gate.name, Count: gate.count, Allowed: allowed, Threshold: text, OK: gate.count <= allowed})
	}
	return out
}

// selectionText says a wave's selection in words.
func selectionText(sel rolloutplan.Selection) string {
	if sel.Rest {
		return "every deployment left"
	}
	var parts []string
	for _, k := range sortedMemberIDs(sel.Labels) {
		parts = append(parts, k+"="+sel.Labels[k])
	}
	for _, l := range []struct {
		what string
		list []string
	}{{"customer", sel.Customers}, {"cloud", sel.Clouds}, {"region", sel.Regions}} {
		if len(l.list) > 0 {
			parts = append(parts, l.what+" "+strings.Join(l.list, "|"))
		}
	}
	text := strings.Join(parts, ", ")
	if sel.Percent > 0 && sel.Percent < 100 {
		if text == "" {
			return fmt.Sprintf("%g%% of the deployments left", sel.Percent)
		}
		return fmt.Sprintf("%g%% of %s", sel.Percent, text)
	}
	return text
}

func sortedMemberIDs(m map[string]string) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// spanText says a bake time or what is left of it the way people write it:
// "1h", "45m", "1h30m", "20s"; "none" for no bake at all.
func spanText(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	d = d.Round(time.Second)
	t := d.String()
	t = strings.Replace(t, "m0s", "m", 1)
	t = strings.Replace(t, "h0m", "h", 1)
	return t
}

// maxReason bounds the reason an action form carries into the audit log.
const maxReason = 1000

// rolloutAction serves the operator actions of the rollout page: resume,
// abort and skip, each with a reason, through the engine's actions.
func (s *Server) rolloutAction(verb string) handler {
	return func(w http.ResponseWriter, r *http.Request, sess *Session) {
		if s.rollouts == nil {
			s.fail(w, r, sess, http.StatusServiceUnavailable, "No rollouts", "This manager runs no progressive rollouts.")
			return
		}
		id := r.PathValue("id")
		reason := strings.TrimSpace(r.PostForm.Get("reason"))
		dep := strings.TrimSpace(r.PostForm.Get("deployment"))
		keep := rolloutData{Reason: reason, Deployment: dep}
		if len(reason) > maxReason {
			keep.Problem = fmt.Sprintf("Nothing was changed: the reason is longer than %d characters.", maxReason)
			s.showRollout(w, r, sess, http.StatusBadRequest, keep)
			return
		}
		a := rollouts.Actor{Name: sess.Token.Name, Role: string(sess.Token.Role), Reason: reason}
		var err error
		switch verb {
		case "resume":
			_, err = s.rollouts.Resume(r.Context(), id, a)
		case "abort":
			_, err = s.rollouts.Abort(r.Context(), id, a)
		default:
			if dep == "" {
				keep.Problem = "Nothing was changed: choose the deployment to leave out."
				s.showRollout(w, r, sess, http.StatusBadRequest, keep)
				return
			}
			_, err = s.rollouts.Skip(r.Context(), id, dep, a)
		}
		switch {
		case err == nil:
			http.Redirect(w, r, "/rollouts/"+url.PathEscape(id)+"?done="+verb, http.StatusSeeOther)
		case errors.Is(err, rollouts.ErrNotFound):
			s.fail(w, r, sess, http.StatusNotFound, "No such rollout", fmt.Sprintf("No rollout has the id %q.", id))
		case errors.Is(err, rollouts.ErrInvalid):
			keep.Problem = "Nothing was changed: " + strings.TrimSuffix(err.Error(), ": "+rollouts.ErrInvalid.Error()) + "."
			s.showRollout(w, r, sess, http.StatusBadRequest, keep)
		default:
			s.log.Error("dashboard rollout action", "rollout", id, "action", verb, "by", sess.Token.Name, "err", err)
			keep.Problem = "The " + verb + " could not be stored. The manager's log has the details."
			s.showRollout(w, r, sess, http.StatusInternalServerError, keep)
		}
	}
}
