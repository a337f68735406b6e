package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/periscope-dev/periscope/internal/store"
)

var _ store.Rollouts = (*Store)(nil)

// CreateRollout implements store.Rollouts.
func (s *Store) CreateRollout(ctx context.Context, r store.RolloutRecord, entries []store.AuditEntry) error {
	if r.Version != 1 {
		return fmt.Errorf("create rollout %s: version %d, want 1", r.ID, r.Version)
	}
	err := s.checkWrite(s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO rollouts (id, stack, release, phase, done, started_at, updated_at, version, state)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Stack, r.Release, r.Phase, r.Done, r.StartedAt.UTC(), r.UpdatedAt.UTC(), r.Version, string(r.State))
		if isConstraint(err) {
			return fmt.Errorf("rollout %s exists: %w", r.ID, store.ErrConflict)
		}
		if err != nil {
			return err
		}
		return insertAudits(ctx, tx, entries)
	}))
	if err != nil {
		return fmt.Errorf("create rollout %s: %w", r.ID, err)
	}
	return nil
}

// UpdateRollout implements store.Rollouts.
func (s *Store) UpdateRollout(ctx context.Context, r store.RolloutRecord, entries []store.AuditEntry) error {
	err := s.checkWrite(s.tx(ctx, func(tx *sql.Tx) error {
		var version int64
		err := tx.QueryRowContext(ctx, `SELECT version FROM rollouts WHERE id = ?`, r.ID).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no rollout %s: %w", r.ID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if version != r.Version-1 {
			return fmt.Errorf("rollout %s is at version %d, not %d: %w", r.ID, version, r.Version-1, store.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE rollouts SET phase = ?, done = ?, updated_at = ?, version = ?, state = ? WHERE id = ?`,
			r.Phase, r.Done, r.UpdatedAt.UTC(), r.Version, string(r.State), r.ID); err != nil {
			return err
		}
		return insertAudits(ctx, tx, entries)
	}))
	if err != nil {
		return fmt.Errorf("update rollout %s: %w", r.ID, err)
	}
	return nil
}

// GetRollout implements store.Rollouts.
func (s *Store) GetRollout(ctx context.Context, id string) (store.RolloutRecord, error) {
	r, err := store.ScanRollout(s.db.QueryRowContext(ctx, `SELECT `+store.RolloutColumns+` FROM rollouts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("rollout %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read rollout %s: %w", id, err)
	}
	return r, nil
}

// ListRollouts implements store.Rollouts.
func (s *Store) ListRollouts(ctx context.Context, f store.RolloutFilter) ([]store.RolloutRecord, error) {
	q, args := store.RolloutsQuery(f, func(int) string { return "?" })
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	defer rows.Close()
	var out []store.RolloutRecord
	for rows.Next() {
		r, err := store.ScanRollout(rows)
		if err != nil {
			return nil, fmt.Errorf("list rollouts: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return out, nil
}

// PutRolloutPlan implements store.Rollouts.
func (s *Store) PutRolloutPlan(ctx context.Context, p store.RolloutPlanRecord, entry store.AuditEntry) error {
	err := s.checkWrite(s.tx(ctx, func(tx *sql.Tx) error {
		// Delete and insert rather than upsert: DuckDB's ON CONFLICT rewrites
		// the key, which is what it does worst.
		if _, err := tx.ExecContext(ctx, `DELETE FROM rollout_plans WHERE stack = ?`, p.Stack); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO rollout_plans (stack, plan, updated_at, updated_by) VALUES (?, ?, ?, ?)`,
			p.Stack, string(p.Plan), p.UpdatedAt.UTC(), p.UpdatedBy); err != nil {
			return err
		}
		return insertAudits(ctx, tx, []store.AuditEntry{entry})
	}))
	if err != nil {
		return fmt.Errorf("set the rollout plan of %s: %w", p.Stack, err)
	}
	return nil
}

// DeleteRolloutPlan implements store.Rollouts.
func (s *Store) DeleteRolloutPlan(ctx context.Context, stack string, entry store.AuditEntry) error {
	err := s.checkWrite(s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM rollout_plans WHERE stack = ?`, stack)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no rollout plan for %s: %w", stack, store.ErrNotFound)
		}
		return insertAudits(ctx, tx, []store.AuditEntry{entry})
	}))
	if err != nil {
		return fmt.Errorf("remove the rollout plan of %s: %w", stack, err)
	}
	return nil
}

// ListRolloutPlans implements store.Rollouts.
func (s *Store) ListRolloutPlans(ctx context.Context) ([]store.RolloutPlanRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+store.RolloutPlanColumns+` FROM rollout_plans ORDER BY stack`)
	if err != nil {
		return nil, fmt.Errorf("list rollout plans: %w", err)
	}
	defer rows.Close()
	var out []store.RolloutPlanRecord
	for rows.Next() {
		p, err := store.ScanRolloutPlan(rows)
		if err != nil {
			return nil, fmt.Errorf("list rollout plans: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rollout plans: %w", err)
	}
	return out, nil
}

// PutUpdateWindows implements store.Rollouts.
func (s *Store) PutUpdateWindows(ctx context.Context, w store.UpdateWindowsRecord, entry store.AuditEntry) error {
	err := s.checkWrite(s.tx(ctx, func(tx *sql.Tx) error {
		// Delete and insert rather than upsert, as PutRolloutPlan does.
		if _, err := tx.ExecContext(ctx, `DELETE FROM update_windows WHERE kind = ? AND owner = ?`, w.Kind, w.Owner); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO update_windows (kind, owner, windows, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)`,
			w.Kind, w.Owner, string(w.Windows), w.UpdatedAt.UTC(), w.UpdatedBy); err != nil {
			return err
		}
		return insertAudits(ctx, tx, []store.AuditEntry{entry})
	}))
	if err != nil {
		return fmt.Errorf("set the update windows of %s %s: %w", w.Kind, w.Owner, err)
	}
	return nil
}

// DeleteUpdateWindows implements store.Rollouts.
func (s *Store) DeleteUpdateWindows(ctx context.Context, kind, owner string, entry store.AuditEntry) error {
	err := s.checkWrite(s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM update_windows WHERE kind = ? AND owner = ?`, kind, owner)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no update windows for %s %s: %w", kind, owner, store.ErrNotFound)
		}
		return insertAudits(ctx, tx, []store.AuditEntry{entry})
	}))
	if err != nil {
		return fmt.Errorf("remove the update windows of %s %s: %w", kind, owner, err)
	}
	return nil
}

// ListUpdateWindows implements store.Rollouts.
func (s *Store) ListUpdateWindows(ctx context.Context) ([]store.UpdateWindowsRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kind, owner, windows, updated_at, updated_by FROM update_windows ORDER BY kind, owner`)
	if err != nil {
		return nil, fmt.Errorf("list update windows: %w", err)
	}
	defer rows.Close()
	var out []store.UpdateWindowsRecord
	for rows.Next() {
		var (
			w  store.UpdateWindowsRecord
			ws string
			at time.Time
		)
		if err := rows.Scan(&w.Kind, &w.Owner, &ws, &at, &w.UpdatedBy); err != nil {
			return nil, fmt.Errorf("list update windows: %w", err)
		}
		w.Windows, w.UpdatedAt = []byte(ws), at.UTC()
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list update windows: %w", err)
	}
	return out, nil
}

// insertAudits appends entries inside tx, one by one (they are few).
func insertAudits(ctx context.Context, tx *sql.Tx, entries []store.AuditEntry) error {
	for _, e := range entries {
		if err := insertAudit(ctx, tx, e); err != nil {
			return err
		}
	}
	return nil
}
