package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/store"
)

const invocationColumns = `seq, id, deployment_id, customer, command, params, spec, reason, actor, actor_role, state, state_reason,
	queued_at, deadline, delivered_at, started_at, finished_at, result`

func paramsJSON(p command.Params) []byte {
	if p == nil {
		p = command.Params{}
	}
	return mustJSON(p)
}

// specJSON is an invocation's declaration as its column: NULL for none.
func specJSON(s *command.Spec) []byte {
	if s == nil {
		return nil
	}
	return mustJSON(s)
}

// CreateInvocations implements store.Commands.
func (s *Store) CreateInvocations(ctx context.Context, invs []store.Invocation, audit []store.AuditEntry) error {
	if len(invs) == 0 && len(audit) == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if len(invs) > 0 {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"command_invocations"}, []string{"id", "deployment_id", "customer", "command", "params", "spec",
				"reason", "actor", "actor_role", "state", "state_reason", "queued_at", "deadline", "delivered_at", "started_at", "finished_at", "result"},
				pgx.CopyFromSlice(len(invs), func(i int) ([]any, error) {
					inv := &invs[i]
					return []any{inv.ID, inv.DeploymentID, inv.Customer, inv.Command, paramsJSON(inv.Params), specJSON(inv.Spec), inv.Reason, inv.Actor,
						inv.ActorRole, string(inv.State), inv.StateReason, inv.QueuedAt.UTC(), inv.Deadline.UTC(), nullTime(inv.DeliveredAt),
						nullTime(inv.StartedAt), nullTime(inv.FinishedAt), mustJSON(inv.Result)}, nil
				}))
			if err != nil {
				return err
			}
			if err := notifyQueued(ctx, tx, invs); err != nil {
				return err
			}
		}
		return insertAudit(ctx, tx, audit)
	})
	if isConflict(err) {
		return fmt.Errorf("create %d invocations: %w", len(invs), store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create %d invocations: %w", len(invs), err)
	}
	return nil
}

// AdvanceInvocation implements store.Commands. The state test is in the UPDATE
// itself: of two replicas moving one invocation at once, the second waits for
// the first's row lock, re-reads the row and matches it no more, so an
// invocation never moves backwards and each move happens once. The audit
// entries are built from the row as the UPDATE leaves it.
func (s *Store) AdvanceInvocation(ctx context.Context, inv store.Invocation, audit store.AuditFunc) (store.Invocation, error) {
	var from []string
	for _, st := range command.States() {
		if inv.State.Follows(st) {
			from = append(from, string(st))
		}
	}
	got, moved, err := s.moveInvocation(ctx, audit, `UPDATE command_invocations SET state = $1, state_reason = $2,
		delivered_at = coalesce(delivered_at, $3), started_at = coalesce(started_at, $4), finished_at = coalesce(finished_at, $5), result = $6
		WHERE id = $7 AND deployment_id = $8 AND state = ANY($9) RETURNING `+invocationColumns,
		string(inv.State), inv.StateReason, nullTime(inv.DeliveredAt), nullTime(inv.StartedAt), nullTime(inv.FinishedAt), mustJSON(inv.Result),
		inv.ID, inv.DeploymentID, from)
	if err != nil {
		return store.Invocation{}, fmt.Errorf("advance invocation %s to %s: %w", inv.ID, inv.State, err)
	}
	if moved {
		return got, nil
	}
	cur, err := s.GetInvocation(ctx, inv.ID)
	if err != nil || cur.DeploymentID != inv.DeploymentID {
		return store.Invocation{}, fmt.Errorf("invocation %s of deployment %s: %w", inv.ID, inv.DeploymentID, store.ErrNotFound)
	}
	return cur, fmt.Errorf("invocation %s is %s, cannot move to %s: %w", inv.ID, cur.State, inv.State, store.ErrConflict)
}

// CancelInvocation implements store.Commands.
func (s *Store) CancelInvocation(ctx context.Context, id, reason string, at time.Time, audit store.AuditFunc) (store.Invocation, error) {
	got, moved, err := s.moveInvocation(ctx, audit, `UPDATE command_invocations SET state = 'cancelled', state_reason = $1, finished_at = $2
		WHERE id = $3 AND state = 'queued' RETURNING `+invocationColumns, reason, at.UTC(), id)
	if err != nil {
		return store.Invocation{}, fmt.Errorf("cancel invocation %s: %w", id, err)
	}
	if moved {
		return got, nil
	}
	cur, err := s.GetInvocation(ctx, id)
	if err != nil {
		return store.Invocation{}, err
	}
	return cur, fmt.Errorf("invocation %s is %s, only a queued one can be cancelled: %w", id, cur.State, store.ErrConflict)
}

// moveInvocation runs update, a conditional UPDATE of one invocation
// returning invocationColumns, and when it moved that row appends the entries
// audit returns for the row as updated, in one transaction. It reports the
// updated invocation and whether the row moved.
func (s *Store) moveInvocation(ctx context.Context, audit store.AuditFunc, update string, args ...any) (store.Invocation, bool, error) {
	var got store.Invocation
	moved := false
	err := s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, update, args...)
		if err != nil {
			return err
		}
		invs, err := scanInvocations(rows)
		if err != nil || len(invs) == 0 {
			return err
		}
		got, moved = invs[0].Invocation, true
		if audit == nil {
			return nil
		}
		return insertAudit(ctx, tx, audit(got))
	})
	if err != nil {
		return store.Invocation{}, false, err
	}
	return got, moved, nil
}

