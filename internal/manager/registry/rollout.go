package registry

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/desired"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// OfferStatus is an agent's report on a release offer: the offer's hash and how
// applying it went.
type OfferStatus struct {
	Hash  string
	Phase fleet.UpdatePhase
	Error string
}

// releaseChangedLocked records that d now runs release: the one it ran becomes
// its previous release, and a regression found on another release no longer
// describes it. The caller holds the entry's lock.
func (r *Registry) releaseChangedLocked(d *fleet.Deployment, release string, now time.Time) {
	if d.RunningRelease != "" {
		d.PreviousRelease = d.RunningRelease
	}
	d.RunningRelease, d.ReleaseSince = release, now.UTC()
	if d.Regression != nil && d.Regression.Release != release {
		d.Regression = nil
	}
	if d.Update.Release == release && d.Update.Phase != fleet.UpdateNone {
		d.Update.Phase, d.Update.Error = fleet.UpdateApplied, ""
	}
}

// offerLocked is the release offer d should have: its desired release with the
// expected configuration hash.
func (r *Registry) offerLocked(d *fleet.Deployment, now time.Time) desired.Offer {
	o, _ := r.heldOfferLocked(d, now)
	return o
}

// heldOfferLocked is offerLocked, and whether a closed update window holds
// the desired release. While it does, or while the registry does not know
// the release yet (its rollout started before it was added), the offer keeps
// the running release.
func (r *Registry) heldOfferLocked(d *fleet.Deployment, now time.Time) (desired.Offer, bool) {
	ev := r.evaluate(d, now)
	if ev.Held || !r.stacks[d.Stack].Has(ev.Desired) {
		ev.Desired = d.RunningRelease
	}
	return desired.Offer{Stack: d.Stack, Release: ev.Desired, ConfigHash: d.ExpectedConfigHash, Commands: r.commandsLocked(d.Stack, ev.Desired)}, ev.Held
}

// commandsLocked returns the commands release version of stack declares. The
// caller holds r.mu.
func (r *Registry) commandsLocked(stack, version string) []command.Spec {
	for _, rel := range r.stacks[stack].Releases {
		if rel.Version == version {
			return rel.Commands
		}
	}
	return nil
}

// offerStatusLocked turns an agent's report on an offer into its update state,
// finding which release the offer named from its hash.
func (r *Registry) offerStatusLocked(d *fleet.Deployment, st OfferStatus, now time.Time) {
	d.OfferHash = st.Hash
	release := ""
	if cur := r.offerLocked(d, now); hex.EncodeToString(desired.Hash(cur)) == st.Hash {
		release = cur.Release
	} else {
		for _, rel := range r.stacks[d.Stack].Releases {
			o := desired.Offer{Stack: d.Stack, Release: rel.Version, ConfigHash: d.ExpectedConfigHash, Commands: rel.Commands}
			if hex.EncodeToString(desired.Hash(o)) == st.Hash {
				release = rel.Version
				break
			}
		}
	}
	if release == "" {
		return // an offer the manager no longer recognises says nothing current
	}
	if st.Phase == fleet.UpdateApplied && release == d.RunningRelease && d.Update.Release == release && d.Update.Phase == fleet.UpdateApplied {
		return
	}
	d.Update = fleet.UpdateState{Phase: st.Phase, Release: release, Error: st.Error, At: now.UTC()}
	if st.Phase == fleet.UpdateApplied && release != d.RunningRelease {
		// The agent says it runs the release even if its description lags.
		r.releaseChangedLocked(d, release, now)
	}
}

// Offer returns the release offer deployment id should be sent, and whether it
// needs sending: the agent applies releases itself and has not yet reported on
// this offer.
func (r *Registry) Offer(id string) (desired.Offer, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok {
		return desired.Offer{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	o, held := r.heldOfferLocked(&e.d, r.clk.Now())
	if !e.d.AcceptsReleases || o.Release == "" || held {
		return o, false
	}
	return o, hex.EncodeToString(desired.Hash(o)) != e.d.OfferHash
}

// Selector picks the deployments a pin change applies to: the listed ids, or
// every deployment matching Filter. A zero Filter with no ids selects nothing
// unless All is set, so a forgotten filter never pins the whole fleet.
type Selector struct {
	IDs    []string
	Filter fleet.Filter
	All    bool
}

// PinRequest asks to pin, unpin or roll back a selection of deployments.
type PinRequest struct {
	Select Selector
	Action fleet.PinAction
	// Release is the release to pin to (ActionPin only).
	Release string
	// By (an API token's name), ByRole (its role) and Reason go into the audit
	// trail; Reason is required to pin or roll back.
	By, ByRole string
	Reason     string
}

// PinResult is what a pin change did: one audit entry per deployment changed,
// and how many selected deployments already were as asked.
type PinResult struct {
	ChangeID  string
	Changes   []fleet.PinChange
	Unchanged int
}

// maxListed bounds how many offending deployments an error message names.
const maxListed = 5

func listed(ids []string) string {
	if len(ids) <= maxListed {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:maxListed], ", "), len(ids)-maxListed)
}

