package rollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// Actor is who asks for an action, for the audit log: an API token's name and
// role, and why.
type Actor struct {
	Name, Role, Reason string
}

// StartRequest asks to roll a release of a stack out through its plan.
type StartRequest struct {
	Stack, Release string
	// Baseline is the stack's latest release before this one: what the
	// deployments no wave reached yet keep running.
	Baseline string
	// Urgent releases ignore update windows; the audit entry says so.
	Urgent bool
	Actor  Actor
}

// StartRollout starts rolling req.Release out through its stack's plan and
// opens the first wave at once. A rollout of the stack still under way is
// superseded: the deployments it moved keep its release until the new one
// reaches them. A release already rolling out may be started again only as
// urgent. ErrNoPlan when the stack has none (its releases go everywhere at
// once), unless the release is urgent: it then runs through UrgentPlan.
func (e *Engine) StartRollout(ctx context.Context, req StartRequest) (State, error) {
	if req.Stack == "" || req.Release == "" {
		return State{}, fmt.Errorf("a rollout needs a stack and a release: %w", ErrInvalid)
	}
	if req.Urgent && strings.TrimSpace(req.Actor.Reason) == "" {
		return State{}, fmt.Errorf("say why the release is urgent (it ignores customers' update windows; the reason goes into the audit log): %w", ErrInvalid)
	}
	e.change.Lock()
	defer e.change.Unlock()
	e.mu.RLock()
	plan, ok := e.plans[req.Stack]
	chain := append([]*record(nil), e.stacks[req.Stack]...)
	e.mu.RUnlock()
	if !ok && !req.Urgent {
		return State{}, fmt.Errorf("stack %s: %w", req.Stack, ErrNoPlan)
	}
	if !ok {
		// A stack without a plan takes a release everywhere at once, but its
		// update windows still hold the offers; an urgent release runs as one
		// wave of everyone, so the windows are ignored until it is in.
		plan = planEntry{plan: UrgentPlan(req.Stack)}
	}
	for _, r := range chain {
		// Marking a release urgent once it is rolling out starts it again,
		// superseding the rollout that respects update windows.
		if r.Release == req.Release && r.Phase != PhaseAborted && !(req.Urgent && !r.Urgent) {
			return State{}, fmt.Errorf("release %s of %s is already rolling out (rollout %s, %s): %w", req.Release, req.Stack, r.ID, r.Phase, ErrInvalid)
		}
	}
	tok, err := auth.NewToken("", e.rand)
	if err != nil {
		return State{}, err
	}
	now := e.clk.Now().UTC()
	s := State{ID: "ro-" + tok[:12], Stack: req.Stack, Release: req.Release, Baseline: req.Baseline, Urgent: req.Urgent,
		Plan: plan.plan, Phase: PhaseRunning, StartedAt: now, UpdatedAt: now, StartedBy: actorName(req.Actor), Reason: req.Actor.Reason}
	if len(chain) > 0 {
		s.Baseline = chain[len(chain)-1].Baseline
		s.Seq = chain[0].Seq + 1
	} else if last, err := e.st.ListRollouts(ctx, store.RolloutFilter{Stack: req.Stack, Limit: 1}); err != nil {
		return State{}, fmt.Errorf("start rollout: %w", err)
	} else if len(last) > 0 {
		var prev State
		if err := json.Unmarshal(last[0].State, &prev); err == nil {
			s.Seq = prev.Seq + 1
		}
	}
	for _, w := range plan.plan.Waves {
		s.Waves = append(s.Waves, WaveState{Name: w.Name})
	}
	text := fmt.Sprintf("rollout of %s to %s started through %d waves", req.Release, req.Stack, len(s.Waves))
	if req.Urgent {
		text += "; urgent: it ignores customers' update windows"
	}
	s.event(now, "started", "", text)
	body, err := json.Marshal(s)
	if err != nil {
		return State{}, err
	}
	entry := e.auditEntry(&s, store.ActionRolloutStart, actorName(req.Actor), req.Actor.Role, req.Actor.Reason, now,
		map[string]any{"urgent": req.Urgent, "ignores_update_windows": req.Urgent, "baseline": s.Baseline, "waves": len(s.Waves)})
	if err := e.st.CreateRollout(ctx, store.RolloutRecord{ID: s.ID, Stack: s.Stack, Release: s.Release, Phase: string(s.Phase),
		StartedAt: now, UpdatedAt: now, Version: 1, State: body}, []store.AuditEntry{entry}); err != nil {
		return State{}, fmt.Errorf("start rollout: %w", err)
	}
	rec := &record{State: s, version: 1}
	e.mu.Lock()
	e.live[s.ID] = rec
	e.reindexLocked()
	e.mu.Unlock()
	// The older rollouts learn they are superseded, and the first wave opens.
	var errs []error
	for _, r := range append(chain, rec) {
		if err := e.stepOne(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	st, _ := e.Get(ctx, s.ID)
	return st, errors.Join(errs...)
}

// UrgentPlan is the plan of an urgent release of a stack without one: a
// single wave of every deployment, with no bake and no gates, as a release
// of such a stack goes everywhere at once.
func UrgentPlan(stack string) rolloutplan.Plan {
	return rolloutplan.Plan{Stack: stack, Waves: []rolloutplan.Wave{{Name: "everyone", Select: rolloutplan.Selection{Rest: true}, Gates: &rolloutplan.Gates{}}}}
}

// Resume lets a halted rollout go on: the open wave bakes again from the
// start, its gates no longer counting the deployments pinned back.
func (e *Engine) Resume(ctx context.Context, id string, a Actor) (State, error) {
	return e.act(ctx, id, a, store.ActionRolloutResume, "", func(s *State, now time.Time, out *outcome) error {
		if s.Phase != PhaseHalted {
			return fmt.Errorf("rollout %s is %s; only a halted rollout resumes: %w", id, s.Phase, ErrInvalid)
		}
		s.Phase = PhaseRunning
		if s.Wave < len(s.Waves) {
			s.Waves[s.Wave].BakeStart = time.Time{}
		}
		s.event(now, "resumed", "", fmt.Sprintf("resumed by %s: %s", actorName(a), a.Reason))
		return nil
	})
}

// Abort stops a rollout for good and pins every deployment it moved back to
// the release it ran before; the deployments it never reached stay where they
// are until a newer release's rollout.
func (e *Engine) Abort(ctx context.Context, id string, a Actor) (State, error) {
	members := map[string]*Member{}
	if s, ok := e.liveState(id); ok {
		ms := e.fleet.Members(s.Stack)
		for i := range ms {
			members[ms[i].ID] = &ms[i]
		}
	}
	return e.act(ctx, id, a, store.ActionRolloutAbort, "", func(s *State, now time.Time, out *outcome) error {
		switch s.Phase {
		case PhaseRunning, PhaseHalted, PhaseSuperseded:
		default:
			return fmt.Errorf("rollout %s is %s; only one under way can be aborted: %w", id, s.Phase, ErrInvalid)
		}
		byRelease := map[string][]string{}
		for _, w := range s.Waves {
			for id, from := range w.Members {
				m := members[id]
				if m == nil || m.Pin != nil || s.skipped(id) || from == "" || from == s.Release {
					continue
				}
				byRelease[from] = append(byRelease[from], id)
			}
		}
		text := fmt.Sprintf("rollout of %s aborted by %s: %s", s.Release, actorName(a), a.Reason)
		var pinned []string
		for _, rel := range sortedKeys(byRelease) {
			ids := byRelease[rel]
			sort.Strings(ids)
			s.PendingPins = append(s.PendingPins, PinOrder{IDs: ids, Release: rel, Actor: actorName(a), Reason: text})
			pinned = append(pinned, ids...)
		}
		sort.Strings(pinned)
		s.Phase = PhaseAborted
		s.event(now, "aborted", "", text)
		out.notices = append(out.notices, Notice{Kind: NoticeAborted, Rollout: s.ID, Stack: s.Stack, Release: s.Release, Reason: text, At: now, PinnedBack: capList(pinned)})
		return nil
	})
}

// Skip leaves deployment dep out of a rollout under way: its gates stop
// counting it and nothing waits for it; it keeps the release it runs until the
// rollout completes. A deployment already on the release cannot be skipped
// (pin it to roll it back).
func (e *Engine) Skip(ctx context.Context, id, dep string, a Actor) (State, error) {
	var member *Member
	if s, ok := e.liveState(id); ok {
		ms := e.fleet.Members(s.Stack)
		for i := range ms {
			if ms[i].ID == dep {
				member = &ms[i]
			}
		}
	}
	return e.act(ctx, id, a, store.ActionRolloutSkip, dep, func(s *State, now time.Time, out *outcome) error {
		switch {
		case s.Phase != PhaseRunning && s.Phase != PhaseHalted:
			return fmt.Errorf("rollout %s is %s; only one running or halted skips deployments: %w", id, s.Phase, ErrInvalid)
		case member == nil:
			return fmt.Errorf("no deployment %q of stack %s: %w", dep, s.Stack, ErrInvalid)
		case member.Running == s.Release:
			return fmt.Errorf("deployment %s already runs %s; pin it to roll it back: %w", dep, s.Release, ErrInvalid)
		case s.skipped(dep):
			return fmt.Errorf("deployment %s is already skipped: %w", dep, ErrInvalid)
		}
		s.Skipped = append(s.Skipped, dep)
		sort.Strings(s.Skipped)
		s.event(now, "skipped", "", fmt.Sprintf("%s left %s out: %s", actorName(a), dep, a.Reason))
		return nil
	})
}

// act runs an operator's action on rollout id: a reason is required; the
// change is written with its audit entry; a running rollout then steps at
// once, so a resumed or unblocked wave moves without waiting for the loop.
func (e *Engine) act(ctx context.Context, id string, a Actor, action, dep string, fn func(*State, time.Time, *outcome) error) (State, error) {
	if err := needReason(a); err != nil {
		return State{}, err
	}
	e.change.Lock()
	defer e.change.Unlock()
	e.mu.RLock()
	r, ok := e.live[id]
	e.mu.RUnlock()
	if !ok {
		if _, err := e.st.GetRollout(ctx, id); err == nil {
			return State{}, fmt.Errorf("rollout %s is finished: %w", id, ErrInvalid)
		}
		return State{}, fmt.Errorf("rollout %s: %w", id, ErrNotFound)
	}
	now := e.clk.Now().UTC()
	s := r.clone()
	var out outcome
	if err := fn(&s, now, &out); err != nil {
		return State{}, err
	}
	entry := e.auditEntry(&s, action, actorName(a), a.Role, a.Reason, now, nil)
	entry.DeploymentID = dep
	out.audit = append(out.audit, entry)
	s.UpdatedAt = now
	if err := e.write(ctx, r, s, out.audit); err != nil {
		return State{}, fmt.Errorf("%s: %w", action, err)
	}
	e.deliver(ctx, out)
	e.mu.RLock()
	r, ok = e.live[id]
	e.mu.RUnlock()
	if ok {
		if err := e.stepOne(ctx, r); err != nil {
			e.log.Warn("rollout step after an action failed; the loop retries", "rollout", id, "err", err)
		}
	}
	return e.Get(ctx, id)
}

// Get returns rollout id, finished or not.
func (e *Engine) Get(ctx context.Context, id string) (State, error) {
	if s, ok := e.liveState(id); ok {
		return s, nil
	}
	rec, err := e.st.GetRollout(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return State{}, fmt.Errorf("rollout %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return State{}, err
	}
	var s State
	if err := json.Unmarshal(rec.State, &s); err != nil {
		return State{}, fmt.Errorf("read rollout %s: %w", id, err)
	}
	return s, nil
}

// List returns the rollouts f selects, newest first.
func (e *Engine) List(ctx context.Context, f store.RolloutFilter) ([]State, error) {
	recs, err := e.st.ListRollouts(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]State, 0, len(recs))
	for _, rec := range recs {
		if s, ok := e.liveState(rec.ID); ok {
			out = append(out, s)
			continue
		}
		var s State
		if err := json.Unmarshal(rec.State, &s); err != nil {
			return nil, fmt.Errorf("read rollout %s: %w", rec.ID, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func (e *Engine) liveState(id string) (State, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	r, ok := e.live[id]
	if !ok {
		return State{}, false
	}
	return r.clone(), true
}

// SetPlan sets the rollout plan of p.Stack through the API; it replaces the
// configuration file's and applies to rollouts started after.
func (e *Engine) SetPlan(ctx context.Context, p rolloutplan.Plan, a Actor) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := needReason(a); err != nil {
		return err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	e.change.Lock()
	defer e.change.Unlock()
	now := e.clk.Now().UTC()
	entry := settingEntry(now, a, store.ActionRolloutPlan, p.Stack, string(body))
	if err := e.st.PutRolloutPlan(ctx, store.RolloutPlanRecord{Stack: p.Stack, Plan: body, UpdatedAt: now, UpdatedBy: actorName(a)}, entry); err != nil {
		return err
	}
	e.mu.Lock()
	e.plans[p.Stack] = planEntry{plan: p, fromAPI: true}
	e.mu.Unlock()
	return nil
}

// RemovePlan removes the plan set through the API for stack; the
// configuration file's, if any, applies again. ErrNotFound when the API set
// none.
func (e *Engine) RemovePlan(ctx context.Context, stack string, a Actor) error {
	if err := needReason(a); err != nil {
		return err
	}
	e.change.Lock()
	defer e.change.Unlock()
	now := e.clk.Now().UTC()
	entry := settingEntry(now, a, store.ActionRolloutPlan, stack, `{"removed":true}`)
	if err := e.st.DeleteRolloutPlan(ctx, stack, entry); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no rollout plan set through the API for %s: %w", stack, ErrNotFound)
		}
		return err
	}
	e.mu.Lock()
	if p, ok := e.filePlans[stack]; ok {
		e.plans[stack] = planEntry{plan: p}
	} else {
		delete(e.plans, stack)
	}
	e.mu.Unlock()
	return nil
}

// needReason refuses an operator's change without a reason.
func needReason(a Actor) error {
	if strings.TrimSpace(a.Reason) == "" {
		return fmt.Errorf("say why (a reason is required; it goes into the audit log): %w", ErrInvalid)
	}
	return nil
}

// settingEntry is the audit entry of a plan or windows set through the API.
func settingEntry(now time.Time, a Actor, action, target, detail string) store.AuditEntry {
	return store.AuditEntry{At: now, Actor: actorName(a), ActorRole: a.Role, Action: action, Target: target,
		Outcome: store.OutcomeSucceeded, Reason: a.Reason, Detail: detail}
}

func actorName(a Actor) string {
	if a.Name == "" {
		return "periscope"
	}
	return a.Name
}
