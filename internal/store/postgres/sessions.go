package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/store"
)

// CreateSession implements store.Sessions. The table lock serialises sign-ins
// across replicas (it conflicts with itself, not with reads); under READ
// COMMITTED each statement after it sees what the previous holder committed,
// so the counts below are exact. Touches and sign-outs wait for it only for
// the few statements of one sign-in.
func (s *Store) CreateSession(ctx context.Context, r store.SessionRecord, lim store.SessionLimits) (int, error) {
	var ended int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE dashboard_sessions IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		if lim.PerToken > 0 {
			// Room for r among its token's sessions: keep the newest PerToken-1.
			tag, err := tx.Exec(ctx, `DELETE FROM dashboard_sessions WHERE hash IN (
				SELECT hash FROM dashboard_sessions WHERE token_id = $1 ORDER BY used_at DESC, hash OFFSET $2)`, r.TokenID, lim.PerToken-1)
			if err != nil {
				return err
			}
			ended = tag.RowsAffected()
		}
		if lim.Total > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM dashboard_sessions`).Scan(&n); err != nil {
				return err
			}
			if n >= lim.Total {
				return store.ErrSessionLimit
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO dashboard_sessions (hash, token_id, created_at, used_at) VALUES ($1, $2, $3, $4)`,
			r.Hash, r.TokenID, r.CreatedAt.UTC(), r.UsedAt.UTC())
		return err
	})
	if isConflict(err) {
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
