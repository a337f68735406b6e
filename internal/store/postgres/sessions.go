package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/store"
)

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, r store.SessionRecord, max int) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO dashboard_sessions (hash, token_id, created_at, used_at) VALUES ($1, $2, $3, $4)`,
			r.Hash, r.TokenID, r.CreatedAt.UTC(), r.UsedAt.UTC()); err != nil {
			return err
		}
		if max <= 0 {
			return nil
		}
		// Two replicas trimming at once may both delete a row; that is fine,
		// each leaves at most max.
		_, err := tx.Exec(ctx, `DELETE FROM dashboard_sessions WHERE hash IN (
			SELECT hash FROM dashboard_sessions ORDER BY used_at DESC, hash OFFSET $1)`, max)
		return err
	})
	err = s.checkWrite(err)
	if isConflict(err) {
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
	err := s.pool.QueryRow(ctx, `SELECT token_id, created_at, used_at FROM dashboard_sessions WHERE hash = $1`, hash).
		Scan(&r.TokenID, &r.CreatedAt, &r.UsedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.SessionRecord{}, fmt.Errorf("get dashboard session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.SessionRecord{}, fmt.Errorf("get dashboard session: %w", err)
	}
	r.CreatedAt, r.UsedAt = r.CreatedAt.UTC(), r.UsedAt.UTC()
	return r, nil
}

// TouchSession implements store.Sessions: GREATEST keeps a slower replica's
// older touch from moving the session back.
func (s *Store) TouchSession(ctx context.Context, hash string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE dashboard_sessions SET used_at = GREATEST(used_at, $2) WHERE hash = $1`, hash, at.UTC())
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("touch dashboard session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("touch dashboard session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE hash = $1`, hash)
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("delete dashboard session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions implements store.Sessions.
func (s *Store) DeleteExpiredSessions(ctx context.Context, usedBefore, createdBefore time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE used_at < $1 OR created_at < $2`, usedBefore.UTC(), createdBefore.UTC())
	if err := s.checkWrite(err); err != nil {
		return 0, fmt.Errorf("delete expired dashboard sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}
