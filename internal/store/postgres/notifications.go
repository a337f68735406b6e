package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

const notificationColumns = `n.id, n.kind, n.state, n.deployment_id, n.deployment_name, n.customer, n.cloud, n.region, n.release,
	n.status, n.previous_status, n.reason, n.reason_code, n.behind_reason, n.changed_at, n.created_at`

// AddNotification implements store.Notifications: the notification and its
// deliveries commit together.
func (s *Store) AddNotification(ctx context.Context, n store.Notification) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		d := n.Deployment
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO notifications (id, kind, state, deployment_id, deployment_name, customer, cloud, region, release,
			status, previous_status, reason, reason_code, behind_reason, changed_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
			n.ID, string(n.Kind), string(n.State), d.ID, d.Name, d.Customer, d.Cloud, d.Region, d.Release,
			string(n.Status), string(n.PreviousStatus), n.Reason, n.ReasonCode, string(n.BehindReason), n.At.UTC(), n.CreatedAt.UTC())
		for i, dl := range n.Deliveries {
			b.Queue(`INSERT INTO notification_deliveries (notification_id, webhook, ordinal, state, attempts, last_error,
				next_attempt, delivered_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				n.ID, dl.Webhook, i, string(dl.State), dl.Attempts, dl.LastError, nullTime(dl.NextAttempt), nullTime(dl.DeliveredAt), dl.UpdatedAt.UTC())
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if isConflict(err) {
		return fmt.Errorf("add notification %s: the id exists or a webhook is named twice: %w", n.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("add notification %s: %w", n.ID, err)
	}
	return nil
}

// UpdateDelivery implements store.Notifications.
func (s *Store) UpdateDelivery(ctx context.Context, id string, d store.Delivery) error {
	tag, err := s.pool.Exec(ctx, `UPDATE notification_deliveries SET state = $1, attempts = $2, last_error = $3, next_attempt = $4,
		delivered_at = $5, updated_at = $6 WHERE notification_id = $7 AND webhook = $8`,
		string(d.State), d.Attempts, d.LastError, nullTime(d.NextAttempt), nullTime(d.DeliveredAt), d.UpdatedAt.UTC(), id, d.Webhook)
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("update delivery of %s to %s: %w", id, d.Webhook, err)
	}
	if tag.RowsAffected() == 0 {
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
	return s.notifications(ctx, "latest notifications", `SELECT `+notificationColumns+` FROM (
		SELECT DISTINCT ON (deployment_id, kind) * FROM notifications ORDER BY deployment_id, kind, seq DESC) n
		ORDER BY n.seq`)
}

// ListNotifications implements store.Notifications. A limit of zero or less returns all.
func (s *Store) ListNotifications(ctx context.Context, q store.NotificationQuery) ([]store.Notification, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.Deployment != "" {
		where = append(where, "n.deployment_id = "+arg(q.Deployment))
	}
	switch st := q.State; st {
	case "":
	case string(store.Entered), string(store.Resolved):
		where = append(where, "n.state = "+arg(st))
	default:
		where = append(where, "EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.notification_id = n.id AND d.state = "+arg(st)+")")
	}
	query := `SELECT ` + notificationColumns + ` FROM notifications n`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY n.seq DESC"
	if q.Limit > 0 {
		query += " LIMIT " + arg(q.Limit)
	}
	return s.notifications(ctx, "list notifications", query, args...)
}

// notifications runs query, which selects notificationColumns from
// notifications n, and reads the deliveries of what it returned by id, in
// one repeatable-read transaction so the two reads see the same state.
func (s *Store) notifications(ctx context.Context, what, query string, args ...any) ([]store.Notification, error) {
	var out []store.Notification
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Notification, error) {
			var (
				n                                 store.Notification
				d                                 = &n.Deployment
				kind, state, status, prev, behind string
			)
			err := row.Scan(&n.ID, &kind, &state, &d.ID, &d.Name, &d.Customer, &d.Cloud, &d.Region, &d.Release,
				&status, &prev, &n.Reason, &n.ReasonCode, &behind, &n.At, &n.CreatedAt)
			n.Kind, n.State, n.Status, n.PreviousStatus, n.BehindReason = store.NotificationKind(kind), store.NotificationState(state),
				fleet.Status(status), fleet.Status(prev), fleet.BehindReason(behind)
			n.At, n.CreatedAt = n.At.UTC(), n.CreatedAt.UTC()
			return n, err
		})
		if err != nil || len(out) == 0 {
			return err
		}
		index := make(map[string]int, len(out))
		ids := make([]string, len(out))
		for i, n := range out {
			index[n.ID], ids[i] = i, n.ID
		}
		drows, err := tx.Query(ctx, `SELECT notification_id, webhook, state, attempts, last_error, next_attempt, delivered_at, updated_at
			FROM notification_deliveries WHERE notification_id = ANY($1) ORDER BY notification_id, ordinal`, ids)
		if err != nil {
			return fmt.Errorf("deliveries: %w", err)
		}
		defer drows.Close()
		for drows.Next() {
			var (
				id, state     string
				dl            store.Delivery
				next, deliver *time.Time
			)
			if err := drows.Scan(&id, &dl.Webhook, &state, &dl.Attempts, &dl.LastError, &next, &deliver, &dl.UpdatedAt); err != nil {
				return fmt.Errorf("deliveries: %w", err)
			}
			dl.State, dl.UpdatedAt, dl.NextAttempt, dl.DeliveredAt = store.DeliveryState(state), dl.UpdatedAt.UTC(), utc(next), utc(deliver)
			i := index[id]
			out[i].Deliveries = append(out[i].Deliveries, dl)
		}
		return drows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
