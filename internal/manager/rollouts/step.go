package rollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// maxListed bounds the deployments a reason or a notice names.
const maxListed = 5

// maxPinnedListed bounds the deployments a notice lists as pinned back.
const maxPinnedListed = 50

// outcome is what one change did besides its new state: audit entries written
// with it, notices and offers to send after.
type outcome struct {
	audit    []store.AuditEntry
	notices  []Notice
	announce []string
}

// Step evaluates every unfinished rollout once: it makes pending pin-backs,
// opens waves, checks gates (halting when one fails), passes baked waves and
// completes rollouts; and it announces deployments whose update window opened.
// A rollout another manager replica moved first is reloaded, not overwritten.
func (e *Engine) Step(ctx context.Context) error {
	e.change.Lock()
	defer e.change.Unlock()
	e.mu.RLock()
	var ids []string
	for id := range e.live {
		ids = append(ids, id)
	}
	e.mu.RUnlock()
	sort.Strings(ids)
	var errs []error
	for _, id := range ids {
		e.mu.RLock()
		r, ok := e.live[id]
		e.mu.RUnlock()
		if !ok {
			continue
		}
		err := e.stepOne(ctx, r)
		if errors.Is(err, store.ErrConflict) {
			// Another replica (or an operator's action there) moved the rollout
			// since it was read; write reloaded it, so step it once more from
			// what the store holds rather than fail this round.
			e.mu.RLock()
			r, ok = e.live[id]
			e.mu.RUnlock()
			if !ok {
				continue
			}
			err = e.stepOne(ctx, r)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", id, err))
		}
	}
	e.announceOpenedWindows()
	return errors.Join(errs...)
}

func (e *Engine) stepOne(ctx context.Context, r *record) error {
	if err := e.stepOnce(ctx, r); err != nil {
		return err
	}
	// Pin changes decided now (a halt) are made at once, once their order is
	// stored: a crash in between leaves them pending for the next Step.
	e.mu.RLock()
	r, ok := e.live[r.ID]
	e.mu.RUnlock()
	if ok && len(r.PendingPins) > 0 {
		return e.stepOnce(ctx, r)
	}
	return nil
}

func (e *Engine) stepOnce(ctx context.Context, r *record) error {
	now := e.clk.Now().UTC()
	s := r.clone()
	var out outcome
	if len(s.PendingPins) > 0 {
		e.makePins(ctx, &s, now)
	}
	e.mu.RLock()
	newer := e.newerLocked(&s)
	e.mu.RUnlock()
	switch {
	case newer != "" && (s.Phase == PhaseRunning || s.Phase == PhaseHalted):
		s.Phase, s.SupersededBy = PhaseSuperseded, newer
		s.event(now, "superseded", "", fmt.Sprintf("rollout %s of a newer release took over; the deployments this one moved keep %s until it reaches them", newer, s.Release))
	case newer != "" && s.Phase == PhaseAborted && s.SupersededBy == "":
		s.SupersededBy = newer
	case s.Phase == PhaseRunning:
		members := e.fleet.Members(s.Stack)
		e.advance(&s, members, now, &out)
	}
	return e.commit(ctx, r, s, now, out)
}

// makePins asks the pinner for each pending pin-back, keeping those it
// refused for the next Step.
func (e *Engine) makePins(ctx context.Context, s *State, now time.Time) {
	var left []PinOrder
	for _, p := range s.PendingPins {
		var err error
		if p.Unpin {
			err = e.pinner.Unpin(ctx, p.IDs, p.Actor, p.Reason)
		} else {
			err = e.pinner.Pin(ctx, p.IDs, p.Release, p.Actor, p.Reason)
		}
		if err != nil {
			e.log.Warn("rollout pin change failed; will retry", "rollout", s.ID, "release", p.Release, "unpin", p.Unpin, "deployments", len(p.IDs), "err", err)
			left = append(left, p)
			continue
		}
		if p.Unpin {
			s.event(now, "unpinned", "", fmt.Sprintf("lifted the rollout pins of %s: %s", listed(p.IDs), p.Reason))
		} else {
			s.event(now, "pinned-back", "", fmt.Sprintf("pinned %s back to %s", listed(p.IDs), p.Release))
		}
	}
	s.PendingPins = left
}

