// Package tokens manages operator API tokens: issues them (shown once), keeps
// their hashes in the store and a cached copy in memory, and revokes them.
package tokens

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/periscope-dev/periscope/internal/auth"
)

// Store is the persistence the keyring needs.
type Store interface {
	CreateAPIToken(ctx context.Context, t auth.APIToken) error
	ListAPITokens(ctx context.Context) ([]auth.APIToken, error)
	DeleteAPIToken(ctx context.Context, id string) error
}

// Keyring answers "which token is this?" from memory. Load it before use.
type Keyring struct {
	st   Store
	rand io.Reader
	mu   sync.RWMutex
	byH  map[string]auth.APIToken
}

// New returns a keyring over st; rand is the token randomness (crypto/rand when nil).
func New(st Store, rand io.Reader) *Keyring {
	return &Keyring{st: st, rand: rand, byH: map[string]auth.APIToken{}}
}

// Load reads every token from the store.
func (k *Keyring) Load(ctx context.Context) error {
	ts, err := k.st.ListAPITokens(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
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

// Create issues a new token; the returned string is the only copy of it.
func (k *Keyring) Create(ctx context.Context, name string, role auth.Role) (string, auth.APIToken, error) {
	secret, err := auth.NewToken(auth.PrefixAPI, k.rand)
	if err != nil {
		return "", auth.APIToken{}, err
	}
	id, err := auth.NewToken("t-", k.rand)
	if err != nil {
		return "", auth.APIToken{}, err
	}
	t, err := k.Add(ctx, id[:12], name, role, secret)
	return secret, t, err
}

// Add stores a token whose secret the caller chose (the configured admin token).
func (k *Keyring) Add(ctx context.Context, id, name string, role auth.Role, secret string) (auth.APIToken, error) {
	t := auth.APIToken{ID: id, Name: name, Role: role, Hash: auth.Hash(secret)}
	if err := k.st.CreateAPIToken(ctx, t); err != nil {
		return auth.APIToken{}, fmt.Errorf("create token %q: %w", name, err)
	}
	k.mu.Lock()
	k.byH[t.Hash] = t
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

// Delete revokes a token by id.
func (k *Keyring) Delete(ctx context.Context, id string) error {
	if err := k.st.DeleteAPIToken(ctx, id); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for h, t := range k.byH {
		if t.ID == id {
			delete(k.byH, h)
		}
	}
	return nil
}
