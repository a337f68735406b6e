package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/periscope-dev/periscope/internal/store"
)

// auditColumns are the audit columns a write fills (seq comes from its sequence).
var auditColumns = []string{"id", "happened_at", "actor", "actor_role", "action", "deployment_id", "customer", "target", "outcome", "reason", "detail"}

func auditValues(e *store.AuditEntry) []driver.Value {
	return []driver.Value{e.ID, e.At.UTC(), e.Actor, e.ActorRole, e.Action, e.DeploymentID, e.Customer, e.Target, e.Outcome, e.Reason, e.Detail}
}

// appendAudit appends entries on a connection inside a transaction.
func appendAudit(dc driver.Conn, entries []store.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	app, err := duckdb.NewAppenderWithColumns(dc, "", "", "audit", auditColumns)
	if err != nil {
		return err
	}
	for i := range entries {
		if err := app.AppendRow(auditValues(&entries[i])...); err != nil {
			app.Close()
			return err
		}
	}
	return app.Close()
}

// insertAudit appends one entry inside a database/sql transaction, taking the
// customer from the deployment it names while that still exists.
func insertAudit(ctx context.Context, tx *sql.Tx, e store.AuditEntry) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit (`+strings.Join(auditColumns, ", ")+`)
		SELECT ?, ?, ?, ?, ?, ?, coalesce((SELECT customer FROM deployments WHERE id = ?), ?), ?, ?, ?, ?`,
		e.ID, e.At.UTC(), e.Actor, e.ActorRole, e.Action, e.DeploymentID, e.DeploymentID, e.Customer, e.Target, e.Outcome, e.Reason, e.Detail)
	return err
}

// AppendAudit implements store.Audit.
func (s *Store) AppendAudit(ctx context.Context, entries []store.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := s.checkWrite(s.withConn(ctx, func(dc driver.Conn) error { return appendAudit(dc, entries) })); err != nil {
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
	for _, c := range []struct{ col, v string }{{"actor", f.Actor}, {"deployment_id", f.DeploymentID}, {"customer", f.Customer}, {"outcome", f.Outcome}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if f.Action != "" {
		if strings.HasSuffix(f.Action, ".") {
			where = append(where, "starts_with(action, ?)")
		} else {
			where = append(where, "action = ?")
		}
		args = append(args, f.Action)
	}
	if !f.Since.IsZero() {
		where = append(where, "happened_at >= ?")
		args = append(args, f.Since.UTC())
	}
	if !f.Until.IsZero() {
		where = append(where, "happened_at < ?")
		args = append(args, f.Until.UTC())
	}
	if f.After != "" {
		at, seq, ok := store.DecodeCursor(f.After)
		if !ok {
			return nil, "", fmt.Errorf("list audit: cursor %q: %w", f.After, store.ErrBadCursor)
		}
		where = append(where, "(happened_at < ? OR (happened_at = ? AND seq < ?))")
		args = append(args, at, at, seq)
	}
	q := `SELECT seq, CASE WHEN id = '' THEN printf('%016x%08x', epoch_us(happened_at), seq) ELSE id END,
		happened_at, actor, actor_role, action, deployment_id, customer, target, outcome, reason, detail FROM audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY happened_at DESC, seq DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.db.QueryContext(ctx, q, args...)
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
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	return out, next, nil
}

// PruneAudit implements store.Audit.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM audit WHERE happened_at < ?`, before.UTC())
	if err := s.checkWrite(err); err != nil {
		return 0, fmt.Errorf("prune audit entries before %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune audit entries: %w", err)
	}
	return n, nil
}
