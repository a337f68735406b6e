package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/store"
)

var _ store.Rollouts = (*Store)(nil)

// CreateRollout implements store.Rollouts.
func (s *Store) CreateRollout(ctx context.Context, r store.RolloutRecord, entries []store.AuditEntry) error {
	if r.Version != 1 {
		return fmt.Errorf("create rollout %s: version %d, want 1", r.ID, r.Version)
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO rollouts (id, stack, release, phase, done, started_at, updated_at, version, state)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			r.ID, r.Stack, r.Release, r.Phase, r.Done, r.StartedAt.UTC(), r.UpdatedAt.UTC(), r.Version, r.State)
		if isConflict(err) {
			return fmt.Errorf("rollout %s exists: %w", r.ID, store.ErrConflict)
		}
		if err != nil {
			return err
		}
		return insertAudit(ctx, tx, entries)
	})
	if err != nil {
		return fmt.Errorf("create rollout %s: %w", r.ID, err)
	}
	return nil
}

// UpdateRollout implements store.Rollouts with a conditional update, so of
// two replicas that read the same version only one writes.
func (s *Store) UpdateRollout(ctx context.Context, r store.RolloutRecord, entries []store.AuditEntry) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE rollouts SET phase = $2, done = $3, updated_at = $4, version = $5, state = $6
			WHERE id = $1 AND version = $5 - 1`, r.ID, r.Phase, r.Done, r.UpdatedAt.UTC(), r.Version, r.State)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var version int64
			if err := tx.QueryRow(ctx, `SELECT version FROM rollouts WHERE id = $1`, r.ID).Scan(&version); errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("no rollout %s: %w", r.ID, store.ErrNotFound)
			} else if err != nil {
				return err
			}
			return fmt.Errorf("rollout %s is at version %d, not %d: %w", r.ID, version, r.Version-1, store.ErrConflict)
		}
		return insertAudit(ctx, tx, entries)
	})
	if err != nil {
		return fmt.Errorf("update rollout %s: %w", r.ID, err)
	}
	return nil
}

// GetRollout implements store.Rollouts.
func (s *Store) GetRollout(ctx context.Context, id string) (store.RolloutRecord, error) {
	r, err := store.ScanRollout(s.pool.QueryRow(ctx, `SELECT `+store.RolloutColumns+` FROM rollouts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("rollout %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read rollout %s: %w", id, err)
	}
	return r, nil
}

// ListRollouts implements store.Rollouts.
func (s *Store) ListRollouts(ctx context.Context, f store.RolloutFilter) ([]store.RolloutRecord, error) {
	q, args := store.RolloutsQuery(f, func(n int) string { return fmt.Sprintf("$%d", n) })
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.RolloutRecord, error) { return store.ScanRollout(row) })
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return out, nil
}

// PutRolloutPlan implements store.Rollouts.
func (s *Store) PutRolloutPlan(ctx context.Context, p store.RolloutPlanRecord, entry store.AuditEntry) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO rollout_plans (stack, plan, updated_at, updated_by) VALUES ($1, $2, $3, $4)
			ON CONFLICT (stack) DO UPDATE SET plan = excluded.plan, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			p.Stack, p.Plan, p.UpdatedAt.UTC(), p.UpdatedBy); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []store.AuditEntry{entry})
	})
	if err != nil {
		return fmt.Errorf("set the rollout plan of %s: %w", p.Stack, err)
	}
	return nil
}

// DeleteRolloutPlan implements store.Rollouts.
func (s *Store) DeleteRolloutPlan(ctx context.Context, stack string, entry store.AuditEntry) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM rollout_plans WHERE stack = $1`, stack)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("no rollout plan for %s: %w", stack, store.ErrNotFound)
		}
		return insertAudit(ctx, tx, []store.AuditEntry{entry})
	})
	if err != nil {
		return fmt.Errorf("remove the rollout plan of %s: %w", stack, err)
	}
	return nil
}

// ListRolloutPlans implements store.Rollouts.
func (s *Store) ListRolloutPlans(ctx context.Context) ([]store.RolloutPlanRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+store.RolloutPlanColumns+` FROM rollout_plans ORDER BY stack`)
	if err != nil {
		return nil, fmt.Errorf("list rollout plans: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.RolloutPlanRecord, error) { return store.ScanRolloutPlan(row) })
	if err != nil {
		return nil, fmt.Errorf("list rollout plans: %w", err)
	}
	return out, nil
}

// PutUpdateWindows implements store.Rollouts.
func (s *Store) PutUpdateWindows(ctx context.Context, w store.UpdateWindowsRecord, entry store.AuditEntry) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO update_windows (kind, owner, windows, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (kind, owner) DO UPDATE SET windows = excluded.windows, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			w.Kind, w.Owner, w.Windows, w.UpdatedAt.UTC(), w.UpdatedBy); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []store.AuditEntry{entry})
	})
	if err != nil {
		return fmt.Errorf("set the update windows of %s %s: %w", w.Kind, w.Owner, err)
	}
	return nil
}

// DeleteUpdateWindows implements store.Rollouts.
func (s *Store) DeleteUpdateWindows(ctx context.Context, kind, owner string, entry store.AuditEntry) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM update_windows WHERE kind = $1 AND owner = $2`, kind, owner)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("no update windows for %s %s: %w", kind, owner, store.ErrNotFound)
		}
		return insertAudit(ctx, tx, []store.AuditEntry{entry})
	})
	if err != nil {
		return fmt.Errorf("remove the update windows of %s %s: %w", kind, owner, err)
	}
	return nil
}

// ListUpdateWindows implements store.Rollouts.
func (s *Store) ListUpdateWindows(ctx context.Context) ([]store.UpdateWindowsRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT kind, owner, windows, updated_at, updated_by FROM update_windows ORDER BY kind, owner`)
	if err != nil {
		return nil, fmt.Errorf("list update windows: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.UpdateWindowsRecord, error) {
		var w store.UpdateWindowsRecord
		err := row.Scan(&w.Kind, &w.Owner, &w.Windows, &w.UpdatedAt, &w.UpdatedBy)
		w.UpdatedAt = w.UpdatedAt.UTC()
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("list update windows: %w", err)
	}
	return out, nil
}
