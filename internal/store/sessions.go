package store

import (
	"context"
	"errors"
	"time"
)

// ErrSessionLimit means CreateSession refused a new session because the store
// already holds SessionLimits.Total sessions; nothing was written.
var ErrSessionLimit = errors.New("too many dashboard sessions")

// SessionLimits bound the sessions CreateSession keeps. Zero or less means no
// bound.
type SessionLimits struct {
	// PerToken bounds the sessions of one TokenID: a new session past it ends
	// the sessions of that token used least recently, and no other token's.
	PerToken int
	// Total bounds all sessions: a new session past it is refused with
	// ErrSessionLimit, after the PerToken bound has made what room it can.
	Total int
}

// SessionRecord is a signed-in dashboard browser as stored. The store holds
// only a hash of the cookie's value, so reading the database signs nobody in.
// It lives in the store, not in a manager's memory, so that a browser signed
// in through one replica is signed in on every replica, and signing out on one
// ends it on all.
type SessionRecord struct {
	// Hash identifies the session: the hex SHA-256 of its cookie's value.
	Hash string
	// TokenID names the API token the browser signed in with: its id, then
	// "/" and whatever else the caller records of it (the dashboard: a
	// fingerprint of its hash). The session lasts no longer than the token:
	// DeleteAPIToken ends the sessions whose TokenID starts with its id and "/".
	TokenID   string
	CreatedAt time.Time
	UsedAt    time.Time
}

// Sessions persists dashboard sessions. Every method is safe for concurrent
// use, by several replicas on one database too.
type Sessions interface {
	// CreateSession stores r within lim and returns how many sessions of
	// r.TokenID it ended to stay within lim.PerToken. The check and the
	// ending are one transaction, serialised with every other CreateSession
	// on the same database (every replica's), so neither bound is passed
	// however sign-ins interleave. ErrSessionLimit (nothing written) if
	// lim.Total sessions would remain besides r; ErrConflict if a session with
	// r.Hash exists.
	CreateSession(ctx context.Context, r SessionRecord, lim SessionLimits) (ended int, err error)
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