// Pin applies a pin change to every selected deployment in one store
// transaction: all of them change or none does. A change that overlaps one in
// progress is refused with ErrConflict; one that cannot apply to some deployment
// (no such release in its stack, nothing to roll back to) is refused with
// ErrInvalid naming them.
func (r *Registry) Pin(ctx context.Context, req PinRequest) (PinResult, error) {
	switch req.Action {
	case fleet.ActionPin:
		if req.Release == "" {
			return PinResult{}, fmt.Errorf("a pin needs a release: %w", ErrInvalid)
		}
		fallthrough
	case fleet.ActionRollback:
		if strings.TrimSpace(req.Reason) == "" {
			return PinResult{}, fmt.Errorf("say why (a reason is required; it goes into the audit trail): %w", ErrInvalid)
		}
	case fleet.ActionUnpin:
	default:
		return PinResult{}, fmt.Errorf("unknown pin action %q: %w", req.Action, ErrInvalid)
	}
	if len(req.Select.IDs) == 0 && req.Select.Filter.IsZero() && !req.Select.All {
		return PinResult{}, fmt.Errorf("select deployments (ids, a filter, or all): %w", ErrInvalid)
	}
	tok, err := auth.NewToken("chg-", r.rand)
	if err != nil {
		return PinResult{}, err
	}
	changeID := tok[:16]
	now := r.clk.Now().UTC()

	// Claim every selected deployment, or none.
	r.mu.RLock()
	held, err := r.claimLocked(req.Select, changeID, now)
	if err != nil {
		r.mu.RUnlock()
		return PinResult{}, err
	}
	res := PinResult{ChangeID: changeID}
	type planned struct {
		e   *entry
		pin *fleet.Pin
	}
	var (
		plan                []planned
		noRelease, noRollbk []string
	)
	for _, e := range held {
		e.mu.Lock()
		ev := r.evaluate(&e.d, now)
		var pin *fleet.Pin
		target := ""
		switch req.Action {
		case fleet.ActionPin:
			target = req.Release
			if !r.stacks[e.d.Stack].Has(target) {
				noRelease = append(noRelease, e.d.ID)
			}
		case fleet.ActionRollback:
			target = e.d.PreviousRelease
			if target == "" || fleet.CompareVersions(target, e.d.RunningRelease) > 0 {
				// Nothing ran before, or what ran before is newer: not a rollback.
				noRollbk = append(noRollbk, e.d.ID)
				target = ""
			}
		}
		if target != "" {
			pin = &fleet.Pin{Release: target, By: req.By, Reason: req.Reason, At: now}
		}
		same := (pin == nil && e.d.Pin == nil) || (pin != nil && e.d.Pin != nil && e.d.Pin.Release == pin.Release)
		if same {
			res.Unchanged++
		} else {
			to := ev.Latest
			if pin != nil {
				to = pin.Release
			}
			plan = append(plan, planned{e, pin})
			res.Changes = append(res.Changes, fleet.PinChange{ChangeID: changeID, At: now, By: req.By, ByRole: req.ByRole, Reason: req.Reason,
				Action: req.Action, DeploymentID: e.d.ID, From: ev.Desired, To: to, Running: e.d.RunningRelease})
		}
		e.mu.Unlock()
	}
	r.mu.RUnlock()
	release := func() {
		r.mu.RLock()
		for _, e := range held {
			e.mu.Lock()
			if e.changing == changeID {
				e.changing = ""
			}
			e.mu.Unlock()
		}
		r.mu.RUnlock()
	}
	switch {
	case len(noRelease) > 0:
		release()
		return PinResult{}, fmt.Errorf("release %q is not published for the stack of %s: %w", req.Release, listed(noRelease), ErrInvalid)
	case len(noRollbk) > 0:
		release()
		return PinResult{}, fmt.Errorf("no earlier release to roll back to for %s (a rollback pins the older release a deployment ran before its current one): %w", listed(noRollbk), ErrInvalid)
	case len(plan) == 0:
		release()
		return res, nil
	}

	// Write the new pins and the audit trail in one transaction. Holding flushMu
	// keeps a batched flush from writing a snapshot with the old pin after it.
	r.flushMu.Lock()
	recs := make([]store.DeploymentRecord, len(plan))
	r.mu.RLock()
	for i, p := range plan {
		p.e.mu.Lock()
		rec := p.e.record()
		rec.Deployment.Pin = p.pin
		// Write when it fell behind in the same transaction, or the next flush
		// rewrites every pinned row just to record it.
		d := &rec.Deployment
		switch ev := r.evaluate(d, now); {
		case ev.Behind.Lagging() && d.BehindSince.IsZero():
			d.BehindSince = now
		case !ev.Behind.Lagging():
			d.BehindSince = time.Time{}
		}
		recs[i] = rec
		p.e.mu.Unlock()
	}
	r.mu.RUnlock()
	if err := r.st.ApplyPins(ctx, recs, res.Changes); err != nil {
		r.flushMu.Unlock()
		release()
		return PinResult{}, fmt.Errorf("store pin change: %w", err)
	}
	r.mu.RLock()
	ids := make([]string, len(plan))
	for i, p := range plan {
		p.e.mu.Lock()
		p.e.d.Pin, p.e.d.BehindSince = p.pin, recs[i].Deployment.BehindSince
		// The store wrote the pin alone; the flush writes when it fell behind.
		r.markDirty(p.e.d.ID)
		r.evaluateLocked(p.e, now)
		p.e.changing = ""
		p.e.mu.Unlock()
		ids[i] = p.e.d.ID
	}
	for _, e := range held {
		e.mu.Lock()
		if e.changing == changeID {
			e.changing = ""
		}
		e.mu.Unlock()
	}
	r.mu.RUnlock()
	r.flushMu.Unlock()
	r.log.Info("pin change applied", "change", changeID, "action", req.Action, "release", req.Release, "by", req.By,
		"deployments", len(plan), "unchanged", res.Unchanged)
	if r.onDesired != nil {
		r.onDesired(ids)
	}
	return res, nil
}

