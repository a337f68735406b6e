package fleet

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Status is a deployment's lifecycle status, derived by Evaluate.
type Status string

// The statuses of PRODUCT.md.
const (
	StatusPending   Status = "pending"
	StatusHealthy   Status = "healthy"
	StatusUnhealthy Status = "unhealthy"
	StatusUpdating  Status = "updating"
	StatusFailed    Status = "failed"
	StatusStale     Status = "stale"
)

// Statuses lists every status, in the order the fleet summary shows them.
var Statuses = []Status{StatusHealthy, StatusUnhealthy, StatusUpdating, StatusFailed, StatusStale, StatusPending}

// ParseStatus returns the status named s, or an error naming the valid ones.
func ParseStatus(s string) (Status, error) {
	for _, st := range Statuses {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown status %q (want one of healthy, unhealthy, updating, failed, stale, pending)", s)
}

// BehindReason says why a deployment is not running what it should.
type BehindReason string

// Reasons a deployment is behind.
const (
	// BehindPullPending: a polling deployment has not polled since its desired release changed.
	BehindPullPending BehindReason = "pull-pending"
	// BehindUnreachable: a push deployment's connection is lost.
	BehindUnreachable BehindReason = "unreachable"
	// BehindConfigDrift: the reported configuration hash differs from the expected one.
	BehindConfigDrift BehindReason = "config-drift"
	// BehindUpdateFailed: the last attempt to apply the desired release failed.
	BehindUpdateFailed BehindReason = "update-failed"
	// BehindAwaitingApply: a connected push deployment has the desired release but has
	// not started applying it.
	BehindAwaitingApply BehindReason = "awaiting-apply"
	// BehindManualApply: the agent cannot apply releases itself (no update hook, or
	// not a Periscope agent); someone must redeploy it on the desired release.
	BehindManualApply BehindReason = "manual-apply"
	// BehindPinned: the deployment runs what its pin asks, which is not the latest.
	// It appears only in views of deployments behind the latest release.
	BehindPinned BehindReason = "pinned"
)

// BehindReasons lists the reasons a deployment is behind its desired release.
var BehindReasons = []BehindReason{BehindPullPending, BehindUnreachable, BehindConfigDrift, BehindUpdateFailed, BehindAwaitingApply, BehindManualApply}

// Reason codes: the machine-readable cause of a status, for filters and alerts.
const (
	ReasonNoCheckin      = "no-checkin"
	ReasonApplying       = "applying"
	ReasonUpdateFailed   = "update-failed"
	ReasonComponentsDown = "components-down"
	// ReasonThresholdExceeded: every component down is a runtime threshold
	// the agent found crossed (thresholds.ComponentPrefix), nothing crashed.
	ReasonThresholdExceeded = "threshold-exceeded"
	ReasonAgentUnhealthy    = "agent-unhealthy"
	ReasonRegressed         = "regressed-after-release"
)

// StackReleases is what status needs to know of a stack's releases.
type StackReleases struct {
	// Latest is the newest version ("" when the stack has no release).
	Latest string
	// Releases are the stack's releases, newest version first.
	Releases []Release
}

// NewStackReleases picks stack's releases out of all, newest version first.
func NewStackReleases(all []Release, stack string) StackReleases {
	var s StackReleases
	for _, r := range all {
		if r.Stack == stack {
			s.Releases = append(s.Releases, r)
		}
	}
	sort.SliceStable(s.Releases, func(i, j int) bool { return CompareVersions(s.Releases[i].Version, s.Releases[j].Version) > 0 })
	if len(s.Releases) > 0 {
		s.Latest = s.Releases[0].Version
	}
	return s
}

// Has reports whether version is one of the stack's releases.
func (s StackReleases) Has(version string) bool {
	for _, r := range s.Releases {
		if r.Version == version {
			return true
		}
	}
	return false
}

// behindLatest counts the releases newer than running and finds when the first
// of them was published, which is when running was superseded.
func (s StackReleases) behindLatest(running string) (n int, supersededAt time.Time) {
	if running == "" {
		return 0, time.Time{}
	}
	for _, r := range s.Releases {
		if CompareVersions(r.Version, running) > 0 {
			n++
			if supersededAt.IsZero() || r.CreatedAt.Before(supersededAt) {
				supersededAt = r.CreatedAt
			}
		}
	}
	return n, supersededAt
}

// Params are the fleet-wide settings status depends on.
type Params struct {
	// HeartbeatInterval is how often agents are expected to check in.
	HeartbeatInterval time.Duration
	// StaleAfter is how long without a check-in before a deployment is stale.
	StaleAfter time.Duration
	// LossQuietWindow is how long after its agent last dropped telemetry a
	// deployment still shows it; zero means DefaultLossQuietWindow.
	LossQuietWindow time.Duration
}

// DefaultLossQuietWindow is how long telemetry loss stays shown beside the status
// after the last record was dropped.
const DefaultLossQuietWindow = 15 * time.Minute

// DefaultParams returns a 30 s heartbeat, staleness after three missed heartbeats
// and loss shown for DefaultLossQuietWindow.
func DefaultParams() Params {
	return Params{HeartbeatInterval: 30 * time.Second, StaleAfter: 90 * time.Second, LossQuietWindow: DefaultLossQuietWindow}
}

// Evaluation is what Evaluate concludes about one deployment at one instant.
type Evaluation struct {
	Status Status `json:"status"`
	// Reason explains a status other than healthy and pending, for people.
	Reason string `json:"status_reason,omitempty"`
	// ReasonCode is the machine-readable cause (see the Reason… constants).
	ReasonCode string `json:"status_reason_code,omitempty"`
	// Since is when the current status began, when it can be derived from state
	// alone (stale: the missed deadline). Zero otherwise.
	Since time.Time `json:"-"`
	// Desired is the release the deployment should run: its pin, else the latest.
	Desired string `json:"desired_release"`
	// Latest is the newest release of the deployment's stack ("" when none exist).
	Latest string `json:"latest_release"`
	// Pinned is true when a pin holds the deployment.
	Pinned bool `json:"pinned"`
	// Behind is set when the deployment runs something other than Desired (or
	// drifted from its expected configuration) and is not updating.
	Behind BehindReason `json:"behind,omitempty"`
	// NextPollExpected is when a pull-pending deployment is expected to poll.
	NextPollExpected time.Time `json:"next_poll_expected,omitzero"`
	// VersionsBehind counts the stack's releases newer than the running one.
	VersionsBehind int `json:"versions_behind"`
	// SupersededAt is when the running release stopped being the latest (the
	// first newer release's publication); zero while it is the latest.
	SupersededAt time.Time `json:"superseded_at,omitzero"`
	// Loss is ReasonTelemetryDropped, shown beside the status whatever it is, while
	// the agent dropped telemetry within Params.LossQuietWindow; "" otherwise.
	Loss string `json:"loss,omitempty"`
	// LossReason says how much was dropped, of what and when, for people.
	LossReason string `json:"loss_reason,omitempty"`
}

// BehindLatest is why a deployment does not run its stack's latest release: the
// reason it is behind its desired release, else its pin; "" when it runs the
// latest (or the stack has no release).
func (e Evaluation) BehindLatest() BehindReason {
	if e.VersionsBehind == 0 {
		return ""
	}
	if e.Behind != "" {
		return e.Behind
	}
	if e.Pinned {
		return BehindPinned
	}
	return BehindAwaitingApply
}

// Evaluate derives a deployment's status from what the manager knows and the time.
// s holds the releases of the deployment's stack.
// It is pure: the same inputs always give the same answer.
func Evaluate(d *Deployment, s StackReleases, now time.Time, p Params) Evaluation {
	e := Evaluation{Latest: s.Latest, Desired: s.Latest}
	if d.Pin != nil {
		e.Pinned = true
		e.Desired = d.Pin.Release
	}
	if e.Desired == "" {
		e.Desired = d.RunningRelease
	}
	e.VersionsBehind, e.SupersededAt = s.behindLatest(d.RunningRelease)

	switch {
	case d.LastCheckin.IsZero():
		e.Status = StatusPending
		return e
	case now.Sub(d.LastCheckin) > p.StaleAfter:
		e.Status, e.ReasonCode = StatusStale, ReasonNoCheckin
		e.Since = d.LastCheckin.Add(p.StaleAfter)
		e.Reason = "no check-in since " + d.LastCheckin.UTC().Format(time.RFC3339)
	case d.Update.Phase == UpdateApplying && d.Update.Release != d.RunningRelease:
		e.Status, e.ReasonCode = StatusUpdating, ReasonApplying
		e.Reason = "applying " + d.Update.Release
	case d.Update.Phase == UpdateFailed && d.Update.Release == e.Desired && d.RunningRelease != e.Desired:
		e.Status, e.ReasonCode = StatusFailed, ReasonUpdateFailed
		e.Reason = "update to " + d.Update.Release + " failed"
		if d.Update.Error != "" {
			e.Reason += ": " + d.Update.Error
		}
	case d.Health.Reported && !d.Health.Healthy:
		e.Status = StatusUnhealthy
		e.Reason, e.ReasonCode = unhealthyReason(d.Health)
	case d.Regression != nil && d.Regression.Release == d.RunningRelease:
		e.Status, e.ReasonCode = StatusUnhealthy, ReasonRegressed
		e.Reason = "regressed after release: " + d.Regression.Summary()
	default:
		e.Status = StatusHealthy
	}
	if l := d.TelemetryLoss; l != nil && l.Records > 0 {
		if now.Sub(l.Last) < p.lossQuiet() {
			e.Loss, e.LossReason = ReasonTelemetryDropped, l.Summary()
		}
	}

	if e.Status == StatusUpdating {
		return e
	}
	switch {
	case d.RunningRelease != e.Desired:
		switch {
		case d.Update.Phase == UpdateFailed && d.Update.Release == e.Desired:
			e.Behind = BehindUpdateFailed
		case d.Mode == ModePush && !d.Connected:
			e.Behind = BehindUnreachable
		case !d.AcceptsReleases:
			e.Behind = BehindManualApply
		case d.Mode == ModePull:
			e.Behind = BehindPullPending
			e.NextPollExpected = d.LastCheckin.Add(p.HeartbeatInterval)
		default:
			e.Behind = BehindAwaitingApply
		}
	case d.ExpectedConfigHash != "" && d.ConfigHash != d.ExpectedConfigHash:
		e.Behind = BehindConfigDrift
	}
	return e
}

func (p Params) lossQuiet() time.Duration {
	if p.LossQuietWindow <= 0 {
		return DefaultLossQuietWindow
	}
	return p.LossQuietWindow
}

// NextChange is the first instant after which Evaluate may conclude otherwise
// than e, the evaluation of d at some earlier instant, though d is unchanged:
// when a deployment that checked in turns stale, and when shown telemetry
// loss leaves its quiet window. Zero means time alone never changes e. Callers
// that keep evaluations (the registry's counts) re-evaluate once it has
// passed instead of evaluating the whole fleet per read.
func NextChange(d *Deployment, e Evaluation, p Params) time.Time {
	var at time.Time
	if !d.LastCheckin.IsZero() && e.Status != StatusStale {
		// Stale once more than StaleAfter has passed: the nanosecond after.
		at = d.LastCheckin.Add(p.StaleAfter + time.Nanosecond)
	}
	if e.Loss != "" && d.TelemetryLoss != nil {
		if quiet := d.TelemetryLoss.Last.Add(p.lossQuiet()); at.IsZero() || quiet.Before(at) {
			at = quiet
		}
	}
	return at
}

// unhealthyReason names the components that are down, with their errors, so the
// reason says what to look at rather than only "unhealthy". When only runtime
// thresholds are crossed, it says so and names them.
func unhealthyReason(h Health) (reason, code string) {
	var down, crossed []string
	for name, c := range h.Components {
		if c.Healthy {
			continue
		}
		if what, ok := strings.CutPrefix(name, thresholds.ComponentPrefix); ok && !c.Watched {
			crossed = append(crossed, what+": "+c.LastError)
		}
		down = append(down, c.describe(name))
	}
	sort.Strings(down)
	sort.Strings(crossed)
	if len(down) > 0 && len(crossed) == len(down) {
		return "threshold exceeded: " + strings.Join(crossed, "; "), ReasonThresholdExceeded
	}
	if len(down) > 0 {
		return "components down: " + strings.Join(down, "; "), ReasonComponentsDown
	}
	if h.LastError != "" {
		return h.LastError, ReasonAgentUnhealthy
	}
	return "agent reports unhealthy", ReasonAgentUnhealthy
}
