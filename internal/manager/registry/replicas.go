package registry

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// Replicas. Several managers may share one store (PostgreSQL): each keeps the
// whole fleet in memory, writes only what it owns, and reads what the others
// wrote (Sync) every SyncInterval and whenever Wake is called (a NOTIFY).
//
// Ownership. A check-in's state belongs to the replica that heard it: it is
// flushed with UpdateCheckins, which never writes over a later check-in, and
// merged from the store only when it is later than the one in memory (or as
// late, with nothing of this replica's own waiting to be written). The
// operator's state (pin, thresholds, tokens, and what was declared at
// creation) is written by the operation in its own transaction and always
// taken from the store. Status changes are recorded as events, and handed to
// OnEvent, only by the leader (SetLeader), which sees every replica's check-ins
// within a sync, so each change is recorded once; the others follow silently.

// SetLeader says whether this replica records status changes (events and
// OnEvent) and expires rotation overlaps: true for exactly one replica at a
// time, and for a registry that is the store's only writer (the default
// without SyncInterval).
func (r *Registry) SetLeader(leading bool) { r.leading.Store(leading) }

// Leader reports whether this replica records status changes (SetLeader).
func (r *Registry) Leader() bool { return r.leading.Load() }

// Wake makes the sync loop read the store's changes now rather than at its
// next tick. It never blocks.
func (r *Registry) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// syncOnce is one tick of the sync loop (see Start).
func (r *Registry) syncOnce(ctx context.Context) {
	if err := r.Sync(ctx); err != nil && ctx.Err() == nil {
		r.m.syncErrors.Inc()
		r.log.Warn("reading other replicas' fleet changes failed; will retry", "err", err)
	}
}

// Sync reads what was written to the store since the last Sync (by other
// replicas, and this one's own writes, which change nothing) and merges it
// into memory: new and deleted deployments, releases, pins, thresholds,
// tokens, and check-ins later than the ones this replica heard. Push
// connections are told of what changed for their agent, as for local changes.
func (r *Registry) Sync(ctx context.Context) error {
	// flushMu keeps an operation of this replica (which holds it while it
	// writes the store and then memory) from landing between the read and the
	// merge, where the read's older copy would undo it in memory.
	// tokMu likewise for token changes.
	r.tokMu.Lock()
	r.flushMu.Lock()
	ch, err := r.st.FleetChangesSince(ctx, r.syncPos)
	if err != nil {
		r.flushMu.Unlock()
		r.tokMu.Unlock()
		return fmt.Errorf("sync fleet: %w", err)
	}
	r.syncPos = ch.Next
	r.pendMu.Lock()
	dirty := make(map[string]bool, len(r.dirty))
	for id := range r.dirty {
		dirty[id] = true
	}
	r.pendMu.Unlock()
	now := r.clk.Now()
	var desiredIDs, thrIDs, tokIDs []string
	r.mu.Lock()
	for _, id := range ch.Deleted {
		if e, ok := r.deps[id]; ok {
			r.removeLocked(e)
			tokIDs = append(tokIDs, id)
		}
	}
	before := map[string]string{}
	for _, rel := range ch.Releases {
		if r.stacks[rel.Stack].Has(rel.Version) {
			continue
		}
		if _, ok := before[rel.Stack]; !ok {
			before[rel.Stack] = r.stacks[rel.Stack].Latest
		}
		r.addReleaseLocked(rel)
	}
	added := false
	for i := range ch.Deployments {
		rec := &ch.Deployments[i]
		id := rec.Deployment.ID
		e, ok := r.deps[id]
		if !ok {
			e = &entry{d: rec.Deployment, lastStatus: rec.LastStatus, statusSince: now}
			r.deps[id] = e
			r.setTokensLocked(e, agentTokens{tokenHash: rec.TokenHash, prevHash: rec.PrevTokenHash, prevUntil: rec.PrevTokenUntil})
			r.order = append(r.order, e)
			added = true
			e.mu.Lock()
			r.evaluateLocked(e, now)
			e.mu.Unlock()
			continue
		}
		if e.tokenHash != rec.TokenHash || e.prevHash != rec.PrevTokenHash || !e.prevUntil.Equal(rec.PrevTokenUntil) {
			r.setTokensLocked(e, agentTokens{tokenHash: rec.TokenHash, prevHash: rec.PrevTokenHash, prevUntil: rec.PrevTokenUntil})
			tokIDs = append(tokIDs, id)
		}
		e.mu.Lock()
		was := r.evaluate(&e.d, now).Desired
		wasHash, wasThr := e.d.ExpectedConfigHash, e.d.Thresholds
		local, remote := e.d.LastCheckin, rec.Deployment.LastCheckin
		if remote.After(local) || (remote.Equal(local) && !dirty[id]) {
			regression := e.d.Regression
			e.d = rec.Deployment
			if r.Leader() {
				// Regression evidence is the leader's: its flush may lose to a
				// later check-in, and its detector sets it again.
				e.d.Regression = regression
			}
		} else {
			operatorState(&e.d, &rec.Deployment)
		}
		if r.evaluate(&e.d, now).Desired != was || e.d.ExpectedConfigHash != wasHash {
			desiredIDs = append(desiredIDs, id)
		}
		if !reflect.DeepEqual(wasThr, e.d.Thresholds) {
			thrIDs = append(thrIDs, id)
		}
		r.evaluateLocked(e, now)
		e.mu.Unlock()
	}
	if added {
		r.sortOrderLocked()
	}
	if len(before) > 0 {
		// A new release may change what every deployment of its stack
		// desires: the kept evaluations are renewed, as CreateRelease does.
		r.evaluateAllLocked()
	}
	for stack, was := range before {
		if latest := r.stacks[stack].Latest; latest != was {
			for _, e := range r.order {
				e.mu.Lock()
				if e.d.Stack == stack && e.d.Pin == nil {
					desiredIDs = append(desiredIDs, e.d.ID)
				}
				e.mu.Unlock()
			}
		}
	}
	r.mu.Unlock()
	r.flushMu.Unlock()
	r.tokMu.Unlock()
	r.m.syncs.Inc()
	r.m.syncRows.Observe(float64(len(ch.Deployments)))
	sort.Strings(desiredIDs)
	desiredIDs = slices.Compact(desiredIDs)
	if len(desiredIDs) > 0 && r.onDesired != nil {
		r.onDesired(desiredIDs)
	}
	for _, id := range thrIDs {
		if r.onThresholds != nil {
			r.onThresholds(id)
		}
	}
	for _, id := range tokIDs {
		r.tokensChanged(id)
	}
	return nil
}