// advance moves a running rollout as far as its figures allow now: it may
// open a wave, halt, pass a wave and open the next in one call.
func (e *Engine) advance(s *State, members []Member, now time.Time, out *outcome) {
	byID := make(map[string]*Member, len(members))
	for i := range members {
		byID[members[i].ID] = &members[i]
	}
	for s.Wave < len(s.Plan.Waves) {
		w := &s.Waves[s.Wave]
		spec := s.Plan.Waves[s.Wave]
		if w.OpenedAt.IsZero() {
			e.openWave(s, members, now, out)
		}
		fig, offenders, settled := s.figures(s.Wave, byID)
		w.Figures = fig
		if failed, reason := gatesFail(spec.Effective(), fig, offenders, byID, s.Release); len(failed) > 0 {
			e.halt(s, failed, reason, offenders, now, out)
			return
		}
		if w.BakeStart.IsZero() && settled {
			w.BakeStart = now
			if fig.Size > 0 {
				s.event(now, "baking", w.Name, fmt.Sprintf("every deployment of wave %s updated (%d on %s); baking for %s",
					w.Name, fig.Updated, s.Release, time.Duration(spec.Bake)))
			}
		}
		if w.BakeStart.IsZero() || (fig.Size > 0 && now.Before(w.BakeStart.Add(time.Duration(spec.Bake)))) {
			return
		}
		// Passed: baked with every gate green, or nobody to watch.
		w.PassedAt = now
		text := fmt.Sprintf("wave %s passed: %d deployments on %s, %s", w.Name, fig.Updated, s.Release, fig.summary())
		if fig.Size == 0 {
			text = fmt.Sprintf("wave %s passed at once: it holds no deployment to watch", w.Name)
		}
		s.event(now, "wave-passed", w.Name, text)
		out.audit = append(out.audit, e.auditEntry(s, store.ActionRolloutWave, "rollout:"+s.ID, "", text, now, map[string]any{"wave": w.Name, "passed": true, "figures": fig}))
		s.Wave++
	}
	// Every wave passed: the rest of the stack takes the release.
	s.Phase = PhaseCompleted
	text := fmt.Sprintf("every wave passed; %s goes to every deployment of %s", s.Release, s.Stack)
	s.event(now, "completed", "", text)
	out.audit = append(out.audit, e.auditEntry(s, store.ActionRolloutDone, "rollout:"+s.ID, "", text, now, nil))
	out.notices = append(out.notices, Notice{Kind: NoticeCompleted, Rollout: s.ID, Stack: s.Stack, Release: s.Release, Reason: text, At: now})
	for i := range members {
		if members[i].Running != s.Release {
			out.announce = append(out.announce, members[i].ID)
		}
	}
}

// openWave freezes the members of the open wave: every deployment no opened
// wave holds and no operator skipped whose first matching wave from here is
// this one.
func (e *Engine) openWave(s *State, members []Member, now time.Time, out *outcome) {
	w := &s.Waves[s.Wave]
	w.OpenedAt = now
	w.Members = map[string]string{}
	var lift []string
	for i := range members {
		m := &members[i]
		if s.openedWaveOf(m.ID) >= 0 || s.skipped(m.ID) || s.waveFor(m, s.Wave) != s.Wave {
			continue
		}
		from := m.Running
		if from == "" {
			from = s.Baseline
		}
		w.Members[m.ID] = from
		if m.Pin == nil && m.Running != s.Release {
			out.announce = append(out.announce, m.ID)
		}
		// A pin an earlier rollout put on to hold a deployment back from a
		// bad release is lifted when a newer release reaches its wave; an
		// operator's pin stays.
		if m.Pin != nil && strings.HasPrefix(m.Pin.By, "rollout:") && m.Pin.By != "rollout:"+s.ID &&
			fleet.CompareVersions(m.Pin.Release, s.Release) < 0 {
			lift = append(lift, m.ID)
		}
	}
	if len(lift) > 0 {
		sort.Strings(lift)
		s.PendingPins = append(s.PendingPins, PinOrder{IDs: lift, Unpin: true, Actor: "rollout:" + s.ID,
			Reason: fmt.Sprintf("%s supersedes the release an earlier rollout held these deployments back from", s.Release)})
	}
	text := fmt.Sprintf("wave %s opened: %d deployments move to %s", w.Name, len(w.Members), s.Release)
	s.event(now, "wave-opened", w.Name, text)
	out.audit = append(out.audit, e.auditEntry(s, store.ActionRolloutWave, "rollout:"+s.ID, "", text, now, map[string]any{"wave": w.Name, "opened": true, "deployments": len(w.Members)}))
}

