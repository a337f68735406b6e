package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/store"
)

// auditColumns are the audit columns a write fills (seq comes from its identity).
var auditColumns = []string{"id", "happened_at", "actor", "actor_role", "action", "deployment_id", "customer", "target", "outcome", "reason", "detail"}

// copyAudit appends entries inside tx with COPY.
func copyAudit(ctx context.Context, tx pgx.Tx, entries []store.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit"}, auditColumns, pgx.CopyFromSlice(len(entries), func(i int) ([]any, error) {
		e := &entries[i]
		return []any{e.ID, e.At.UTC(), e.Actor, e.ActorRole, e.Action, e.DeploymentID, e.Customer, e.Target, e.Outcome, e.Reason, e.Detail}, nil
	}))
	return err
}

// insertAudit appends entries inside tx, each taking the customer of the
// deployment it names while that still exists (else the entry's own).
func insertAudit(ctx context.Context, tx pgx.Tx, entries []store.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, e := range entries {
		b.Queue(`INSERT INTO audit (`+strings.Join(auditColumns, ", ")+`)
			SELECT $1, $2, $3, $4, $5, $6::text, coalesce((SELECT customer FROM deployments WHERE id = $6::text), $7), $8, $9, $10, $11`,
			e.ID, e.At.UTC(), e.Actor, e.ActorRole, e.Action, e.DeploymentID, e.Customer, e.Target, e.Outcome, e.Reason, e.Detail)
	}
	return tx.SendBatch(ctx, b).Close()
}

// AppendAudit implements store.Audit with COPY.
func (s *Store) AppendAudit(ctx context.Context, entries []store.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := s.tx(ctx, func(tx pgx.Tx) error { return copyAudit(ctx, tx, entries) }); err != nil {
		return fmt.Errorf("append %d audit entries: %w", len(entries), err)
	}
	return nil
}

// maxAuditPage bounds one ListAudit page.
const maxAuditPage = 10_000

// ListAudit implements store.Audit.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, string, error) {
	// A page is bounded whatever the caller asks; the cursor reaches the rest.
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, maxAuditPage)
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	for _, c := range []struct{ col, v string }{{"actor", f.Actor}, {"deployment_id", f.DeploymentID}, {"customer", f.Customer}, {"outcome", f.Outcome}} {
		if c.v != "" {
			where = append(where, c.col+" = "+arg(c.v))
		}
	}
	if f.Action != "" {
		if strings.HasSuffix(f.Action, ".") {
			where = append(where, "starts_with(action, "+arg(f.Action)+")")
		} else {
			where = append(where, "action = "+arg(f.Action))
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "happened_at >= "+arg(f.Since.UTC()))
	}
	if !f.Until.IsZero() {
		where = append(where, "happened_at < "+arg(f.Until.UTC()))
	}
	if f.After != "" {
		at, seq, ok := store.DecodeCursor(f.After)
		if !ok {
			return nil, "", fmt.Errorf("list audit: cursor %.40q: %w", f.After, store.ErrBadCursor)
		}
		where = append(where, "(happened_at, seq) < ("+arg(at)+", "+arg(seq)+")")
	}
	// An entry without an id of its own gets one from its time and seq, as
	// the embedded store derives it.
	q := `SELECT seq, CASE WHEN id = '' THEN lpad(to_hex((extract(epoch FROM happened_at) * 1000000)::bigint), 16, '0') || lpad(to_hex(seq), 8, '0') ELSE id END,
		happened_at, actor, actor_role, action, deployment_id, customer, target, outcome, reason, detail FROM audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY happened_at DESC, seq DESC LIMIT " + arg(limit+1)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var (
		out     []store.AuditEntry
		lastSeq int64
		next    string
	)
	for rows.Next() {
		if len(out) == limit {
			// One more entry matches: the page ends at the last one kept.
			next = store.EncodeCursor(out[len(out)-1].At, lastSeq)
			break
		}
		var e store.AuditEntry
		if err := rows.Scan(&lastSeq, &e.ID, &e.At, &e.Actor, &e.ActorRole, &e.Action, &e.DeploymentID, &e.Customer,
			&e.Target, &e.Outcome, &e.Reason, &e.Detail); err != nil {
			return nil, "", fmt.Errorf("list audit: %w", err)
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	return out, next, nil
}

// PruneAudit implements store.Audit.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM audit WHERE happened_at < $1`, before.UTC())
	if err := s.checkWrite(err); err != nil {
		return 0, fmt.Errorf("prune audit entries before %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	return tag.RowsAffected(), nil
}