// operatorState copies into dst what operations own of a deployment (see
// store.Fleet.UpdateCheckins): what was declared at creation, the expected
// configuration, the pin and the thresholds.
func operatorState(dst, src *fleet.Deployment) {
	dst.Name, dst.Customer, dst.Stack, dst.Labels = src.Name, src.Customer, src.Stack, src.Labels
	dst.ExpectedConfigHash, dst.Pin, dst.Thresholds, dst.CreatedAt = src.ExpectedConfigHash, src.Pin, src.Thresholds, src.CreatedAt
}

// removeLocked takes e out of the fleet; the caller holds r.mu for writing.
func (r *Registry) removeLocked(e *entry) {
	id := e.d.ID
	r.setTokensLocked(e, agentTokens{})
	e.mu.Lock()
	r.setEvaluationLocked(e, nil)
	e.mu.Unlock()
	delete(r.deps, id)
	i := sort.Search(len(r.order), func(i int) bool { return r.order[i].d.ID >= id })
	if i < len(r.order) && r.order[i] == e {
		r.order = append(r.order[:i], r.order[i+1:]...)
	}
}

// loadLocked replaces the fleet in memory with what the store holds (at
// Start); the caller holds r.mu for writing.
func (r *Registry) loadLocked(ch store.FleetChanges, resetConnected bool) {
	for _, rec := range ch.Deployments {
		e := &entry{d: rec.Deployment, lastStatus: rec.LastStatus}
		if resetConnected && e.d.Connected {
			e.d.Connected = false
			r.markDirty(e.d.ID)
		}
		r.deps[e.d.ID] = e
		r.setTokensLocked(e, agentTokens{tokenHash: rec.TokenHash, prevHash: rec.PrevTokenHash, prevUntil: rec.PrevTokenUntil})
		r.order = append(r.order, e)
	}
	r.sortOrderLocked()
	for _, rel := range ch.Releases {
		r.addReleaseLocked(rel)
	}
	r.syncPos = ch.Next
}