// figures counts wave i's members for its gates, returns the deployments each
// gate counted, and whether every member has settled: runs the release, failed
// to update to it, is stale, or is pinned or skipped (nothing waits for those).
func (s *State) figures(i int, byID map[string]*Member) (f Figures, offenders map[string][]string, settled bool) {
	offenders = map[string][]string{}
	settled = true
	ids := make([]string, 0, len(s.Waves[i].Members))
	for id := range s.Waves[i].Members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		m, ok := byID[id]
		if !ok || m.Pin != nil || s.skipped(id) {
			continue // deleted, held by a pin, or left out
		}
		f.Size++
		on := m.Running == s.Release
		failed := !on && m.Update.Phase == fleet.UpdateFailed && m.Update.Release == s.Release
		stale := m.Status == fleet.StatusStale
		if on {
			f.Updated++
		}
		if on && m.Regression != nil && m.Regression.Release == s.Release {
			f.Regressed++
			offenders[gateRegressed] = append(offenders[gateRegressed], id)
		}
		if failed {
			f.FailedUpdates++
			offenders[gateFailed] = append(offenders[gateFailed], id)
		}
		if on && m.Status == fleet.StatusUnhealthy && m.ReasonCode == fleet.ReasonComponentsDown {
			f.ComponentsDown++
			offenders[gateDown] = append(offenders[gateDown], id)
		}
		if stale {
			f.Stale++
			offenders[gateStale] = append(offenders[gateStale], id)
		}
		if !on && !failed && !stale {
			settled = false
		}
	}
	return f, offenders, settled
}

func (f Figures) summary() string {
	return fmt.Sprintf("%d regressed, %d failed updates, %d with components down, %d stale of %d", f.Regressed, f.FailedUpdates, f.ComponentsDown, f.Stale, f.Size)
}

// Gate names, as in the plan's YAML.
const (
	gateRegressed = "regressed"
	gateFailed    = "failed_updates"
	gateDown      = "components_down"
	gateStale     = "stale"
)

// gatesFail returns the gates the figures cross, in a fixed order, and a
// reason naming each with its figures and offenders.
func gatesFail(g rolloutplan.Gates, f Figures, offenders map[string][]string, byID map[string]*Member, release string) ([]string, string) {
	var failed, parts []string
	check := func(name, what string, th *rolloutplan.Threshold, count int) {
		if th == nil || th.Allows(count, f.Size) {
			return
		}
		failed = append(failed, name)
		var who []string
		for _, id := range offenders[name] {
			d := id
			if m := byID[id]; name == gateRegressed && m != nil && m.Regression != nil {
				d += " (" + m.Regression.Summary() + ")"
			}
			who = append(who, d)
		}
		parts = append(parts, fmt.Sprintf("gate %s failed: %d of %d deployments %s, %s (%d): %s",
			name, count, f.Size, what, th, th.Allowed(f.Size), listed(who)))
	}
	check(gateRegressed, "regressed on "+release, g.Regressed, f.Regressed)
	check(gateFailed, "failed to update to "+release, g.FailedUpdates, f.FailedUpdates)
	check(gateDown, "have components down on "+release, g.ComponentsDown, f.ComponentsDown)
	check(gateStale, "stopped checking in", g.Stale, f.Stale)
	return failed, strings.Join(parts, "; ")
}

