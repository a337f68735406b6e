package duckdb

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/store"
)

var _ store.Commands = (*Store)(nil)

const invocationColumns = `seq, id, deployment_id, customer, command, params, spec, reason, actor, actor_role, state, state_reason,
	queued_at, deadline, delivered_at, started_at, finished_at, result`

// resultOf is an invocation's result as its JSON column: written once, when
// the invocation ends, and read only with the rest.
func resultOf(inv *store.Invocation) string { return mustJSON(inv.Result) }

// specJSON is an invocation's declaration as its column: ” for none.
func specJSON(s *command.Spec) string {
	if s == nil {
		return ""
	}
	return mustJSON(s)
}

func paramsJSON(p command.Params) string {
	if p == nil {
		p = command.Params{}
	}
	return mustJSON(p)
}

// CreateInvocations implements store.Commands.
func (s *Store) CreateInvocations(ctx context.Context, invs []store.Invocation, audit []store.AuditEntry) error {
	if len(invs) == 0 && len(audit) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create %d invocations: %w", len(invs), err)
	}
	defer tx.Rollback()
	for i := range invs {
		inv := &invs[i]
		_, err := tx.ExecContext(ctx, `INSERT INTO command_invocations (id, deployment_id, customer, command, params, spec, reason, actor, actor_role,
			state, state_reason, queued_at, deadline, delivered_at, started_at, finished_at, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			inv.ID, inv.DeploymentID, inv.Customer, inv.Command, paramsJSON(inv.Params), specJSON(inv.Spec), inv.Reason, inv.Actor, inv.ActorRole,
			string(inv.State), inv.StateReason, inv.QueuedAt.UTC(), inv.Deadline.UTC(), nullTime(inv.DeliveredAt), nullTime(inv.StartedAt),
			nullTime(inv.FinishedAt), resultOf(inv))
		if isConstraint(err) {
			return fmt.Errorf("create invocation %s: %w", inv.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create invocation %s: %w", inv.ID, s.checkWrite(err))
		}
	}
	for _, e := range audit {
		if err := insertAudit(ctx, tx, e); err != nil {
			return fmt.Errorf("create %d invocations: audit: %w", len(invs), s.checkWrite(err))
		}
	}
	if err := s.checkWrite(tx.Commit()); err != nil {
		return fmt.Errorf("create %d invocations: %w", len(invs), err)
	}
	return nil
}

// AdvanceInvocation implements store.Commands. The state test is in the UPDATE
// itself, so two updates racing cannot move an invocation backwards; the audit
// entries go in the same transaction, built from the invocation as the update
// leaves it.
func (s *Store) AdvanceInvocation(ctx context.Context, inv store.Invocation, audit store.AuditFunc) (store.Invocation, error) {
	cur, err := s.GetInvocation(ctx, inv.ID)
	if err != nil || cur.DeploymentID != inv.DeploymentID {
		return store.Invocation{}, fmt.Errorf("invocation %s of deployment %s: %w", inv.ID, inv.DeploymentID, store.ErrNotFound)
	}
	var from []string
	for _, st := range command.States() {
		if inv.State.Follows(st) {
			from = append(from, "'"+string(st)+"'")
		}
	}
	if len(from) > 0 {
		after := cur
		after.State, after.StateReason, after.Result = inv.State, inv.StateReason, inv.Result
		for _, t := range [][2]*time.Time{{&after.DeliveredAt, &inv.DeliveredAt}, {&after.StartedAt, &inv.StartedAt}, {&after.FinishedAt, &inv.FinishedAt}} {
			if t[0].IsZero() {
				*t[0] = *t[1]
			}
		}
		moved, err := s.moveInvocation(ctx, after, audit, `UPDATE command_invocations SET state = ?, state_reason = ?,
			delivered_at = coalesce(delivered_at, ?), started_at = coalesce(started_at, ?), finished_at = coalesce(finished_at, ?), result = ?
			WHERE id = ? AND deployment_id = ? AND state IN (`+strings.Join(from, ", ")+`)`,
			string(inv.State), inv.StateReason, nullTime(inv.DeliveredAt), nullTime(inv.StartedAt), nullTime(inv.FinishedAt), resultOf(&inv),
			inv.ID, inv.DeploymentID)
		if err != nil {
			return store.Invocation{}, fmt.Errorf("advance invocation %s to %s: %w", inv.ID, inv.State, err)
		}
		if moved {
			return s.GetInvocation(ctx, inv.ID)
		}
	}
	got, err := s.GetInvocation(ctx, inv.ID)
	if err != nil {
		return store.Invocation{}, err
	}
	return got, fmt.Errorf("invocation %s is %s, cannot move to %s: %w", inv.ID, got.State, inv.State, store.ErrConflict)
}

// CancelInvocation implements store.Commands.
func (s *Store) CancelInvocation(ctx context.Context, id, reason string, at time.Time, audit store.AuditFunc) (store.Invocation, error) {
	cur, err := s.GetInvocation(ctx, id)
	if err != nil {
		return store.Invocation{}, err
	}
	after := cur
	after.State, after.StateReason, after.FinishedAt = command.StateCancelled, reason, at.UTC()
	moved, err := s.moveInvocation(ctx, after, audit, `UPDATE command_invocations SET state = 'cancelled', state_reason = ?, finished_at = ?
		WHERE id = ? AND state = 'queued'`, reason, at.UTC(), id)
	if err != nil {
		return store.Invocation{}, fmt.Errorf("cancel invocation %s: %w", id, err)
	}
	got, gerr := s.GetInvocation(ctx, id)
	if gerr != nil {
		return store.Invocation{}, gerr
	}
	if !moved {
		return got, fmt.Errorf("invocation %s is %s, only a queued one can be cancelled: %w", id, got.State, store.ErrConflict)
	}
	return got, nil
}

// moveInvocation runs update, a conditional UPDATE of one invocation, and
// when it moved that row appends the entries audit returns for after, all in
// one transaction; it reports whether the row moved. Errors pass through
// checkWrite, so a full disk reads as unavailable.
func (s *Store) moveInvocation(ctx context.Context, after store.Invocation, audit store.AuditFunc, update string, args ...any) (bool, error) {
	// DuckDB refuses the second of two transactions updating one row at
	// once ("Conflict on update") instead of making it wait, and the push
	// of an invocation and the agent's quick result race like that: the
	// result was lost. One at a time, the state test in the UPDATE decides.
	s.commandsMu.Lock()
	defer s.commandsMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, s.checkWrite(err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, update, args...)
	if err != nil {
		return false, s.checkWrite(err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, err
	}
	if audit != nil {
		for _, e := range audit(after) {
			if err := insertAudit(ctx, tx, e); err != nil {
				return false, s.checkWrite(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return false, s.checkWrite(err)
	}
	return true, nil
}

// GetInvocation implements store.Commands.
func (s *Store) GetInvocation(ctx context.Context, id string) (store.Invocation, error) {
	invs, _, err := s.invocations(ctx, "get invocation "+id, `SELECT `+invocationColumns+` FROM command_invocations WHERE id = ?`, 0, id)
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
		where = append(where, cond)
		args = append(args, v)
	}
	if f.DeploymentID != "" {
		add("deployment_id = ?", f.DeploymentID)
	}
	if f.Customer != "" {
		add("customer = ?", f.Customer)
	}
	if f.Command != "" {
		add("command = ?", f.Command)
	}
	if f.State != "" {
		add("state = ?", string(f.State))
	}
	if !f.Since.IsZero() {
		add("queued_at >= ?", f.Since.UTC())
	}
	if f.After != "" {
		seq, err := strconv.ParseInt(f.After, 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("list invocations: cursor %.40q: %w", f.After, err)
		}
		add("seq < ?", seq)
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
		WHERE deployment_id = ? AND state IN ('queued', 'delivered') ORDER BY seq`, 0, deploymentID)
	return invs, err
}

