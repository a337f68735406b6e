package apitypes

import (
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
)

// NotificationEvent is what a webhook of format json receives as its body: one
// deployment entering or leaving a state worth telling someone about.
type NotificationEvent struct {
	ID string `json:"id"`
	// Kind is unhealthy, stale, failed, behind or rollout.
	Kind string `json:"kind"`
	// State is entered or resolved.
	State      string                 `json:"state"`
	Deployment NotificationDeployment `json:"deployment"`
	// Status is the deployment's status after the change.
	Status fleet.Status `json:"status"`
	// PreviousStatus is the status the change left ("" when not known, and for behind).
	PreviousStatus fleet.Status `json:"previous_status"`
	Reason         string       `json:"reason"`
	ReasonCode     string       `json:"reason_code"`
	// BehindReason is why the deployment is (or was) behind; set for kind behind only.
	BehindReason fleet.BehindReason `json:"behind_reason,omitempty"`
	// At is when the change happened.
	At time.Time `json:"at"`
}

// NotificationDeployment names the deployment a notification is about.
type NotificationDeployment struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Customer string `json:"customer"`
	Cloud    string `json:"cloud"`
	Region   string `json:"region"`
	Release  string `json:"release"`
}

// Notification is a notification as GET /api/v1/notifications lists it: the
// event webhooks receive, when it was created, and how each delivery went.
type Notification struct {
	NotificationEvent
	// CreatedAt is when the change had held for the debounce time and was recorded.
	CreatedAt  time.Time              `json:"created_at"`
	Deliveries []NotificationDelivery `json:"deliveries"`
}

// NotificationDelivery is one notification's delivery to one webhook.
type NotificationDelivery struct {
	Webhook string `json:"webhook"`
	// State is pending, delivered or failed.
	State     string `json:"state"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
	// NextAttempt is when a pending delivery is tried next.
	NextAttempt *time.Time `json:"next_attempt"`
	DeliveredAt *time.Time `json:"delivered_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// NotificationList is the answer of GET /api/v1/notifications, newest first.
type NotificationList struct {
	Items []Notification `json:"items"`
}