// halt stops the rollout and orders the offenders of the failed gates pinned
// back to the release they ran when their wave opened (a stale deployment is
// not pinned: nothing is known of what it runs).
func (e *Engine) halt(s *State, failed []string, reason string, offenders map[string][]string, now time.Time, out *outcome) {
	w := &s.Waves[s.Wave]
	s.Phase = PhaseHalted
	var all []string
	byRelease := map[string][]string{}
	seen := map[string]bool{}
	for _, g := range failed {
		for _, id := range offenders[g] {
			if !seen[id] {
				seen[id] = true
				all = append(all, id)
			}
			if g == gateStale {
				continue
			}
			if from := w.Members[id]; from != "" && from != s.Release && !contains(byRelease[from], id) {
				byRelease[from] = append(byRelease[from], id)
			}
		}
	}
	sort.Strings(all)
	text := fmt.Sprintf("rollout of %s halted in wave %s: %s", s.Release, w.Name, reason)
	s.Halt = &Halt{At: now, Wave: w.Name, Gates: failed, Reason: reason, Offenders: all}
	var pinned []string
	for _, rel := range sortedKeys(byRelease) {
		ids := byRelease[rel]
		sort.Strings(ids)
		s.PendingPins = append(s.PendingPins, PinOrder{IDs: ids, Release: rel, Actor: "rollout:" + s.ID, Reason: text})
		pinned = append(pinned, ids...)
	}
	s.event(now, "halted", w.Name, text)
	out.audit = append(out.audit, e.auditEntry(s, store.ActionRolloutHalt, "rollout:"+s.ID, "", text, now,
		map[string]any{"wave": w.Name, "gates": failed, "figures": w.Figures, "offenders": all}))
	sort.Strings(pinned)
	out.notices = append(out.notices, Notice{Kind: NoticeHalted, Rollout: s.ID, Stack: s.Stack, Release: s.Release, Wave: w.Name,
		Reason: text, At: now, PinnedBack: capList(pinned)})
}

// newerLocked returns the id of the newest rollout of s's stack started after
// s, or ""; the caller holds mu.
func (e *Engine) newerLocked(s *State) string {
	if rs := e.stacks[s.Stack]; len(rs) > 0 && rs[0].Seq > s.Seq {
		return rs[0].ID
	}
	return ""
}

// commit writes the rollout's new state (when it changed) with its audit
// entries, installs it, and sends the notices and offers. A write another
// replica beat is dropped and the rollout reloaded.
func (e *Engine) commit(ctx context.Context, r *record, s State, now time.Time, out outcome) error {
	old, _ := json.Marshal(r.State)
	s.UpdatedAt = r.UpdatedAt
	next, _ := json.Marshal(s)
	if string(old) == string(next) && len(out.audit) == 0 {
		return nil
	}
	s.UpdatedAt = now
	// The rollouts a completed one superseded retire first: once it leaves
	// the live set, one of them left behind would give the deployments it
	// never reached its baseline back for a moment, and Decide would offer it.
	if s.done() && s.Phase == PhaseCompleted {
		e.retireSuperseded(ctx, s.Stack, s.ID, now)
	}
	if err := e.write(ctx, r, s, out.audit); err != nil {
		return err
	}
	e.deliver(ctx, out)
	return nil
}

// write persists s over r (one version on) with entries, then installs it.
func (e *Engine) write(ctx context.Context, r *record, s State, entries []store.AuditEntry) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	rec := store.RolloutRecord{ID: s.ID, Stack: s.Stack, Release: s.Release, Phase: string(s.Phase), Done: s.done(),
		StartedAt: s.StartedAt, UpdatedAt: s.UpdatedAt, Version: r.version + 1, State: body}
	if err := e.st.UpdateRollout(ctx, rec, entries); err != nil {
		if errors.Is(err, store.ErrConflict) {
			e.reload(ctx, s.ID)
		}
		return err
	}
	e.mu.Lock()
	if s.done() {
		delete(e.live, s.ID)
	} else {
		e.live[s.ID] = &record{State: s, version: rec.Version}
	}
	e.reindexLocked()
	e.mu.Unlock()
	return nil
}

