package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// tx runs fn in a database/sql transaction, committing when it returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// appendChanges writes deployment changes to their trail and to the audit log;
// DeleteDeployment calls it before the deletion so the entry names the
// deployment's customer.
func appendChanges(ctx context.Context, tx *sql.Tx, changes []fleet.DeploymentChange) error {
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO deployment_changes (changed_at, actor, reason, action, deployment_id, detail) VALUES (?, ?, ?, ?, ?, ?)`,
			c.At.UTC(), c.By, c.Reason, string(c.Action), c.DeploymentID, c.Detail); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, store.DeploymentAudit(c, "")); err != nil {
			return err
		}
	}
	return nil
}

// SetDeploymentTokens implements store.Fleet. A hash the deployment keeps is
// updated in place and a new one inserted, never deleted and inserted again in
// one transaction (which DuckDB's unique index refuses).
func (s *Store) SetDeploymentTokens(ctx context.Context, t store.DeploymentTokens, changes []fleet.DeploymentChange) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM deployments WHERE id = ?`, t.ID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		rows, err := tx.QueryContext(ctx, `SELECT hash FROM deployment_tokens WHERE deployment_id = ?`, t.ID)
		if err != nil {
			return err
		}
		had := map[string]bool{}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			had[h] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		type tokenRow struct {
			previous bool
			until    time.Time
		}
		want := map[string]tokenRow{}
		if t.TokenHash != "" {
			want[t.TokenHash] = tokenRow{false, time.Time{}}
		}
		if t.PrevTokenHash != "" {
			want[t.PrevTokenHash] = tokenRow{true, t.PrevTokenUntil}
		}
		for h := range had {
			if _, keep := want[h]; !keep {
				if _, err := tx.ExecContext(ctx, `DELETE FROM deployment_tokens WHERE hash = ?`, h); err != nil {
					return err
				}
			}
		}
		for h, w := range want {
			q := `INSERT INTO deployment_tokens (previous, valid_until, hash, deployment_id) VALUES (?, ?, ?, ?)`
			args := []any{w.previous, nullTime(w.until), h, t.ID}
			if had[h] {
				q, args = `UPDATE deployment_tokens SET previous = ?, valid_until = ? WHERE hash = ?`, args[:3]
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				if isConstraint(err) {
					return store.ErrConflict
				}
				return err
			}
		}
		return appendChanges(ctx, tx, changes)
	})
	if err != nil {
		return fmt.Errorf("set tokens of deployment %s: %w", t.ID, err)
	}
	s.changes.wrote([]store.DeploymentRecord{{Deployment: fleet.Deployment{ID: t.ID}}})
	return nil
}

// DeleteDeployment implements store.Fleet.
func (s *Store) DeleteDeployment(ctx context.Context, id string, change fleet.DeploymentChange) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := appendChanges(ctx, tx, []fleet.DeploymentChange{change}); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM deployments WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM deployment_tokens WHERE deployment_id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete deployment %s: %w", id, err)
	}
	s.changes.deleted(id)
	return nil
}

// ListDeploymentChanges implements store.Fleet.
func (s *Store) ListDeploymentChanges(ctx context.Context, deploymentID string, limit int) ([]fleet.DeploymentChange, error) {
	q := `SELECT changed_at, actor, reason, action, deployment_id, detail FROM deployment_changes`
	args := []any{}
	if deploymentID != "" {
		q += ` WHERE deployment_id = ?`
		args = append(args, deploymentID)
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deployment changes: %w", err)
	}
	defer rows.Close()
	var out []fleet.DeploymentChange
	for rows.Next() {
		var c fleet.DeploymentChange
		var action string
		if err := rows.Scan(&c.At, &c.By, &c.Reason, &action, &c.DeploymentID, &c.Detail); err != nil {
			return nil, fmt.Errorf("list deployment changes: %w", err)
		}
		c.Action = fleet.DeploymentAction(action)
		out = append(out, c)
	}
	return out, rows.Err()
}
