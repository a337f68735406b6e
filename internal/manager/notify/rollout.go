package notify

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/store"
)

// NotifyRollout queues a notification of rollout notice rn to the webhooks
// that take the rollout kind: a halt enters, a completion or an abort
// resolves. It implements rollouts.Notifier and only queues.
func (n *Notifier) NotifyRollout(_ context.Context, rn rollouts.Notice) {
	note := &store.Notification{ID: uuid.NewString(), Kind: KindRollout, State: store.Resolved, At: rn.At.UTC(), CreatedAt: n.clk.Now().UTC(),
		ReasonCode: "rollout-" + string(rn.Kind), Reason: rolloutReason(rn),
		Deployment: store.NotificationDeployment{Release: rn.Release}}
	if rn.Kind == rollouts.NoticeHalted {
		note.State = store.Entered
	}
	if len(rn.PinnedBack) > 0 {
		note.Deployment.ID = rn.PinnedBack[0]
	}
	for _, h := range n.hooks {
		if h.cfg.Wants(string(KindRollout)) {
			note.Deliveries = append(note.Deliveries, store.Delivery{Webhook: h.cfg.Name, State: store.Pending, UpdatedAt: note.CreatedAt})
		}
	}
	if len(note.Deliveries) == 0 {
		return
	}
	n.enqueue(func() { n.notes = append(n.notes, note) })
}

// rolloutReason says what happened to the rollout and why, in words.
func rolloutReason(rn rollouts.Notice) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rollout %s of %s to %s %s", rn.Rollout, rn.Release, rn.Stack, rn.Kind)
	if rn.Wave != "" {
		fmt.Fprintf(&b, " at wave %s", rn.Wave)
	}
	if rn.Reason != "" {
		b.WriteString(": " + rn.Reason)
	}
	if len(rn.PinnedBack) > 0 {
		b.WriteString("; pinned back " + strings.Join(rn.PinnedBack, ", "))
	}
	return b.String()
}
