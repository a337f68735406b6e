package registry

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// Agent tokens: rotation with an overlap, revocation and deletion.
//
// A rotation issues a new token and keeps the old one valid (the "previous"
// token) until the agent first uses the new one, which the check-in server
// offers it over OpAMP, or until an optional deadline. Only the new token's
// plaintext is kept, in memory and only until the agent has it: a manager
// restarted during an overlap has lost it, and the operator installs the token
// the rotation printed (or rotates again). Revocation is immediate. Operator
// changes are written through with their audit entries; the manager's own
// changes (a retired previous token) reach the store within a flush interval.

// Actor is who the audit trail names for changes the manager makes itself.
const Actor = "periscope"

// agentTokens are the agent tokens a deployment accepts. The registry's mu guards
// them, so Authenticate needs no entry lock.
type agentTokens struct {
	// tokenHash is the token in force; empty once revoked.
	tokenHash string
	// prevHash is the token a rotation replaced, valid until the agent uses
	// tokenHash or until prevUntil (when set).
	prevHash  string
	prevUntil time.Time
	// offer is tokenHash's plaintext while prevHash is valid, for the
	// check-in server to hand to an agent that still uses prevHash.
	offer string
}

// TokenState is what the API shows of a deployment's agent tokens.
type TokenState struct {
	// Revoked is set when the deployment has no valid token.
	Revoked bool
	// Rotating is set while the previous token of a rotation is still valid.
	Rotating bool
	// PreviousUntil is the rotation's deadline (zero: until the agent uses
	// the new token).
	PreviousUntil time.Time
	// Deliverable is whether the new token can still be offered to the agent
	// (false after a manager restart during the overlap).
	Deliverable bool
}

func (t agentTokens) state() TokenState {
	return TokenState{Revoked: t.tokenHash == "", Rotating: t.prevHash != "", PreviousUntil: t.prevUntil, Deliverable: t.offer != ""}
}

// setTokensLocked replaces e's tokens and their index entries; the caller holds
// r.mu for writing (or is loading the fleet).
func (r *Registry) setTokensLocked(e *entry, t agentTokens) {
	for _, h := range []string{e.tokenHash, e.prevHash} {
		if h != "" && r.byToken[h] == e {
			delete(r.byToken, h)
		}
	}
	e.agentTokens = t
	for _, h := range []string{t.tokenHash, t.prevHash} {
		if h != "" {
			r.byToken[h] = e
		}
	}
	if t.prevHash != "" {
		r.rotating[e.d.ID] = e
	} else {
		delete(r.rotating, e.d.ID)
	}
}

func (e *entry) storedTokens() store.DeploymentTokens {
	return store.DeploymentTokens{ID: e.d.ID, TokenHash: e.tokenHash, PrevTokenHash: e.prevHash, PrevTokenUntil: e.prevUntil}
}

// TokenValid reports whether the token with hash h is still valid for
// deployment id and, when the agent should move to a newer token, that token.
func (r *Registry) TokenValid(id, h string) (valid bool, offer string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok || h == "" {
		return false, ""
	}
	switch h {
	case e.tokenHash:
		return true, ""
	case e.prevHash:
		if e.expiredLocked(r.clk.Now()) {
			return false, ""
		}
		return true, e.offer
	}
	return false, ""
}

// expiredLocked reports whether the previous token's overlap has ended at now;
// the caller holds r.mu.
func (t *agentTokens) expiredLocked(now time.Time) bool {
	return t.prevHash != "" && !t.prevUntil.IsZero() && !now.Before(t.prevUntil)
}

// RotateRequest asks for a deployment's new agent token.
type RotateRequest struct {
	ID string
	// Overlap bounds how long the old token stays valid if the agent does not
	// check in with the new one first; zero means no deadline.
	Overlap time.Duration
	// By (an API token's name), ByRole and Reason go into the audit trail;
	// Reason is optional.
	By, ByRole, Reason string
}

// Rotated is a rotation's outcome; Token is shown only now.
type Rotated struct {
	Token string
	// Overlapping is whether an old token stays valid until the agent has the
	// new one; without one (the tokens were revoked) the operator installs the
	// new token by hand.
	Overlapping   bool
	PreviousUntil time.Time
}

// RevokeRequest asks to revoke a deployment's agent tokens.
type RevokeRequest struct {
	ID string
	// PreviousOnly ends a rotation's overlap instead: only the old token is
	// revoked.
	PreviousOnly bool
	// By (an API token's name), ByRole and Reason go into the audit trail;
	// Reason is required.
	By, ByRole, Reason string
}