// PendingDeployments implements store.Commands.
func (s *Store) PendingDeployments(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT deployment_id FROM command_invocations WHERE state IN ('queued', 'delivered')`)
	if err != nil {
		return nil, fmt.Errorf("deployments with pending invocations: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("deployments with pending invocations: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("deployments with pending invocations: %w", err)
	}
	return ids, nil
}

// OverdueInvocations implements store.Commands.
func (s *Store) OverdueInvocations(ctx context.Context, now time.Time, limit int) ([]store.Invocation, error) {
	invs, _, err := s.invocations(ctx, "overdue invocations", `SELECT `+invocationColumns+` FROM command_invocations
		WHERE state IN ('queued', 'delivered', 'running') AND deadline <= ? ORDER BY deadline, seq LIMIT `+strconv.Itoa(max(limit, 1)), 0, now.UTC())
	return invs, err
}

// invocations runs a query of invocationColumns. With page > 0 the query asks
// for one row more than page, which becomes the next cursor's existence.
func (s *Store) invocations(ctx context.Context, what, q string, page int, args ...any) ([]store.Invocation, string, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []store.Invocation
	var seqs []int64
	for rows.Next() {
		var inv store.Invocation
		var seq int64
		var params, spec, state, result string
		var delivered, started, finished sql.NullTime
		if err := rows.Scan(&seq, &inv.ID, &inv.DeploymentID, &inv.Customer, &inv.Command, &params, &spec, &inv.Reason, &inv.Actor, &inv.ActorRole,
			&state, &inv.StateReason, &inv.QueuedAt, &inv.Deadline, &delivered, &started, &finished, &result); err != nil {
			return nil, "", fmt.Errorf("%s: %w", what, err)
		}
		inv.State = command.State(state)
		inv.DeliveredAt, inv.StartedAt, inv.FinishedAt = delivered.Time, started.Time, finished.Time
		inv.QueuedAt, inv.Deadline = inv.QueuedAt.UTC(), inv.Deadline.UTC()
		for _, t := range []*time.Time{&inv.DeliveredAt, &inv.StartedAt, &inv.FinishedAt} {
			if !t.IsZero() {
				*t = t.UTC()
			}
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(params)))
		dec.UseNumber()
		if spec != "" {
			inv.Spec = new(command.Spec)
			if err := json.Unmarshal([]byte(spec), inv.Spec); err != nil {
				return nil, "", fmt.Errorf("%s: decode the declaration of %s: %w", what, inv.ID, err)
			}
		}
		if err := errors.Join(dec.Decode(&inv.Params), json.Unmarshal([]byte(result), &inv.Result)); err != nil {
			return nil, "", fmt.Errorf("%s: decode %s: %w", what, inv.ID, err)
		}
		if len(inv.Params) == 0 {
			inv.Params = nil
		}
		out = append(out, inv)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	next := ""
	if page > 0 && len(out) > page {
		out = out[:page]
		next = strconv.FormatInt(seqs[page-1], 10)
	}
	return out, next, nil
}
