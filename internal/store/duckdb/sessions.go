package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/periscope-dev/periscope/internal/store"
)

// CreateSession implements store.Sessions. One process owns a DuckDB
// database, so sessionsMu serialising sign-ins is enough for exact counts
// (DuckDB's snapshot isolation alone would let two concurrent sign-ins both
// see room for one).
func (s *Store) CreateSession(ctx context.Context, r store.SessionRecord, lim store.SessionLimits) (int, error) {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	var ended int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if lim.PerToken > 0 {
			// Room for r among its token's sessions: keep the newest PerToken-1.
			res, err := tx.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE hash IN (
				SELECT hash FROM dashboard_sessions WHERE token_id = ? ORDER BY used_at DESC, hash OFFSET ?)`, r.TokenID, lim.PerToken-1)
			if err != nil {
				return err
			}
			ended, _ = res.RowsAffected()
		}
		if lim.Total > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM dashboard_sessions`).Scan(&n); err != nil {
				return err
			}
			if n >= lim.Total {
				return store.ErrSessionLimit
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO dashboard_sessions (hash, token_id, created_at, used_at) VALUES (?, ?, ?, ?)`,
			r.Hash, r.TokenID, r.CreatedAt.UTC(), r.UsedAt.UTC())
		return err
	})
	err = s.checkWrite(err)
	if isConstraint(err) {
		return 0, fmt.Errorf("create dashboard session: %w", store.ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("create dashboard session: %w", err)
	}
	return int(ended), nil
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, hash string) (store.SessionRecord, error) {
	r := store.SessionRecord{Hash: hash}
	err := s.db.QueryRowContext(ctx, `SELECT token_id, created_at, used_at FROM dashboard_sessions WHERE hash = ?`, hash).
		Scan(&r.TokenID, &r.CreatedAt, &r.UsedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return store.SessionRecord{}, fmt.Errorf("get dashboard session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.SessionRecord{}, fmt.Errorf("get dashboard session: %w", err)
	}
	r.CreatedAt, r.UsedAt = r.CreatedAt.UTC(), r.UsedAt.UTC()
	return r, nil
}

// TouchSession implements store.Sessions.
func (s *Store) TouchSession(ctx context.Context, hash string, at time.Time) error {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	var n int
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM dashboard_sessions WHERE hash = ?`, hash).Scan(&n); err != nil || n == 0 {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE dashboard_sessions SET used_at = ? WHERE hash = ? AND used_at < ?`, at.UTC(), hash, at.UTC())
		return err
	})
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("touch dashboard session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touch dashboard session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	_, err := s.db.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE hash = ?`, hash)
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("delete dashboard session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions implements store.Sessions.
func (s *Store) DeleteExpiredSessions(ctx context.Context, usedBefore, createdBefore time.Time) (int64, error) {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	res, err := s.db.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE used_at < ? OR created_at < ?`, usedBefore.UTC(), createdBefore.UTC())
	if err := s.checkWrite(err); err != nil {
		return 0, fmt.Errorf("delete expired dashboard sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
