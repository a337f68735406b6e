package web

import (
	"net/http"
	"strings"

	"github.com/periscope-dev/periscope/internal/store"
)

// The notifications page: what the notifier recorded (GET
// /api/v1/notifications is its JSON twin), newest first, with each webhook's
// delivery state, attempts and last error.

// notificationsShown bounds the page.
const notificationsShown = 200

// notificationStates are the filter's choices: a delivery state or whether the
// deployment entered or left the state the notification names.
var notificationStates = []string{
	string(store.Pending), string(store.Delivered), string(store.Failed), string(store.Entered), string(store.Resolved),
}

// notificationsData is the notifications page.
type notificationsData struct {
	// Configured is false when no webhook is configured (s.notes is nil).
	Configured        bool
	Deployment, State string
	States            []string
	Items             []store.Notification
	Limit             int
	Problem           string
}

func (s *Server) notificationsPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	q := r.URL.Query()
	d := notificationsData{Configured: s.notes != nil, Deployment: strings.TrimSpace(q.Get("deployment")), State: q.Get("state"),
		States: notificationStates, Limit: notificationsShown}
	if d.State != "" && !containsString(notificationStates, d.State) {
		s.fail(w, r, sess, http.StatusBadRequest, "Unknown state",
			"There is no notification state “"+d.State+"”: choose one of "+strings.Join(notificationStates, ", ")+".")
		return
	}
	if s.notes != nil {
		items, err := s.notes.List(r.Context(), store.NotificationQuery{Deployment: d.Deployment, State: d.State, Limit: d.Limit})
		if err != nil {
			s.log.Error("notifications page", "err", err)
			d.Problem = "The recorded notifications could not be read; the manager log has the details."
		}
		d.Items = items
	}
	s.render(w, r, sess, http.StatusOK, "notifications", "Notifications", d)
}
