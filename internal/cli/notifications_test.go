package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// TestNotificationsVerb runs the verb against a real manager that notified two
// webhooks of one deployment going unhealthy: one took it, one refused it. Once
// both have the request the manager is restarted, as its shutdown waits for the
// deliveries to be recorded.
func TestNotificationsVerb(t *testing.T) {
	ctx := context.Background()
	hit := make(chan struct{}, 2) // room for the one request each webhook should get
	got := func() {
		select {
		case hit <- struct{}{}:
		default:
		}
	}
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got() }))
	defer ok.Close()
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got()
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	defer gone.Close()
	const token = "psk_cli-notifications-admin"
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", t.TempDir(), token
	cfg.Notifications.Debounce = 0
	cfg.Notifications.Webhooks = []config.Webhook{{Name: "ops", URL: ok.URL}, {Name: "gone", URL: gone.URL, Format: "slack"}}
	m, err := manager.New(cfg, manager.Settings{Clock: clock.NewFake(now)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(ctx)
	api := apiclient.New(m.URL(), token)
	if _, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme-prod", Customer: "acme", Stack: "app"}); err != nil {
		t.Fatal(err)
	}
	down := &fleet.Health{Reported: true, Components: map[string]fleet.ComponentHealth{"db": {LastError: "disk full"}}}
	if _, err := m.Registry().Checkin("acme-prod", registry.Report{Description: &registry.Description{Release: "2.0.0"}, Health: down}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-hit:
		case <-time.After(10 * time.Second):
			t.Fatal("the webhooks did not both get the notification")
		}
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err = manager.New(cfg, manager.Settings{Clock: clock.NewFake(now)}); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(ctx)
	api = apiclient.New(m.URL(), token)
	failed, _ := api.Notifications(ctx, apiclient.NotificationFilter{State: "failed"})
	delivered, _ := api.Notifications(ctx, apiclient.NotificationFilter{State: "delivered"})
	if len(failed) != 1 || len(delivered) != 1 {
		t.Fatal("the notification was not delivered to one webhook and refused by the other")
	}

	run := func(args ...string) (string, error) {
		t.Setenv("XDG_CONFIG_HOME", t.TempDir())
		t.Setenv("PERISCOPE_MANAGER", "")
		t.Setenv("PERISCOPE_TOKEN", "")
		root := newRoot(clock.NewFake(now))
		var stdout bytes.Buffer
		root.SetOut(&stdout)
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append(args, "--manager", m.URL(), "--token", token))
		err := root.Execute()
		return stdout.String(), err
	}
	out, err := run("notifications", "--state", "failed")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "AT ") || !strings.Contains(lines[0], "LAST ERROR") {
		t.Fatalf("table =\n%s\nwant a header and one row per webhook", out)
	}
	for _, want := range [][]string{{"acme-prod", "unhealthy", "entered", "ops", "delivered", " 1 "}, {"gone", "failed", "answered 404 Not Found: no such hook"}} {
		row := strings.Join([]string{lines[1], lines[2]}, "\n")
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("rows\n%s\nlack %q", row, w)
			}
		}
	}

	out, err = run("notifications", "--deployment", "acme-prod", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	ns := listItems[apitypes.Notification](t, out)
	if len(ns) != 1 || ns[0].Reason != "components down: db: disk full" || len(ns[0].Deliveries) != 2 || ns[0].Deliveries[1].State != "failed" {
		t.Errorf("json = %+v", ns)
	}
	if out, err := run("notifications", "--deployment", "nobody", "-o", "json"); err != nil || len(listItems[apitypes.Notification](t, out)) != 0 {
		t.Errorf("no notifications: %q, %v; want no items", out, err)
	}
	if _, err := run("notifications", "--state", "lost"); err == nil || !strings.Contains(err.Error(), "--state") {
		t.Errorf("a bad --state: err = %v", err)
	}
}
