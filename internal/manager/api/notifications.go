package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/notify"
	"github.com/periscope-dev/periscope/internal/store"
)

// Notifications is what the API needs of the notifier.
type Notifications interface {
	// List returns recorded notifications, newest first.
	List(ctx context.Context, q store.NotificationQuery) ([]store.Notification, error)
}

// WithNotifications makes GET /api/v1/notifications answer from n, and returns
// a for chaining. Without it, or with a nil n (no webhook configured), the route
// answers 503.
func (a *API) WithNotifications(n Notifications) *API {
	n = orNil(n)
	a.notes = n
	return a
}

func (a *API) notificationRoutes() []Route {
	return []Route{
		{"GET", "/api/v1/notifications", auth.RoleViewer, a.listNotifications},
	}
}

func (a *API) listNotifications(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	if unavailable(w, a.notes == nil, "this manager has no notification webhooks configured") {
		return
	}
	limit, err := intParam(r, "limit", 100, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	q := store.NotificationQuery{Deployment: r.URL.Query().Get("deployment"), State: r.URL.Query().Get("state"), Limit: limit}
	switch q.State {
	case "", string(store.Pending), string(store.Delivered), string(store.Failed), string(store.Entered), string(store.Resolved):
	default:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("state: %q must be pending, delivered or failed (of a delivery) or entered or resolved", q.State))
		return
	}
	ns, err := a.notes.List(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := apitypes.NotificationList{Items: make([]apitypes.Notification, len(ns))}
	for i, n := range ns {
		out.Items[i] = NotificationJSON(n)
	}
	writeJSON(w, http.StatusOK, out)
}

// NotificationJSON converts a recorded notification to its API shape.
func NotificationJSON(n store.Notification) apitypes.Notification {
	out := apitypes.Notification{NotificationEvent: notify.Event(&n), CreatedAt: n.CreatedAt.UTC(), Deliveries: make([]apitypes.NotificationDelivery, len(n.Deliveries))}
	for i, d := range n.Deliveries {
		out.Deliveries[i] = apitypes.NotificationDelivery{Webhook: d.Webhook, State: string(d.State), Attempts: d.Attempts, LastError: d.LastError,
			NextAttempt: timePtr(d.NextAttempt), DeliveredAt: timePtr(d.DeliveredAt), UpdatedAt: d.UpdatedAt.UTC()}
	}
	return out
}