// claimLocked marks the selected deployments as held by change; if any is held
// by another change, it marks none and returns ErrConflict. The caller holds r.mu.
func (r *Registry) claimLocked(sel Selector, change string, now time.Time) ([]*entry, error) {
	picked, err := r.selectLocked(sel, now)
	if err != nil {
		return nil, err
	}
	for i, e := range picked {
		e.mu.Lock()
		other := e.changing
		if other == "" {
			e.changing = change
		}
		e.mu.Unlock()
		if other != "" {
			for _, u := range picked[:i] {
				u.mu.Lock()
				u.changing = ""
				u.mu.Unlock()
			}
			return nil, fmt.Errorf("deployment %s is being changed by pin change %s; retry once it is done: %w", e.d.ID, other, ErrConflict)
		}
	}
	return picked, nil
}

// selectLocked returns the selected deployments: the listed ids without
// repeats (ErrNotFound naming any unknown), or those matching the filter in id
// order (ErrNotFound when none does). The caller holds r.mu.
func (r *Registry) selectLocked(sel Selector, now time.Time) ([]*entry, error) {
	var picked []*entry
	if len(sel.IDs) > 0 {
		var missing []string
		seen := map[string]bool{}
		for _, id := range sel.IDs {
			if seen[id] {
				continue
			}
			seen[id] = true
			e, ok := r.deps[id]
			if !ok {
				missing = append(missing, id)
				continue
			}
			picked = append(picked, e)
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("no deployment %s: %w", listed(missing), ErrNotFound)
		}
		return picked, nil
	}
	for _, e := range r.order {
		if r.matchLocked(e, sel.Filter, now) {
			picked = append(picked, e)
		}
	}
	if len(picked) == 0 {
		return nil, fmt.Errorf("no deployment matches the selection: %w", ErrNotFound)
	}
	return picked, nil
}

// PinChanges returns up to limit pin audit entries, newest first, of one
// deployment or of all.
func (r *Registry) PinChanges(ctx context.Context, id string, limit int) ([]fleet.PinChange, error) {
	if id != "" {
		r.mu.RLock()
		_, ok := r.deps[id]
		r.mu.RUnlock()
		if !ok {
			return nil, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
		}
	}
	return r.st.ListPinChanges(ctx, id, limit)
}

// SetRegression records (or, with nil, clears) the evidence that deployment id's
// running release is worse than its previous one. Evidence about a release the
// deployment no longer runs is ignored.
func (r *Registry) SetRegression(id string, reg *fleet.Regression) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok {
		return fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if reg != nil && reg.Release != e.d.RunningRelease {
		return nil
	}
	if reg == nil && e.d.Regression == nil {
		return nil
	}
	if reg != nil && e.d.Regression != nil {
		reg.Since = e.d.Regression.Since // the regression began when first seen
	}
	if reg != nil {
		c := *reg
		c.Worse = append([]string(nil), reg.Worse...)
		reg = &c
	}
	e.d.Regression = reg
	r.markDirty(id)
	r.evaluateLocked(e, r.clk.Now())
	return nil
}

