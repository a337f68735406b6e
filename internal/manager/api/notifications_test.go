package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// TestNotificationsAreListed runs a manager with a webhook and lists what it
// sent: a deployment's unhealthy notification, delivered, filtered by
// deployment and state, for the viewer role. Once the webhook has the request,
// the manager is restarted: its shutdown waits for the delivery to be recorded,
// so the listing reads a settled state, and nothing is sent again.
func TestNotificationsAreListed(t *testing.T) {
	ctx := context.Background()
	var hits atomic.Int32
	hit := make(chan struct{}, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		select {
		case hit <- struct{}{}:
		default:
		}
	}))
	defer hook.Close()
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", t.TempDir(), admin
	cfg.Notifications.Debounce = 0
	cfg.Notifications.Webhooks = []config.Webhook{{Name: "ops", URL: hook.URL}}
	m, err := manager.New(cfg, manager.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(ctx)

	adm := apiclient.New(m.URL(), admin)
	var viewer apitypes.Token
	if err := adm.Do(ctx, "POST", "/api/v1/tokens", apitypes.NewToken{Name: "dash", Role: "viewer"}, &viewer); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateDeployments(ctx, []apitypes.NewDeployment{{ID: "acme-prod", Customer: "acme", Stack: "app"}, {ID: "beta", Customer: "b", Stack: "app"}}); err != nil {
		t.Fatal(err)
	}
	down := &fleet.Health{Reported: true, Components: map[string]fleet.ComponentHealth{"db": {LastError: "connection refused"}}}
	if _, err := m.Registry().Checkin("acme-prod", registry.Report{Description: &registry.Description{Release: "2.0.0"}, Health: down}); err != nil {
		t.Fatal(err)
	}

	select {
	case <-hit:
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook got no notification")
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err = manager.New(cfg, manager.Settings{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(ctx)
	c := apiclient.New(m.URL(), viewer.Secret)
	items, err := c.Notifications(ctx, apiclient.NotificationFilter{State: "delivered"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || hits.Load() != 1 {
		t.Fatalf("delivered notifications %+v after %d webhook requests, want one of each", items, hits.Load())
	}
	n := items[0]
	if n.Kind != "unhealthy" || n.State != "entered" || n.Deployment.ID != "acme-prod" || n.Deployment.Release != "2.0.0" ||
		n.Status != fleet.StatusUnhealthy || n.Reason != "components down: db: connection refused" || n.CreatedAt.IsZero() ||
		len(n.Deliveries) != 1 || n.Deliveries[0].Webhook != "ops" || n.Deliveries[0].Attempts != 1 || n.Deliveries[0].DeliveredAt == nil {
		t.Errorf("notification = %+v", n)
	}
	for _, tc := range []struct {
		f    apiclient.NotificationFilter
		want int
	}{
		{apiclient.NotificationFilter{}, 1},
		{apiclient.NotificationFilter{Deployment: "acme-prod", State: "entered"}, 1},
		{apiclient.NotificationFilter{Deployment: "beta"}, 0},
		{apiclient.NotificationFilter{State: "failed"}, 0},
	} {
		got, err := c.Notifications(ctx, tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("%+v: %d notifications, %v; want %d", tc.f, len(got), err, tc.want)
		}
	}
	for path, status := range map[string]int{"/api/v1/notifications?state=lost": 400, "/api/v1/notifications?limit=0": 400} {
		var ae *apiclient.Error
		if err := c.Do(ctx, "GET", path, nil, nil); !errors.As(err, &ae) || ae.Status != status || ae.Code != "invalid" {
			t.Errorf("GET %s: %v, want %d invalid", path, err, status)
		}
	}
	if err := apiclient.New(m.URL(), "").Do(ctx, "GET", "/api/v1/notifications", nil, nil); err == nil {
		t.Error("listed notifications without a token")
	}
}

// TestNotificationsWithoutWebhooks: a manager with no webhook says so.
func TestNotificationsWithoutWebhooks(t *testing.T) {
	m := start(t)
	_, err := apiclient.New(m.URL(), admin).Notifications(context.Background(), apiclient.NotificationFilter{})
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != "unavailable" {
		t.Fatalf("err = %v, want 503 unavailable", err)
	}
}

// TestOpenAPIDocumentsNotifications keeps the notification schemas and the
// route's parameters in the OpenAPI document true to the types and handler.
func TestOpenAPIDocumentsNotifications(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In string }
		} `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"NotificationEvent": apitypes.NotificationEvent{}, "NotificationDeployment": apitypes.NotificationDeployment{},
		"Notification": apitypes.Notification{}, "NotificationDelivery": apitypes.NotificationDelivery{},
		"NotificationList": apitypes.NotificationList{},
	} {
		got := []string{}
		for k := range doc.Components.Schemas[name].Properties {
			got = append(got, k)
		}
		sort.Strings(got)
		if want := jsonFields(reflect.TypeOf(v)); !reflect.DeepEqual(got, want) {
			t.Errorf("schema %s documents %v; the type sends %v", name, got, want)
		}
	}
	var params []string
	for _, p := range doc.Paths["/api/v1/notifications"]["get"].Parameters {
		params = append(params, p.In+":"+p.Name)
	}
	if want := []string{"query:deployment", "query:state", "query:limit"}; !reflect.DeepEqual(params, want) {
		t.Errorf("GET /api/v1/notifications documents %v, want %v", params, want)
	}
}
