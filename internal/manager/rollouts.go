package manager

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/notify"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
)

// rolloutActor is who the audit trail says acted when the manager itself
// starts a rollout or the engine pins back.
const rolloutActor = "rollout"

// rolloutFleet adapts the registry to the rollout engine: the fleet it reads,
// the pins it sets, and the decisions the registry asks it for. The engine
// and the registry need each other, so reg is set once the registry exists,
// before either starts.
type rolloutFleet struct {
	reg *registry.Registry
	eng *rollouts.Engine
	log *slog.Logger
}

// maxRolloutMembers bounds one read of the fleet for the engine: far above
// any fleet one manager serves, it only keeps a page size finite.
const maxRolloutMembers = 1 << 20

// Members implements rollouts.Fleet.
func (f *rolloutFleet) Members(stack string) []rollouts.Member {
	l, err := f.reg.ListPage(fleet.Filter{Stack: stack}, registry.Page{Limit: maxRolloutMembers})
	if err != nil {
		return nil
	}
	out := make([]rollouts.Member, 0, len(l.Items))
	for _, v := range l.Items {
		m := memberOf(&v.Deployment, v.Evaluation.Latest)
		m.Status, m.ReasonCode = v.Evaluation.Status, v.Evaluation.ReasonCode
		out = append(out, m)
	}
	return out
}

// memberOf is d as the engine sees it, without its status.
func memberOf(d *fleet.Deployment, latest string) rollouts.Member {
	return rollouts.Member{
		Subject: rolloutplan.Subject{ID: d.ID, Customer: d.Customer, Cloud: d.Cloud, Region: d.Region, Labels: d.Labels}, Stack: d.Stack, Latest: latest, Running: d.RunningRelease,
		Pin: d.Pin, Update: d.Update, Regression: d.Regression,
	}
}

// Pin implements rollouts.Pinner.
func (f *rolloutFleet) Pin(ctx context.Context, ids []string, release, actor, reason string) error {
	_, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: ids}, Action: fleet.ActionPin, Release: release,
		By: actor, ByRole: rolloutActor, Reason: reason})
	return err
}

// Unpin implements rollouts.Pinner.
func (f *rolloutFleet) Unpin(ctx context.Context, ids []string, actor, reason string) error {
	_, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: ids}, Action: fleet.ActionUnpin,
		By: actor, ByRole: rolloutActor, Reason: reason})
	return err
}

// rolloutNotices tells people about rollouts: always in the log, and through
// the webhooks that take the rollout kind when any is configured.
type rolloutNotices struct {
	log    *slog.Logger
	notify *notify.Notifier // nil without webhooks
}

// NotifyRollout implements rollouts.Notifier.
func (n rolloutNotices) NotifyRollout(ctx context.Context, rn rollouts.Notice) {
	lvl := slog.LevelInfo
	if rn.Kind == rollouts.NoticeHalted {
		lvl = slog.LevelWarn
	}
	n.log.Log(ctx, lvl, "rollout "+string(rn.Kind), "rollout", rn.Rollout, "stack", rn.Stack, "release", rn.Release, "wave", rn.Wave,
		"reason", rn.Reason, "pinned_back", rn.PinnedBack)
	if n.notify != nil {
		n.notify.NotifyRollout(ctx, rn)
	}
}

// Steer implements registry.Decider. It runs under the registry's locks;
// Decide only reads the engine's state.
func (f *rolloutFleet) Steer(d *fleet.Deployment, latest string, now time.Time) fleet.Steer {
	dec := f.eng.Decide(memberOf(d, latest), now)
	return fleet.Steer{Release: dec.Release, Behind: dec.Behind, Wave: dec.Wave, Expected: dec.Expected, Hold: dec.Hold}
}

// Published implements registry.Decider: a stack's new release rolls out
// through its plan, from the release it supersedes; a stack without a plan
// takes it everywhere at once.
func (f *rolloutFleet) Published(ctx context.Context, rel fleet.Release, baseline string) error {
	st, err := f.eng.StartRollout(ctx, rollouts.StartRequest{Stack: rel.Stack, Release: rel.Version, Baseline: baseline,
		Actor: rollouts.Actor{Name: rolloutActor, Role: rolloutActor, Reason: "release " + rel.Version + " published"}})
	switch {
	case errors.Is(err, rollouts.ErrNoPlan):
		return nil
	case err != nil && st.ID != "":
		// It started and holds the waves; only its first step failed, which
		// the engine's loop retries.
		f.log.Warn("rollout started but its first step failed; will retry", "rollout", st.ID, "err", err)
		return nil
	}
	return err
}