// ReleaseCandidate is a deployment regression detection should look at: it runs
// a release and ran another before.
type ReleaseCandidate struct {
	ID, Release, Previous string
	ReleaseSince          time.Time
	Regression            *fleet.Regression
}

// ReleaseCandidates lists deployments with a known previous release, for
// regression detection, sorted by id.
func (r *Registry) ReleaseCandidates() []ReleaseCandidate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []ReleaseCandidate
	for _, e := range r.order {
		e.mu.Lock()
		if e.d.PreviousRelease != "" && e.d.RunningRelease != "" && e.d.PreviousRelease != e.d.RunningRelease {
			c := ReleaseCandidate{ID: e.d.ID, Release: e.d.RunningRelease, Previous: e.d.PreviousRelease, ReleaseSince: e.d.ReleaseSince}
			if e.d.Regression != nil {
				rg := *e.d.Regression
				c.Regression = &rg
			}
			out = append(out, c)
		}
		e.mu.Unlock()
	}
	return out
}

// Adoption is one stack's release adoption.
type Adoption struct {
	Stack  string
	Latest string
	Total  int
	// Releases are the stack's published releases, newest first, with the
	// versions deployments run that were never published after them.
	Releases []ReleaseAdoption
}

// ReleaseAdoption counts the deployments on one release.
type ReleaseAdoption struct {
	Version   string
	Published bool
	Running   int
	Desired   int
	Pinned    int
	// Behind counts the deployments running it that are behind their desired
	// release, by reason (nil when none is).
	Behind map[fleet.BehindReason]int
}

// Adoption returns, per stack, how many deployments run, want and are pinned to
// each release.
func (r *Registry) Adoption(stack string) []Adoption {
	r.refresh()
	r.mu.RLock()
	defer r.mu.RUnlock()
	a := r.newAdopterLocked()
	for _, e := range r.order { // a slice reads faster than the map
		e.mu.Lock()
		if stack == "" || e.d.Stack == stack {
			a.add(&e.d, e.kept.ev)
		}
		e.mu.Unlock()
	}
	return a.resultLocked(r, stack)
}

// adopter counts deployments per stack and release into Adoptions.
type adopter struct {
	by     map[string]map[string]*ReleaseAdoption
	totals map[string]int
}

// newAdopterLocked starts with every published release; the caller holds r.mu.
func (r *Registry) newAdopterLocked() *adopter {
	a := &adopter{by: map[string]map[string]*ReleaseAdoption{}, totals: map[string]int{}}
	for st, sr := range r.stacks {
		for _, rel := range sr.Releases {
			a.get(st, rel.Version).Published = true
		}
	}
	return a
}

func (a *adopter) get(st, v string) *ReleaseAdoption {
	m := a.by[st]
	if m == nil {
		m = map[string]*ReleaseAdoption{}
		a.by[st] = m
	}
	if m[v] == nil {
		m[v] = &ReleaseAdoption{Version: v}
	}
	return m[v]
}

func (a *adopter) add(d *fleet.Deployment, ev fleet.Evaluation) {
	a.totals[d.Stack]++
	if d.RunningRelease != "" {
		ra := a.get(d.Stack, d.RunningRelease)
		ra.Running++
		if ev.Behind != "" {
			if ra.Behind == nil {
				ra.Behind = map[fleet.BehindReason]int{}
			}
			ra.Behind[ev.Behind]++
		}
	}
	if ev.Desired != "" {
		ra := a.get(d.Stack, ev.Desired)
		ra.Desired++
		if ev.Pinned {
			ra.Pinned++
		}
	}
}

// resultLocked lists the stacks (only stack, unless ""), newest release
// first; the caller holds r.mu.
func (a *adopter) resultLocked(r *Registry, stack string) []Adoption {
	var out []Adoption
	for st, m := range a.by {
		if stack != "" && st != stack {
			continue
		}
		ad := Adoption{Stack: st, Latest: r.stacks[st].Latest, Total: a.totals[st]}
		for _, ra := range m {
			ad.Releases = append(ad.Releases, *ra)
		}
		sort.Slice(ad.Releases, func(i, j int) bool { return fleet.CompareVersions(ad.Releases[i].Version, ad.Releases[j].Version) > 0 })
		out = append(out, ad)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stack < out[j].Stack })
	return out
}
