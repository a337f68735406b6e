package store

import (
	"context"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
)

// NotificationKind is the kind of change a notification reports. The notifier
// names the kinds (and webhooks subscribe to them); a backend stores a kind as
// given and compares it only for equality.
type NotificationKind string

// NotificationState says whether a deployment entered the state a notification
// names or left it.
type NotificationState string

// Notification states.
const (
	Entered  NotificationState = "entered"
	Resolved NotificationState = "resolved"
)

// DeliveryState is how one notification's delivery to one webhook stands.
type DeliveryState string

// Delivery states: pending until the webhook accepts it (delivered) or the
// notifier gives up (failed).
const (
	Pending   DeliveryState = "pending"
	Delivered DeliveryState = "delivered"
	Failed    DeliveryState = "failed"
)

// NotificationDeployment names the deployment a notification is about, as it
// was when the notification was recorded.
type NotificationDeployment struct {
	ID, Name, Customer, Cloud, Region, Release string
}

// Notification is one change, as recorded, with its deliveries to the webhooks
// that take its kind.
type Notification struct {
	ID         string
	Kind       NotificationKind
	State      NotificationState
	Deployment NotificationDeployment
	// Status is the deployment's status after the change; PreviousStatus the one
	// it left ("" when unknown, and for kinds that are not a status).
	Status, PreviousStatus fleet.Status
	Reason, ReasonCode     string
	// BehindReason is why the deployment is (or was) behind its desired release,
	// for notifications about that.
	BehindReason fleet.BehindReason
	// At is when the change happened; CreatedAt is when it had held long enough
	// and was recorded.
	At, CreatedAt time.Time
	// Deliveries are in the order they were added, one per webhook.
	Deliveries []Delivery
}

// Delivery is one notification's delivery to one webhook.
type Delivery struct {
	Webhook   string
	State     DeliveryState
	Attempts  int
	LastError string
	// NextAttempt is when a pending delivery is tried next (zero: at once).
	NextAttempt time.Time
	DeliveredAt time.Time
	UpdatedAt   time.Time
}

// NotificationQuery selects recorded notifications.
type NotificationQuery struct {
	// Deployment keeps one deployment's notifications ("" keeps all).
	Deployment string
	// State keeps notifications with a delivery in this DeliveryState (pending,
	// delivered, failed), or of this NotificationState (entered, resolved); ""
	// keeps all.
	State string
	// Limit bounds how many are returned; zero or less returns all.
	Limit int
}

// Notifications persists the notifications the notifier records and the state
// of each of their deliveries, under the rules of the package documentation.
// Times come back in UTC, so a notification read back is equal (by
// reflect.DeepEqual) to the one written, with its deliveries' updates applied.
type Notifications interface {
	// AddNotification records n with its deliveries, atomically; ErrConflict if
	// a notification with n's id exists or n names a webhook twice, in which
	// case nothing is recorded.
	AddNotification(ctx context.Context, n Notification) error
	// UpdateDelivery records the state of notification id's delivery to
	// d.Webhook; ErrNotFound when there is no such delivery.
	UpdateDelivery(ctx context.Context, id string, d Delivery) error
	// PendingNotifications returns the notifications with a pending delivery,
	// oldest (first added) first, with all their deliveries.
	PendingNotifications(ctx context.Context) ([]Notification, error)
	// LatestNotifications returns the newest (last added) notification of each
	// deployment and kind, which says what was last sent about it, oldest first.
	LatestNotifications(ctx context.Context) ([]Notification, error)
	// ListNotifications returns the notifications q selects, newest (last added)
	// first.
	ListNotifications(ctx context.Context, q NotificationQuery) ([]Notification, error)
}