// RotateToken issues a new agent token for a deployment. The token in use stays
// valid until the agent uses the new one (which push connections are offered at
// once, polling agents in their next reply) or until the overlap ends. A second
// rotation before the agent moved replaces the unused new token and keeps the
// one the agent still uses.
func (r *Registry) RotateToken(ctx context.Context, req RotateRequest) (Rotated, error) {
	if req.Overlap < 0 {
		return Rotated{}, fmt.Errorf("overlap must not be negative: %w", ErrInvalid)
	}
	secret, err := auth.NewToken(auth.PrefixDeployment, r.rand)
	if err != nil {
		return Rotated{}, err
	}
	now := r.clk.Now().UTC()
	var out Rotated
	detail := func(old agentTokens, t agentTokens) string {
		switch {
		case t.prevHash == "":
			return "new token issued; the deployment had no valid token, so it is installed by hand"
		case old.prevHash != "":
			return "new token issued again before the agent moved; the unused one is revoked"
		case t.prevUntil.IsZero():
			return "new token issued; the old one stays valid until the agent checks in with it"
		}
		return "new token issued; the old one stays valid until the agent checks in with it, or until " + t.prevUntil.Format(time.RFC3339)
	}
	err = r.changeTokens(ctx, req.ID, fleet.ActionRotateToken, req.By, req.ByRole, req.Reason, func(old agentTokens) (agentTokens, string, error) {
		t := agentTokens{tokenHash: auth.Hash(secret)}
		switch {
		case old.prevHash != "":
			t.prevHash = old.prevHash
		case old.tokenHash != "":
			t.prevHash = old.tokenHash
		}
		if t.prevHash != "" {
			t.offer = secret
			if req.Overlap > 0 {
				t.prevUntil = now.Add(req.Overlap)
			}
		}
		out = Rotated{Token: secret, Overlapping: t.prevHash != "", PreviousUntil: t.prevUntil}
		return t, detail(old, t), nil
	})
	if err != nil {
		return Rotated{}, err
	}
	return out, nil
}

// RevokeToken makes a deployment's agent tokens invalid at once (or only the
// previous token of a rotation). Its push connection is closed.
func (r *Registry) RevokeToken(ctx context.Context, req RevokeRequest) error {
	if strings.TrimSpace(req.Reason) == "" {
		return fmt.Errorf("say why (a reason is required; it goes into the audit trail): %w", ErrInvalid)
	}
	return r.changeTokens(ctx, req.ID, fleet.ActionRevokeToken, req.By, req.ByRole, req.Reason, func(old agentTokens) (agentTokens, string, error) {
		if !req.PreviousOnly {
			if old.tokenHash == "" && old.prevHash == "" {
				return old, "", fmt.Errorf("deployment %q has no valid token: %w", req.ID, ErrInvalid)
			}
			return agentTokens{}, "every token revoked; rotate to issue a new one", nil
		}
		if old.prevHash == "" {
			return old, "", fmt.Errorf("deployment %q has no rotation in progress, so no previous token: %w", req.ID, ErrInvalid)
		}
		return agentTokens{tokenHash: old.tokenHash}, "previous token revoked; the new one was not yet used by the agent", nil
	})
}