// reload replaces a rollout's state with the store's, after another writer
// moved it.
func (e *Engine) reload(ctx context.Context, id string) {
	rec, err := e.st.GetRollout(ctx, id)
	if err != nil {
		e.log.Warn("reload rollout failed", "rollout", id, "err", err)
		return
	}
	var s State
	if err := json.Unmarshal(rec.State, &s); err != nil {
		e.log.Warn("reload rollout failed", "rollout", id, "err", err)
		return
	}
	e.mu.Lock()
	if rec.Done {
		delete(e.live, id)
	} else {
		e.live[id] = &record{State: s, version: rec.Version}
	}
	e.reindexLocked()
	e.mu.Unlock()
}

// retireSuperseded marks Done the rollouts of stack that completed rollout id
// superseded: every deployment now takes id's release, so none of theirs
// decides anything.
func (e *Engine) retireSuperseded(ctx context.Context, stack, id string, now time.Time) {
	e.mu.RLock()
	var old []*record
	for _, r := range e.stacks[stack] {
		if r.ID != id && r.Phase == PhaseSuperseded && len(r.PendingPins) == 0 {
			old = append(old, r)
		}
	}
	e.mu.RUnlock()
	for _, r := range old {
		s := r.clone()
		s.Retired, s.UpdatedAt = true, now
		s.event(now, "retired", "", "rollout "+id+" reached every deployment")
		if err := e.write(ctx, r, s, nil); err != nil {
			e.log.Warn("retire superseded rollout failed; will retry", "rollout", r.ID, "err", err)
		}
	}
}

func (e *Engine) deliver(ctx context.Context, out outcome) {
	for _, n := range out.notices {
		e.notify.NotifyRollout(ctx, n)
	}
	if len(out.announce) > 0 && e.onDes != nil {
		sort.Strings(out.announce)
		e.onDes(out.announce)
	}
}

// announceOpenedWindows tells OnDesired about deployments, of any stack with
// a plan or without, whose offer a closed window held at the last Step and
// whose window is open now.
func (e *Engine) announceOpenedWindows() {
	if e.onDes == nil || len(e.windows.Customers)+len(e.windows.Deployments) == 0 {
		return // nothing is ever held
	}
	now := e.clk.Now()
	members := e.fleet.Members("")
	var opened []string
	e.mu.Lock()
	for i := range members {
		m := &members[i]
		d := e.decideLocked(m, now)
		isHeld := d.Behind == BehindOutsideWindow
		if e.held[m.ID] && !isHeld {
			opened = append(opened, m.ID)
		}
		if isHeld {
			e.held[m.ID] = true
		} else {
			delete(e.held, m.ID)
		}
	}
	e.mu.Unlock()
	if len(opened) > 0 {
		sort.Strings(opened)
		e.onDes(opened)
	}
}

func (e *Engine) auditEntry(s *State, action, actor, role, reason string, at time.Time, detail map[string]any) store.AuditEntry {
	if detail == nil {
		detail = map[string]any{}
	}
	detail["rollout"] = s.ID
	detail["stack"] = s.Stack
	b, _ := json.Marshal(detail)
	return store.AuditEntry{At: at, Actor: actor, ActorRole: role, Action: action, Target: s.Release, Outcome: store.OutcomeSucceeded,
		Reason: reason, Detail: string(b)}
}

func listed(ids []string) string {
	if len(ids) <= maxListed {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:maxListed], ", "), len(ids)-maxListed)
}

func capList(ids []string) []string {
	if len(ids) > maxPinnedListed {
		return ids[:maxPinnedListed]
	}
	return ids
}

func contains(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
