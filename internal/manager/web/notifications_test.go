package web_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/store"
)

// notes is a notifier's recorded notifications, answered as stored and
// remembering what it was asked.
type notes struct {
	items []store.Notification
	asked []store.NotificationQuery
}

func (n *notes) List(_ context.Context, q store.NotificationQuery) ([]store.Notification, error) {
	n.asked = append(n.asked, q)
	return n.items, nil
}

var notificationRowRE = regexp.MustCompile(`(?s)<tr data-notification="[^"]*".*?</tr>`)

func TestNotificationsShowDeliveriesEscaped(t *testing.T) {
	at := time.Date(2026, 3, 1, 11, 58, 0, 0, time.UTC)
	n := &notes{items: []store.Notification{{
		ID: "n-" + xss, Kind: "unhealthy", State: store.Entered,
		Deployment: store.NotificationDeployment{ID: "acme-prod", Customer: xss, Release: "2.0.0-" + xss},
		Status:     fleet.StatusUnhealthy, PreviousStatus: fleet.StatusHealthy, Reason: "error rate 50% " + xss,
		At: at, CreatedAt: at.Add(2 * time.Minute),
		Deliveries: []store.Delivery{
			{Webhook: "ops-" + xss, State: store.Delivered, Attempts: 1, DeliveredAt: at.Add(2 * time.Minute)},
			{Webhook: "pager", State: store.Pending, Attempts: 3, LastError: "503 from " + xss, NextAttempt: at.Add(5 * time.Minute)},
		},
	}}}
	f := newFixture(t, web.Settings{Notifications: n})
	b := f.signIn(auth.RoleViewer)
	res := b.get("/notifications?deployment=acme-prod&state=pending")
	page := body(t, res)
	if res.Code != http.StatusOK {
		t.Fatalf("GET /notifications: %d\n%s", res.Code, page)
	}
	noRaw(t, page)
	if len(n.asked) != 1 || n.asked[0].Deployment != "acme-prod" || n.asked[0].State != "pending" {
		t.Errorf("the filters did not reach the notifier: %+v", n.asked)
	}
	rows := notificationRowRE.FindAllString(page, -1)
	if len(rows) != 1 {
		t.Fatalf("%d notification rows, want 1:\n%s", len(rows), page)
	}
	for _, want := range []string{
		`data-notification="n-` + esc(xss) + `"`, "error rate 50% " + esc(xss),
		"ops-" + esc(xss), `<span class="dl-delivered">delivered</span>, 1 attempt`,
		`<span class="dl-pending">pending</span>, 3 attempts`, "last error: 503 from " + esc(xss), "next <time datetime=\"2026-03-01T12:03:00Z\" title=\"2026-03-01T12:03:00Z\">3 min from now</time>",
	} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("the row lacks %q:\n%s", want, rows[0])
		}
	}
	if res := b.get("/notifications?state=bogus"); res.Code != http.StatusBadRequest {
		t.Errorf("an unknown state: %d, want 400", res.Code)
	}
}

func TestNotificationsWithoutWebhookSayHowToConfigureOne(t *testing.T) {
	page := body(t, newFixture(t, web.Settings{}).signIn(auth.RoleViewer).get("/notifications"))
	for _, want := range []string{"No webhook is configured", "notifications:\n  webhooks:\n    - name:"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, `id="notifications"`) {
		t.Error("a manager without webhooks shows a notifications table")
	}
}
