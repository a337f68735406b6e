package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// thresholdsState is what an entry's agent last reported of its thresholds;
// guarded by the entry's mu, in memory only (like redactionState: an agent
// reports it in its effective configuration at every connect).
type thresholdsState struct {
	// heard is set once the agent reported an effective configuration since
	// the manager started; report is nil when that carried no thresholds
	// report (an agent from before thresholds, which is sent none).
	heard  bool
	report *thresholds.Report
	at     time.Time
}

// ThresholdsReport is an agent's report on its thresholds in a check-in.
type ThresholdsReport struct {
	// Report is nil when the agent's effective configuration carries none.
	Report *thresholds.Report
}

// Thresholds is a deployment's thresholds and whether its agent holds them.
type Thresholds struct {
	// Set is the deployment's own set (the zero Set when it has none).
	Set thresholds.Set
	// Effective is what its agent checks: Set, else its customer's or the
	// fleet's default (Settings.ThresholdDefaults); From says which
	// (thresholds.FromDeployment, …; "" when nothing applies).
	Effective thresholds.Set
	From      string
	// Hash is thresholds.Hash(Effective), the one the agent should report.
	Hash string
	// Agent is what the agent last reported since the manager started; nil
	// before that, or when the agent does not take thresholds.
	Agent *thresholds.Report
	// ReportedAt is when the agent reported Agent.
	ReportedAt time.Time
	// InSync is whether the agent holds Effective.
	InSync bool
}

// ThresholdsRequest sets one deployment's thresholds; By (an API token's name),
// ByRole (its role) and Reason go into the audit log, and Reason is required.
type ThresholdsRequest struct {
	ID         string
	Set        thresholds.Set
	By, ByRole string
	Reason     string
}

// ThresholdsState returns deployment id's thresholds as the check-in server
// needs them: the set its agent should check (its own, else a default), what
// the agent last reported, and whether it reported its effective
// configuration at all since the manager started.
func (r *Registry) ThresholdsState(id string) (set thresholds.Set, rep *thresholds.Report, heard bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok {
		return thresholds.Set{}, nil, false, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	set, _ = r.thrDefaults.For(e.d.Customer, e.d.Thresholds)
	return set, e.thr.report, e.thr.heard, nil
}

// Thresholds returns deployment id's thresholds and whether its agent holds them.
func (r *Registry) Thresholds(id string) (Thresholds, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok {
		return Thresholds{}, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return r.thresholdsViewLocked(e), nil
}

// thresholdsViewLocked is e's thresholds; the caller holds e.mu.
func (r *Registry) thresholdsViewLocked(e *entry) Thresholds {
	eff, from := r.thrDefaults.For(e.d.Customer, e.d.Thresholds)
	t := Thresholds{Set: e.d.Thresholds, Effective: eff, From: from, Hash: thresholds.Hash(eff), ReportedAt: e.thr.at}
	if e.thr.report != nil {
		rep := *e.thr.report
		t.Agent, t.InSync = &rep, rep.Hash == t.Hash
	}
	return t
}

// SetThresholds replaces a deployment's own thresholds (the zero Set: none,
// so its defaults apply) and appends the audit entry,
// both stored before it returns; the agent gets them at its next check-in, or
// at once over an open push connection (Settings.OnThresholdsChange).
func (r *Registry) SetThresholds(ctx context.Context, req ThresholdsRequest) (Thresholds, error) {
	if strings.TrimSpace(req.Reason) == "" {
		return Thresholds{}, fmt.Errorf("say why (a reason is required; it goes into the audit log): %w", ErrInvalid)
	}
	if err := req.Set.Validate(); err != nil {
		return Thresholds{}, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	// Held so a flush cannot write an older copy of the deployment over this
	// change.
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.RLock()
	e, ok := r.deps[req.ID]
	r.mu.RUnlock()
	if !ok {
		return Thresholds{}, fmt.Errorf("deployment %q: %w", req.ID, ErrNotFound)
	}
	now := r.clk.Now().UTC()
	e.mu.Lock()
	old := e.d.Thresholds
	e.d.Thresholds = req.Set
	rec := e.record()
	e.mu.Unlock()
	entry := store.ThresholdsAudit(rec.Deployment.ID, rec.Deployment.Customer, old, req.Set, now, req.By, req.ByRole, req.Reason)
	if err := r.st.ApplyThresholds(ctx, rec, entry); err != nil {
		e.mu.Lock()
		e.d.Thresholds = old
		e.mu.Unlock()
		return Thresholds{}, err
	}
	r.log.Info("thresholds set", "deployment", req.ID, "by", req.By, "thresholds", req.Set.Summary())
	if r.onThresholds != nil {
		r.onThresholds(req.ID)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return r.thresholdsViewLocked(e), nil
}

// thresholdsCheckinLocked records an agent's thresholds report; the caller
// holds e.mu.
func (e *entry) thresholdsCheckinLocked(rep Report, now time.Time) {
	switch {
	case rep.Thresholds != nil:
		e.thr = thresholdsState{heard: true, report: rep.Thresholds.Report, at: now}
	case rep.Description != nil:
		e.thr.heard = true
	}
}
