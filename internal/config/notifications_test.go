package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestManagerNotificationsFromFileAndEnv(t *testing.T) {
	cfg := DefaultManager()
	n := cfg.Notifications
	if time.Duration(n.Debounce) != 2*time.Minute || time.Duration(n.BehindAfter) != time.Hour || n.MaxAttempts != 8 || len(n.Webhooks) != 0 {
		t.Fatalf("default notifications = %+v", n)
	}
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte(`notifications:
  debounce: 30s
  webhooks:
    - {name: pager, url: "https://hooks.example/periscope", headers: {Authorization: "Bearer s3cret"}, statuses: [unhealthy, failed]}
    - {name: slack, url: "https://hooks.slack.example/services/T0/B0/x", format: slack}
`), 0o600)
	env := []string{"PERISCOPE_NOTIFICATIONS_BEHIND_AFTER=3h", "PERISCOPE_NOTIFICATIONS_MAX_ATTEMPTS=3", "PERISCOPE_NOTIFICATIONS_DEBOUNCE=0s"}
	if err := Load(&cfg, path, env); err != nil {
		t.Fatal(err)
	}
	n = cfg.Notifications
	if n.Debounce != 0 || time.Duration(n.BehindAfter) != 3*time.Hour || n.MaxAttempts != 3 || len(n.Webhooks) != 2 {
		t.Fatalf("notifications = %+v", n)
	}
	pager, slack := n.Webhooks[0], n.Webhooks[1]
	if pager.Headers["Authorization"] != "Bearer s3cret" || pager.Format != "" || slack.Format != "slack" {
		t.Fatalf("webhooks = %+v", n.Webhooks)
	}
	for kind, want := range map[string][2]bool{"unhealthy": {true, true}, "failed": {true, true}, "stale": {false, true}, "behind": {false, true}} {
		if pager.Wants(kind) != want[0] || slack.Wants(kind) != want[1] {
			t.Errorf("%s: pager wants %v, slack wants %v; want %v", kind, pager.Wants(kind), slack.Wants(kind), want)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestManagerNotificationsAreValidated(t *testing.T) {
	cfg := DefaultManager()
	cfg.Notifications = Notifications{Debounce: Duration(-time.Second), MaxAttempts: 0, Webhooks: []Webhook{
		{Name: "ops", URL: "ftp://hooks.example/x?token=s3cret", Format: "xml", Headers: map[string]string{"Bad Header": "x"},
			Statuses: []string{"unhealthy", "sad", "unhealthy"}},
		{Name: "ops", URL: "https://hooks.example/y"},
		{URL: "https://hooks.example/z"},
	}}
	err := cfg.Validate()
	for _, want := range []string{
		"notifications.debounce", "notifications.behind_after", "notifications.max_attempts",
		"notifications.webhooks[0].url: is not an http(s) URL", `notifications.webhooks[0].format: "xml"`,
		`notifications.webhooks[0].headers: "Bad Header"`, `notifications.webhooks[0].statuses: "sad"`,
		`notifications.webhooks[0].statuses: "unhealthy" is listed twice`,
		`notifications.webhooks[1]: name "ops" is used twice`, "notifications.webhooks[2].name: must be set",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Validate() = %v repeats the webhook URL's token", err)
	}
	if err := Load(&cfg, "", []string{"PERISCOPE_NOTIFICATIONS_DEBOUNCE=soon"}); err == nil || !strings.Contains(err.Error(), "PERISCOPE_NOTIFICATIONS_DEBOUNCE") {
		t.Errorf("bad env debounce: err = %v", err)
	}
}
