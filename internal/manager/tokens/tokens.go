// Package tokens manages operator API tokens: issues them (shown once), keeps
// their hashes in the store and a cached copy in memory, and revokes them. Every
// creation and revocation goes into the audit log with who did it.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/store"
)

// Manager is the actor the audit log names for the manager's own token changes
// (the admin token it bootstraps), when by is the zero token.
const Manager = "periscope"

// Store is the persistence the keyring needs.
type Store interface {
	CreateAPIToken(ctx context.Context, t auth.APIToken) error
	ListAPITokens(ctx context.Context) ([]auth.APIToken, error)
	DeleteAPIToken(ctx context.Context, id string) error
	AppendAudit(ctx context.Context, entries []store.AuditEntry) error
}

// Keyring answers "which token is this?" from memory. Load it before use.
type Keyring struct {
	st   Store
	rand io.Reader
	clk  clock.Clock
	mu   sync.RWMutex
	byH  map[string]auth.APIToken
	// gen counts the changes made here, so a Load whose list may predate
	// one does not undo it.
	gen uint64
}

// New returns a keyring over st; rand is the token randomness (crypto/rand when
// nil), clk dates the audit entries (the wall clock when nil).
func New(st Store, rand io.Reader, clk clock.Clock) *Keyring {
	return &Keyring{st: st, rand: rand, clk: clock.Or(clk), byH: map[string]auth.APIToken{}}
}

// audit appends the entry of a token change by by (the zero token: the manager).
func (k *Keyring) audit(ctx context.Context, by auth.APIToken, action string, t auth.APIToken) error {
	e := store.AuditEntry{At: k.clk.Now().UTC(), Actor: by.Name, ActorRole: string(by.Role), Action: action, Target: t.Name,
		Outcome: store.OutcomeSucceeded, Detail: fmt.Sprintf(`{"token_id":%q,"role":%q}`, t.ID, t.Role)}
	if by.Name == "" {
		e.Actor, e.ActorRole = Manager, ""
	}
	return k.st.AppendAudit(ctx, []store.AuditEntry{e})
}

// Load reads every token from the store.
func (k *Keyring) Load(ctx context.Context) error {
	k.mu.RLock()
	gen := k.gen
	k.mu.RUnlock()
	ts, err := k.st.ListAPITokens(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen != gen {
		// A token was added or revoked here while the list was read: the
		// list may predate it, and would undo it. The next Load reads again.
		return nil
	}
	k.byH = map[string]auth.APIToken{}
	for _, t := range ts {
		k.byH[t.Hash] = t
	}
	return nil
}

// Lookup returns the token record a presented token belongs to.
func (k *Keyring) Lookup(token string) (auth.APIToken, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	t, ok := k.byH[auth.Hash(token)]
	return t, ok
}

// Token returns the record of the token with this id while it is not revoked.
func (k *Keyring) Token(id string) (auth.APIToken, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, t := range k.byH {
		if t.ID == id {
			return t, true
		}
	}
	return auth.APIToken{}, false
}

// Create issues a new token on behalf of by; the returned string is the only
// copy of it.
func (k *Keyring) Create(ctx context.Context, by auth.APIToken, name string, role auth.Role) (string, auth.APIToken, error) {
	secret, err := auth.NewToken(auth.PrefixAPI, k.rand)
	if err != nil {
		return "", auth.APIToken{}, err
	}
	id, err := auth.NewToken("t-", k.rand)
	if err != nil {
		return "", auth.APIToken{}, err
	}
	t, err := k.Add(ctx, by, id[:12], name, role, secret)
	return secret, t, err
}

// Add stores a token whose secret the caller chose (the configured admin
// token), on behalf of by. The store has no transaction spanning the token and
// its audit entry, so a token whose entry cannot be written is removed again:
// no token exists that the audit log does not name.
func (k *Keyring) Add(ctx context.Context, by auth.APIToken, id, name string, role auth.Role, secret string) (auth.APIToken, error) {
	t := auth.APIToken{ID: id, Name: name, Role: role, Hash: auth.Hash(secret)}
	if err := k.st.CreateAPIToken(ctx, t); err != nil {
		return auth.APIToken{}, fmt.Errorf("create token %q: %w", name, err)
	}
	if err := k.audit(ctx, by, store.ActionTokenCreate, t); err != nil {
		err = fmt.Errorf("create token %q: audit: %w", name, err)
		if derr := k.st.DeleteAPIToken(context.WithoutCancel(ctx), id); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove the unaudited token %s: %w", id, derr))
		}
		return auth.APIToken{}, err
	}
	k.mu.Lock()
	k.byH[t.Hash] = t
	k.gen++
	k.mu.Unlock()
	return t, nil
}

// List returns every token record (never the secrets).
func (k *Keyring) List() []auth.APIToken {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]auth.APIToken, 0, len(k.byH))
	for _, t := range k.byH {
		out = append(out, t)
	}
	return out
}

// Delete revokes a token by id on behalf of by. The token is revoked even when
// its audit entry cannot be written, which the error then says: a revocation
// must not wait on the log.
func (k *Keyring) Delete(ctx context.Context, by auth.APIToken, id string) error {
	if err := k.st.DeleteAPIToken(ctx, id); err != nil {
		return err
	}
	revoked := auth.APIToken{ID: id}
	k.mu.Lock()
	k.gen++
	for h, t := range k.byH {
		if t.ID == id {
			revoked = t
			delete(k.byH, h)
		}
	}
	k.mu.Unlock()
	if err := k.audit(ctx, by, store.ActionTokenRevoke, revoked); err != nil {
		return fmt.Errorf("token %s revoked, but its audit entry was not written: %w", id, err)
	}
	return nil
}
