// Package rolloutstest holds fakes for tests that drive the rollout engine
// from outside it (the API, the CLI): a fleet that pins like the registry and
// a keyring with one API token per role.
package rolloutstest

import (
	"context"
	"errors"
	"sync"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
)

// Fleet is a rollouts.Fleet, Pinner and Notifier over deployments held in
// memory. It is safe for concurrent use.
type Fleet struct {
	mu      sync.Mutex
	deps    map[string]*rollouts.Member
	notices []rollouts.Notice
}

// NewFleet returns a fleet of ms.
func NewFleet(ms ...rollouts.Member) *Fleet {
	f := &Fleet{deps: map[string]*rollouts.Member{}}
	for i := range ms {
		m := ms[i]
		f.deps[m.ID] = &m
	}
	return f
}

// Members implements rollouts.Fleet.
func (f *Fleet) Members(stack string) []rollouts.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []rollouts.Member
	for _, m := range f.deps {
		if stack == "" || m.Stack == stack {
			out = append(out, *m)
		}
	}
	return out
}

// Pin implements rollouts.Pinner.
func (f *Fleet) Pin(_ context.Context, ids []string, release, actor, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if d := f.deps[id]; d != nil {
			d.Pin = &fleet.Pin{Release: release, By: actor, Reason: reason}
		}
	}
	return nil
}

// Unpin implements rollouts.Pinner.
func (f *Fleet) Unpin(_ context.Context, ids []string, _, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if d := f.deps[id]; d != nil {
			d.Pin = nil
		}
	}
	return nil
}

// NotifyRollout implements rollouts.Notifier.
func (f *Fleet) NotifyRollout(_ context.Context, n rollouts.Notice) {
	f.mu.Lock()
	f.notices = append(f.notices, n)
	f.mu.Unlock()
}

// Notices returns the notices sent so far.
func (f *Fleet) Notices() []rollouts.Notice {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rollouts.Notice(nil), f.notices...)
}

// Keyring knows one API token per role: the secret "psk_<role>" is the token
// "<role>-token" of that role.
type Keyring struct{}

// Lookup implements api.Keyring.
func (Keyring) Lookup(secret string) (auth.APIToken, bool) {
	for _, r := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		if secret == "psk_"+string(r) {
			return auth.APIToken{ID: string(r), Name: string(r) + "-token", Role: r}, true
		}
	}
	return auth.APIToken{}, false
}

var errFixed = errors.New("the test keyring's tokens are fixed")

// Create implements api.Keyring; the test keyring's tokens are fixed.
func (Keyring) Create(context.Context, auth.APIToken, string, auth.Role) (string, auth.APIToken, error) {
	return "", auth.APIToken{}, errFixed
}

// List implements api.Keyring.
func (Keyring) List() []auth.APIToken { return nil }

// Delete implements api.Keyring; the test keyring's tokens are fixed.
func (Keyring) Delete(context.Context, auth.APIToken, string) error { return errFixed }
