package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Notifications sends deployments' status changes to webhooks.
type Notifications struct {
	// Webhooks receive the notifications; with none, nothing is sent or recorded.
	Webhooks []Webhook `yaml:"webhooks"`
	// Debounce is how long a change must hold before it is sent, so a flapping
	// deployment sends nothing; 0 sends every change at once.
	Debounce Duration `yaml:"debounce" env:"DEBOUNCE"`
	// BehindAfter is how long a deployment must be behind its desired release
	// before that is sent.
	BehindAfter Duration `yaml:"behind_after" env:"BEHIND_AFTER"`
	// MaxAttempts bounds the deliveries of one notification to one webhook.
	MaxAttempts int `yaml:"max_attempts" env:"MAX_ATTEMPTS"`
}

// Webhook is one receiver of notifications.
type Webhook struct {
	// Name identifies the webhook in logs, metrics and the API; the URL never
	// appears there, since chat webhook URLs are secrets.
	Name string `yaml:"name"`
	// URL is where notifications are POSTed.
	URL string `yaml:"url"`
	// Format is json (the default: one event object) or slack (text and blocks,
	// which Slack and chat tools with Slack-compatible webhooks accept).
	Format string `yaml:"format"`
	// Headers are sent with every request (an Authorization header, say); they
	// are never logged. A map has no PERISCOPE_* form: set them in the file.
	Headers map[string]string `yaml:"headers"`
	// Statuses are the kinds of change sent: a deployment entering or leaving
	// unhealthy, stale or failed, behind (its desired release for longer than
	// BehindAfter), and rollout (a progressive rollout halted, completed or was
	// aborted). Empty means all five.
	Statuses []string `yaml:"statuses"`
}

// DefaultNotifications returns a 2m debounce, behind after 1h and 8 attempts.
func DefaultNotifications() Notifications {
	return Notifications{Debounce: Duration(2 * time.Minute), BehindAfter: Duration(time.Hour), MaxAttempts: 8}
}

// Wants reports whether the webhook takes notifications of kind.
func (w Webhook) Wants(kind string) bool {
	if len(w.Statuses) == 0 {
		return true
	}
	for _, s := range w.Statuses {
		if s == kind {
			return true
		}
	}
	return false
}

func (n Notifications) validate(field string) error {
	var errs []error
	if n.Debounce < 0 {
		errs = append(errs, fmt.Errorf("%s.debounce: must not be negative (0 sends every change at once)", field))
	}
	if n.BehindAfter <= 0 {
		errs = append(errs, fmt.Errorf("%s.behind_after: must be positive, got %s", field, time.Duration(n.BehindAfter)))
	}
	if n.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("%s.max_attempts: must be at least 1", field))
	}
	names := map[string]bool{}
	for i, w := range n.Webhooks {
		at := fmt.Sprintf("%s.webhooks[%d]", field, i)
		if w.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: must be set", at))
		} else if names[w.Name] {
			errs = append(errs, fmt.Errorf("%s: name %q is used twice", at, w.Name))
		}
		names[w.Name] = true
		// The URL is not echoed: a Slack webhook URL is its own credential.
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.url: is not an http(s) URL", at))
		}
		if w.Format != "" && w.Format != "json" && w.Format != "slack" {
			errs = append(errs, fmt.Errorf("%s.format: %q must be json or slack", at, w.Format))
		}
		for k := range w.Headers {
			if k == "" || strings.ContainsAny(k, " \t\r\n:") {
				errs = append(errs, fmt.Errorf("%s.headers: %q is not a header name", at, k))
			}
		}
		seen := map[string]bool{}
		for _, s := range w.Statuses {
			switch {
			case !validKind(s):
				errs = append(errs, fmt.Errorf("%s.statuses: %q must be unhealthy, stale, failed, behind or rollout", at, s))
			case seen[s]:
				errs = append(errs, fmt.Errorf("%s.statuses: %q is listed twice", at, s))
			}
			seen[s] = true
		}
	}
	return errors.Join(errs...)
}

func validKind(s string) bool {
	switch s {
	case "unhealthy", "stale", "failed", "behind", "rollout":
		return true
	}
	return false
}
