package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/periscope-dev/periscope/internal/store"
)

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, r store.SessionRecord, max int) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO dashboard_sessions (hash, token_id, created_at, used_at) VALUES (?, ?, ?, ?)`,
			r.Hash, r.TokenID, r.CreatedAt.UTC(), r.UsedAt.UTC()); err != nil {
			return err
		}
		if max <= 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE hash IN (
			SELECT hash FROM dashboard_sessions ORDER BY used_at DESC, hash OFFSET ?)`, max)
		return err
	})
	err = s.checkWrite(err)
	if isConstraint(err) {
		return fmt.Errorf("create dashboard session: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create dashboard session: %w", err)
	}
	return nil
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
	_, err := s.db.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE hash = ?`, hash)
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("delete dashboard session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions implements store.Sessions.
func (s *Store) DeleteExpiredSessions(ctx context.Context, usedBefore, createdBefore time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE used_at < ? OR created_at < ?`, usedBefore.UTC(), createdBefore.UTC())
	if err := s.checkWrite(err); err != nil {
		return 0, fmt.Errorf("delete expired dashboard sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