// changeTokens applies an operator's change to deployment id's tokens: it is
// written with its audit entry before it takes effect.
func (r *Registry) changeTokens(ctx context.Context, id string, action fleet.DeploymentAction, by, byRole, reason string,
	change func(old agentTokens) (agentTokens, string, error)) error {
	r.tokMu.Lock()
	defer r.tokMu.Unlock()
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	// The manager's own changes go first, so the audit trail keeps its order.
	if err := r.flushTokensLocked(ctx); err != nil {
		return err
	}
	r.mu.RLock()
	e, ok := r.deps[id]
	var old agentTokens
	if ok {
		old = e.agentTokens
	}
	r.mu.RUnlock()
	if !ok {
		return fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	t, detail, err := change(old)
	if err != nil {
		return err
	}
	st := store.DeploymentTokens{ID: id, TokenHash: t.tokenHash, PrevTokenHash: t.prevHash, PrevTokenUntil: t.prevUntil}
	ch := fleet.DeploymentChange{At: r.clk.Now().UTC(), By: by, ByRole: byRole, Reason: reason, Action: action, DeploymentID: id, Detail: detail}
	if err := r.st.SetDeploymentTokens(ctx, st, []fleet.DeploymentChange{ch}); err != nil {
		return err
	}
	r.mu.Lock()
	r.setTokensLocked(e, t)
	r.mu.Unlock()
	r.log.Info("deployment tokens changed", "deployment", id, "action", action, "by", by, "detail", detail)
	r.tokensChanged(id)
	return nil
}

func (r *Registry) tokensChanged(id string) {
	if r.onTokens != nil {
		r.onTokens(id)
	}
}

// retirePrevious ends deployment id's rotation once the agent used the new token
// (hash used).
func (r *Registry) retirePrevious(id, used string) {
	r.tokMu.Lock()
	r.mu.Lock()
	e, ok := r.deps[id]
	retired := ok && e.prevHash != "" && e.tokenHash == used
	if retired {
		r.setTokensLocked(e, agentTokens{tokenHash: e.tokenHash})
		r.queueTokensLocked(id, "the agent checked in with the new token")
	}
	r.mu.Unlock()
	r.tokMu.Unlock()
	if retired {
		r.log.Info("agent moved to its rotated token; the previous one is retired", "deployment", id)
		r.tokensChanged(id)
	}
}

// expireTokens retires previous tokens whose overlap deadline has passed.
func (r *Registry) expireTokens() {
	now := r.clk.Now()
	r.tokMu.Lock()
	r.mu.Lock()
	var ids []string
	for id, e := range r.rotating {
		if e.expiredLocked(now) {
			r.setTokensLocked(e, agentTokens{tokenHash: e.tokenHash})
			r.queueTokensLocked(id, "the overlap deadline passed before the agent checked in with the new token")
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	r.tokMu.Unlock()
	sort.Strings(ids)
	for _, id := range ids {
		r.log.Warn("rotation overlap ended before the agent used its new token; the previous token is retired", "deployment", id)
		r.tokensChanged(id)
	}
}

// queueTokensLocked records a change the manager made itself for the next flush;
// the caller holds r.mu.
func (r *Registry) queueTokensLocked(id, reason string) {
	ch := fleet.DeploymentChange{At: r.clk.Now().UTC(), By: Actor, Reason: reason, Action: fleet.ActionRetireToken, DeploymentID: id,
		Detail: "previous token retired"}
	r.pendMu.Lock()
	r.pendTokens[id] = append(r.pendTokens[id], ch)
	r.pendMu.Unlock()
}

// flushTokensLocked writes the tokens the manager changed itself; the caller
// holds flushMu. What fails to write stays pending.
func (r *Registry) flushTokensLocked(ctx context.Context) error {
	r.pendMu.Lock()
	pend := r.pendTokens
	r.pendTokens = map[string][]fleet.DeploymentChange{}
	r.pendMu.Unlock()
	var firstErr error
	for id, chs := range pend {
		r.mu.RLock()
		e, ok := r.deps[id]
		var st store.DeploymentTokens
		if ok {
			st = e.storedTokens()
		}
		r.mu.RUnlock()
		if !ok {
			continue // deleted since; its deletion is audited
		}
		if err := r.st.SetDeploymentTokens(ctx, st, chs); err != nil {
			r.pendMu.Lock()
			r.pendTokens[id] = append(chs, r.pendTokens[id]...)
			r.pendMu.Unlock()
			if firstErr == nil {
				firstErr = fmt.Errorf("write tokens of deployment %s: %w", id, err)
			}
		}
	}
	return firstErr
}

// DeleteDeployment removes a deployment: its tokens stop working at once, its
// push connection is closed and it leaves every list. Its status history, pin
// and token audit trail and telemetry stay (the telemetry until retention).
// Reason is required.
func (r *Registry) DeleteDeployment(ctx context.Context, id, by, byRole, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("say why (a reason is required; it goes into the audit trail): %w", ErrInvalid)
	}
	r.tokMu.Lock()
	defer r.tokMu.Unlock()
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	if err := r.flushTokensLocked(ctx); err != nil {
		return err
	}
	r.mu.RLock()
	e, ok := r.deps[id]
	var busy string
	if ok {
		e.mu.Lock()
		busy = e.changing
		e.mu.Unlock()
	}
	r.mu.RUnlock()
	if !ok {
		return fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	if busy != "" {
		return fmt.Errorf("deployment %q is part of pin change %s in progress; try again when it is done: %w", id, busy, ErrConflict)
	}
	ch := fleet.DeploymentChange{At: r.clk.Now().UTC(), By: by, ByRole: byRole, Reason: reason, Action: fleet.ActionDelete, DeploymentID: id,
		Detail: "deployment deleted with its tokens; its history and telemetry are kept"}
	if err := r.st.DeleteDeployment(ctx, id, ch); err != nil {
		return err
	}
	r.mu.Lock()
	r.removeLocked(e)
	r.mu.Unlock()
	r.log.Info("deployment deleted", "deployment", id, "by", by)
	r.tokensChanged(id)
	return nil
}

// DeploymentChanges returns up to limit token and deletion audit entries, newest
// first, of one deployment (deleted or not) or of all.
func (r *Registry) DeploymentChanges(ctx context.Context, id string, limit int) ([]fleet.DeploymentChange, error) {
	// The manager's own pending changes first, so the trail is complete.
	if err := r.Flush(ctx); err != nil {
		return nil, err
	}
	return r.st.ListDeploymentChanges(ctx, id, limit)
}
