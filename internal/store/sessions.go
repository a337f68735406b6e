package store

import (
	"context"
	"time"
)

// SessionRecord is a signed-in dashboard browser as stored. The store holds
// only a hash of the cookie's value, so reading the database signs nobody in.
// It lives in the store, not in a manager's memory, so that a browser signed
// in through one replica is signed in on every replica, and signing out on one
// ends it on all.
type SessionRecord struct {
	// Hash identifies the session: the hex SHA-256 of its cookie's value.
	Hash string
	// TokenID names the API token the browser signed in with (the dashboard
	// records its id and a fingerprint of its hash); the session lasts no
	// longer than the token.
	TokenID   string
	CreatedAt time.Time
	UsedAt    time.Time
}

// Sessions persists dashboard sessions. Every method is safe for concurrent
// use, by several replicas on one database too.
type Sessions interface {
	// CreateSession stores r and, in the same transaction, removes the
	// sessions used least recently beyond the newest max (max <= 0: no bound),
	// so the table stays bounded whatever sign-ins arrive. ErrConflict if a
	// session with r.Hash exists.
	CreateSession(ctx context.Context, r SessionRecord, max int) error
	// GetSession returns the session of hash; ErrNotFound if there is none.
	GetSession(ctx context.Context, hash string) (SessionRecord, error)
	// TouchSession moves the session's UsedAt forward to at (never back);
	// ErrNotFound if there is no such session.
	TouchSession(ctx context.Context, hash string, at time.Time) error
	// DeleteSession ends a session; ending one that is gone is no error.
	DeleteSession(ctx context.Context, hash string) error
	// DeleteExpiredSessions removes the sessions last used before usedBefore
	// or created before createdBefore, and returns how many it removed.
	DeleteExpiredSessions(ctx context.Context, usedBefore, createdBefore time.Time) (int64, error)
}