// GetInvocation implements store.Commands.
func (s *Store) GetInvocation(ctx context.Context, id string) (store.Invocation, error) {
	invs, _, err := s.invocations(ctx, "get invocation "+id, `SELECT `+invocationColumns+` FROM command_invocations WHERE id = $1`, 0, id)
	if err != nil {
		return store.Invocation{}, err
	}
	if len(invs) == 0 {
		return store.Invocation{}, fmt.Errorf("invocation %s: %w", id, store.ErrNotFound)
	}
	return invs[0], nil
}

// ListInvocations implements store.Commands.
func (s *Store) ListInvocations(ctx context.Context, f store.InvocationFilter) ([]store.Invocation, string, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.DeploymentID != "" {
		add("deployment_id = $%d", f.DeploymentID)
	}
	if f.Customer != "" {
		add("customer = $%d", f.Customer)
	}
	if f.Command != "" {
		add("command = $%d", f.Command)
	}
	if f.State != "" {
		add("state = $%d", string(f.State))
	}
	if !f.Since.IsZero() {
		add("queued_at >= $%d", f.Since.UTC())
	}
	if f.After != "" {
		seq, err := strconv.ParseInt(f.After, 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("list invocations: cursor %.40q: %w", f.After, err)
		}
		add("seq < $%d", seq)
	}
	q := `SELECT ` + invocationColumns + ` FROM command_invocations`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += " ORDER BY seq DESC LIMIT " + strconv.Itoa(limit+1)
	return s.invocations(ctx, "list invocations", q, limit, args...)
}

// PendingInvocations implements store.Commands.
func (s *Store) PendingInvocations(ctx context.Context, deploymentID string) ([]store.Invocation, error) {
	invs, _, err := s.invocations(ctx, "pending invocations of "+deploymentID, `SELECT `+invocationColumns+` FROM command_invocations
		WHERE deployment_id = $1 AND state IN ('queued', 'delivered') ORDER BY seq`, 0, deploymentID)
	return invs, err
}

// PendingDeployments implements store.Commands.
func (s *Store) PendingDeployments(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT deployment_id FROM command_invocations WHERE state IN ('queued', 'delivered')`)
	if err != nil {
		return nil, fmt.Errorf("deployments with pending invocations: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("deployments with pending invocations: %w", err)
	}
	return ids, nil
}

// OverdueInvocations implements store.Commands.
func (s *Store) OverdueInvocations(ctx context.Context, now time.Time, limit int) ([]store.Invocation, error) {
	invs, _, err := s.invocations(ctx, "overdue invocations", `SELECT `+invocationColumns+` FROM command_invocations
		WHERE state IN ('queued', 'delivered', 'running') AND deadline <= $1 ORDER BY deadline, seq LIMIT $2`, 0, now.UTC(), max(limit, 1))
	return invs, err
}

// invocations runs a query of invocationColumns. With page > 0 the query asks
// for one row more than page, which becomes the next cursor's existence.
func (s *Store) invocations(ctx context.Context, what, q string, page int, args ...any) ([]store.Invocation, string, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	found, err := scanInvocations(rows)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	next := ""
	if page > 0 && len(found) > page {
		found = found[:page]
		next = strconv.FormatInt(found[page-1].seq, 10)
	}
	var out []store.Invocation
	for _, f := range found {
		out = append(out, f.Invocation)
	}
	return out, next, nil
}

// storedInvocation is an invocation with its seq, the paging cursor.
type storedInvocation struct {
	store.Invocation
	seq int64
}

// scanInvocations reads rows of invocationColumns and closes rows.
func scanInvocations(rows pgx.Rows) ([]storedInvocation, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (storedInvocation, error) {
		var (
			si                          storedInvocation
			inv                         = &si.Invocation
			state                       string
			params, spec, result        []byte
			delivered, started, finishd *time.Time
		)
		if err := row.Scan(&si.seq, &inv.ID, &inv.DeploymentID, &inv.Customer, &inv.Command, &params, &spec, &inv.Reason, &inv.Actor, &inv.ActorRole,
			&state, &inv.StateReason, &inv.QueuedAt, &inv.Deadline, &delivered, &started, &finishd, &result); err != nil {
			return si, err
		}
		inv.State = command.State(state)
		inv.QueuedAt, inv.Deadline = inv.QueuedAt.UTC(), inv.Deadline.UTC()
		inv.DeliveredAt, inv.StartedAt, inv.FinishedAt = utc(delivered), utc(started), utc(finishd)
		if spec != nil {
			inv.Spec = new(command.Spec)
			if err := json.Unmarshal(spec, inv.Spec); err != nil {
				return si, fmt.Errorf("decode the declaration of %s: %w", inv.ID, err)
			}
		}
		// Numbers in parameters come back as json.Number, as the contract says.
		dec := json.NewDecoder(bytes.NewReader(params))
		dec.UseNumber()
		if err := errors.Join(dec.Decode(&inv.Params), json.Unmarshal(result, &inv.Result)); err != nil {
			return si, fmt.Errorf("decode %s: %w", inv.ID, err)
		}
		if len(inv.Params) == 0 {
			inv.Params = nil
		}
		return si, nil
	})
}
