package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// appendChanges writes deployment changes to their trail and to the audit log
// inside tx; DeleteDeployment calls it before the deletion so the entry names
// the deployment's customer.
func appendChanges(ctx context.Context, tx pgx.Tx, changes []fleet.DeploymentChange) error {
	if len(changes) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"deployment_changes"}, []string{"changed_at", "actor", "reason", "action", "deployment_id", "detail"},
		pgx.CopyFromSlice(len(changes), func(i int) ([]any, error) {
			c := &changes[i]
			return []any{c.At.UTC(), c.By, c.Reason, string(c.Action), c.DeploymentID, c.Detail}, nil
		}))
	if err != nil {
		return err
	}
	audit := make([]store.AuditEntry, len(changes))
	for i, c := range changes {
		audit[i] = store.DeploymentAudit(c, "")
	}
	return insertAudit(ctx, tx, audit)
}

// SetDeploymentTokens implements store.Fleet. The deployment's row is locked
// first, so two replicas changing its tokens at once apply one change after
// the other.
func (s *Store) SetDeploymentTokens(ctx context.Context, t store.DeploymentTokens, changes []fleet.DeploymentChange) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `SELECT 1 FROM deployments WHERE id = $1 FOR UPDATE`, t.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		// Other replicas learn of the new tokens with the deployment's row.
		if _, err := tx.Exec(ctx, `UPDATE deployments SET changed_xid = pg_current_xact_id() WHERE id = $1`, t.ID); err != nil {
			return err
		}
		if err := notifyFleet(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM deployment_tokens WHERE deployment_id = $1`, t.ID); err != nil {
			return err
		}
		b := &pgx.Batch{}
		const insert = `INSERT INTO deployment_tokens (hash, deployment_id, previous, valid_until) VALUES ($1, $2, $3, $4)`
		if t.TokenHash != "" {
			b.Queue(insert, t.TokenHash, t.ID, false, nil)
		}
		if t.PrevTokenHash != "" {
			b.Queue(insert, t.PrevTokenHash, t.ID, true, nullTime(t.PrevTokenUntil))
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			if isConflict(err) {
				return store.ErrConflict
			}
			return err
		}
		return appendChanges(ctx, tx, changes)
	})
	if err != nil {
		return fmt.Errorf("set tokens of deployment %s: %w", t.ID, err)
	}
	return nil
}

// DeleteDeployment implements store.Fleet; its tokens go with it (the foreign
// key cascades).
func (s *Store) DeleteDeployment(ctx context.Context, id string, change fleet.DeploymentChange) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := appendChanges(ctx, tx, []fleet.DeploymentChange{change}); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM deployments WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		// A deletion leaves its id for other replicas to read; a day is far
		// longer than any replica goes without reading.
		if _, err := tx.Exec(ctx, `DELETE FROM deployment_deletions WHERE deleted_at < now() - interval '1 day'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO deployment_deletions (id) VALUES ($1)`, id); err != nil {
			return err
		}
		return notifyFleet(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("delete deployment %s: %w", id, err)
	}
	return nil
}

// ListDeploymentChanges implements store.Fleet.
func (s *Store) ListDeploymentChanges(ctx context.Context, deploymentID string, limit int) ([]fleet.DeploymentChange, error) {
	rows, err := s.pool.Query(ctx, `SELECT changed_at, actor, reason, action, deployment_id, detail FROM deployment_changes
		WHERE $1 = '' OR deployment_id = $1 ORDER BY seq DESC LIMIT $2`, deploymentID, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("list deployment changes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fleet.DeploymentChange, error) {
		var c fleet.DeploymentChange
		var action string
		err := row.Scan(&c.At, &c.By, &c.Reason, &action, &c.DeploymentID, &c.Detail)
		c.At, c.Action = c.At.UTC(), fleet.DeploymentAction(action)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("list deployment changes: %w", err)
	}
	return out, nil
}

// ApplyPins implements store.Fleet: the deployments' new state, the pin trail
// and the audit entries commit together or not at all, and the deployments
// are locked in id order, so of two replicas pinning overlapping deployments
// the later one's pins hold for every deployment they share.
func (s *Store) ApplyPins(ctx context.Context, recs []store.DeploymentRecord, changes []fleet.PinChange) error {
	err := retryDeadlock(func() error { return s.applyPins(ctx, recs, changes) })
	if err != nil {
		return fmt.Errorf("apply pins to %d deployments: %w", len(recs), err)
	}
	return nil
}

// applyPins is one try of ApplyPins' transaction.
func (s *Store) applyPins(ctx context.Context, recs []store.DeploymentRecord, changes []fleet.PinChange) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		if len(recs) > 0 {
			ids, pins := make([]string, len(recs)), make([]*string, len(recs))
			for i := range recs {
				ids[i] = recs[i].Deployment.ID
				if p := recs[i].Deployment.Pin; p != nil {
					v := string(mustJSON(p))
					pins[i] = &v
				}
			}
			if err := lockDeployments(ctx, tx, ids); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE deployments d SET pin = u.pin::jsonb, changed_xid = pg_current_xact_id()
				FROM unnest($1::text[], $2::text[]) AS u(id, pin) WHERE d.id = u.id`, ids, pins); err != nil {
				return err
			}
			if err := notifyFleet(ctx, tx); err != nil {
				return err
			}
		}
		if len(changes) > 0 {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"pin_changes"},
				[]string{"change_id", "changed_at", "actor", "reason", "action", "deployment_id", "from_release", "to_release", "running_release"},
				pgx.CopyFromSlice(len(changes), func(i int) ([]any, error) {
					c := &changes[i]
					return []any{c.ChangeID, c.At.UTC(), c.By, c.Reason, string(c.Action), c.DeploymentID, c.From, c.To, c.Running}, nil
				}))
			if err != nil {
				return err
			}
		}
		return copyAudit(ctx, tx, store.PinAudits(recs, changes))
	})
}

// ListPinChanges implements store.Fleet.
func (s *Store) ListPinChanges(ctx context.Context, deploymentID string, limit int) ([]fleet.PinChange, error) {
	rows, err := s.pool.Query(ctx, `SELECT change_id, changed_at, actor, reason, action, deployment_id, from_release, to_release, running_release
		FROM pin_changes WHERE $1 = '' OR deployment_id = $1 ORDER BY seq DESC LIMIT $2`, deploymentID, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("list pin changes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fleet.PinChange, error) {
		var c fleet.PinChange
		var action string
		err := row.Scan(&c.ChangeID, &c.At, &c.By, &c.Reason, &action, &c.DeploymentID, &c.From, &c.To, &c.Running)
		c.At, c.Action = c.At.UTC(), fleet.PinAction(action)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("list pin changes: %w", err)
	}
	return out, nil
}
