package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

var _ store.Notifications = (*Store)(nil)

const notificationColumns = `n.id, n.kind, n.state, n.deployment_id, n.deployment_name, n.customer, n.cloud, n.region, n.release,
	n.status, n.previous_status, n.reason, n.reason_code, n.behind_reason, n.changed_at, n.created_at`

// AddNotification implements store.Notifications: the notification and its deliveries
// commit together.
func (s *Store) AddNotification(ctx context.Context, n store.Notification) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add notification %s: %w", n.ID, err)
	}
	defer tx.Rollback()
	d := n.Deployment
	_, err = tx.ExecContext(ctx, `INSERT INTO notifications (id, kind, state, deployment_id, deployment_name, customer, cloud, region, release,
		status, previous_status, reason, reason_code, behind_reason, changed_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		n.ID, string(n.Kind), string(n.State), d.ID, d.Name, d.Customer, d.Cloud, d.Region, d.Release,
		string(n.Status), string(n.PreviousStatus), n.Reason, n.ReasonCode, string(n.BehindReason), n.At.UTC(), n.CreatedAt.UTC())
	if isConstraint(err) {
		return fmt.Errorf("add notification %s: %w", n.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("add notification %s: %w", n.ID, err)
	}
	for i, dl := range n.Deliveries {
		_, err := tx.ExecContext(ctx, `INSERT INTO notification_deliveries (notification_id, webhook, ordinal, state, attempts, last_error,
			next_attempt, delivered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.ID, dl.Webhook, i, string(dl.State), dl.Attempts, dl.LastError, nullTime(dl.NextAttempt), nullTime(dl.DeliveredAt), dl.UpdatedAt.UTC())
		if isConstraint(err) {
			return fmt.Errorf("add notification %s: webhook %q twice: %w", n.ID, dl.Webhook, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("add notification %s: %w", n.ID, err)
		}
	}
	if err := s.checkWrite(tx.Commit()); err != nil {
		return fmt.Errorf("add notification %s: %w", n.ID, err)
	}
	return nil
}

// UpdateDelivery implements store.Notifications.
func (s *Store) UpdateDelivery(ctx context.Context, id string, d store.Delivery) error {
	res, err := s.db.ExecContext(ctx, `UPDATE notification_deliveries SET state = ?, attempts = ?, last_error = ?, next_attempt = ?,
		delivered_at = ?, updated_at = ? WHERE notification_id = ? AND webhook = ?`,
		string(d.State), d.Attempts, d.LastError, nullTime(d.NextAttempt), nullTime(d.DeliveredAt), d.UpdatedAt.UTC(), id, d.Webhook)
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("update delivery of %s to %s: %w", id, d.Webhook, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("delivery of notification %s to %s: %w", id, d.Webhook, store.ErrNotFound)
	}
	return nil
}

// PendingNotifications implements store.Notifications.
func (s *Store) PendingNotifications(ctx context.Context) ([]store.Notification, error) {
	return s.notifications(ctx, "pending notifications", `SELECT `+notificationColumns+` FROM notifications n
		WHERE EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.notification_id = n.id AND d.state = 'pending')
		ORDER BY n.seq`)
}

// LatestNotifications implements store.Notifications.
func (s *Store) LatestNotifications(ctx context.Context) ([]store.Notification, error) {
	return s.notifications(ctx, "latest notifications", `SELECT `+notificationColumns+` FROM notifications n
		QUALIFY row_number() OVER (PARTITION BY n.deployment_id, n.kind ORDER BY n.seq DESC) = 1
		ORDER BY n.seq`)
}

// ListNotifications implements store.Notifications. A limit of zero or less returns all.
func (s *Store) ListNotifications(ctx context.Context, q store.NotificationQuery) ([]store.Notification, error) {
	var where []string
	var args []any
	if q.Deployment != "" {
		where, args = append(where, "n.deployment_id = ?"), append(args, q.Deployment)
	}
	switch st := q.State; st {
	case "":
	case string(store.Entered), string(store.Resolved):
		where, args = append(where, "n.state = ?"), append(args, st)
	default:
		where, args = append(where, "EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.notification_id = n.id AND d.state = ?)"), append(args, st)
	}
	query := `SELECT ` + notificationColumns + ` FROM notifications n`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY n.seq DESC"
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return s.notifications(ctx, "list notifications", query, args...)
}

// notifications runs query, which selects notificationColumns from notifications
// n, and fills in each one's deliveries by running it again as a subquery, so
// the two reads need no list of ids between them.
func (s *Store) notifications(ctx context.Context, what, query string, args ...any) ([]store.Notification, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []store.Notification
	index := map[string]int{}
	for rows.Next() {
		var (
			n                                 store.Notification
			d                                 = &n.Deployment
			kind, state, status, prev, behind string
		)
		if err := rows.Scan(&n.ID, &kind, &state, &d.ID, &d.Name, &d.Customer, &d.Cloud, &d.Region, &d.Release,
			&status, &prev, &n.Reason, &n.ReasonCode, &behind, &n.At, &n.CreatedAt); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		n.Kind, n.State, n.Status, n.PreviousStatus, n.BehindReason = store.NotificationKind(kind), store.NotificationState(state), fleet.Status(status), fleet.Status(prev), fleet.BehindReason(behind)
		n.At, n.CreatedAt = n.At.UTC(), n.CreatedAt.UTC()
		index[n.ID] = len(out)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	rows.Close()
	if len(out) == 0 {
		return nil, nil
	}
	drows, err := s.db.QueryContext(ctx, `SELECT notification_id, webhook, state, attempts, last_error, next_attempt, delivered_at, updated_at
		FROM notification_deliveries WHERE notification_id IN (SELECT id FROM (`+query+`)) ORDER BY notification_id, ordinal`, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: deliveries: %w", what, err)
	}
	defer drows.Close()
	for drows.Next() {
		var (
			id, state     string
			dl            store.Delivery
			next, deliver sql.NullTime
		)
		if err := drows.Scan(&id, &dl.Webhook, &state, &dl.Attempts, &dl.LastError, &next, &deliver, &dl.UpdatedAt); err != nil {
			return nil, fmt.Errorf("%s: deliveries: %w", what, err)
		}
		dl.State, dl.UpdatedAt = store.DeliveryState(state), dl.UpdatedAt.UTC()
		if next.Valid {
			dl.NextAttempt = next.Time.UTC()
		}
		if deliver.Valid {
			dl.DeliveredAt = deliver.Time.UTC()
		}
		if i, ok := index[id]; ok {
			out[i].Deliveries = append(out[i].Deliveries, dl)
		}
	}
	if err := drows.Err(); err != nil {
		return nil, fmt.Errorf("%s: deliveries: %w", what, err)
	}
	return out, nil
}
