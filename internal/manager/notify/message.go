package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/store"
)

// Event is n as webhooks of format json receive it, and as the API lists it.
func Event(n *store.Notification) apitypes.NotificationEvent {
	d := n.Deployment
	return apitypes.NotificationEvent{ID: n.ID, Kind: string(n.Kind), State: string(n.State),
		Deployment: apitypes.NotificationDeployment{ID: d.ID, Name: d.Name, Customer: d.Customer, Cloud: d.Cloud, Region: d.Region, Release: d.Release},
		Status:     n.Status, PreviousStatus: n.PreviousStatus, Reason: n.Reason, ReasonCode: n.ReasonCode, BehindReason: n.BehindReason,
		At: n.At.UTC()}
}

// payload is the request body for a webhook of format.
func payload(format string, n *store.Notification) ([]byte, error) {
	if format == "slack" {
		return json.Marshal(slackMessage(n))
	}
	return json.Marshal(Event(n))
}

// slack is a Slack incoming-webhook message: text for notifications and
// clients without blocks, blocks for the channel.
type slack struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func slackMessage(n *store.Notification) slack {
	line := Summary(n)
	d := n.Deployment
	var facts []string
	if d.Customer != "" {
		facts = append(facts, "customer "+d.Customer)
	}
	if where := strings.TrimSpace(d.Cloud + " " + d.Region); where != "" {
		facts = append(facts, where)
	}
	if d.Release != "" {
		facts = append(facts, "release "+d.Release)
	}
	status := "status " + string(n.Status)
	if n.PreviousStatus != "" && n.PreviousStatus != n.Status {
		status += " (was " + string(n.PreviousStatus) + ")"
	}
	facts = append(facts, status, "deployment "+d.ID, n.At.UTC().Format(time.RFC3339))
	return slack{Text: slackEscape(line), Blocks: []slackBlock{
		{Type: "section", Text: &slackText{Type: "mrkdwn", Text: slackEscape(line)}},
		{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: slackEscape(strings.Join(facts, " · "))}}},
	}}
}

// Summary says in one line what happened, with an emoji code for chat, such as
// ":red_circle: acme-prod is unhealthy on 2.0.0: components down: db".
func Summary(n *store.Notification) string {
	name := n.Deployment.Name
	if name == "" {
		name = n.Deployment.ID
	}
	on := ""
	if n.Deployment.Release != "" {
		on = " on " + n.Deployment.Release
	}
	because := ""
	if n.Reason != "" {
		because = ": " + n.Reason
	}
	if n.Kind == KindRollout {
		icon := ":octagonal_sign:"
		if n.State == store.Resolved {
			icon = ":white_circle:"
		}
		return icon + " " + n.Reason
	}
	if n.State == store.Resolved {
		switch {
		case n.Kind == KindBehind:
			return fmt.Sprintf(":large_green_circle: %s is no longer behind%s", name, because)
		case n.Status == fleet.StatusHealthy:
			return fmt.Sprintf(":large_green_circle: %s recovered (healthy)", name)
		default:
			return fmt.Sprintf(":white_circle: %s is no longer %s (now %s%s)", name, n.Kind, n.Status, because)
		}
	}
	switch n.Kind {
	case KindUnhealthy:
		return fmt.Sprintf(":red_circle: %s is unhealthy%s%s", name, on, because)
	case KindFailed:
		return fmt.Sprintf(":x: %s has failed%s%s", name, on, because)
	case KindStale:
		return fmt.Sprintf(":large_orange_circle: %s is stale%s%s", name, on, because)
	default:
		reason := ""
		if n.BehindReason != "" {
			reason = " (" + string(n.BehindReason) + ")"
		}
		return fmt.Sprintf(":hourglass_flowing_sand: %s is behind its desired release%s%s", name, because, reason)
	}
}

// slackEscape escapes the three characters Slack's message format reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
