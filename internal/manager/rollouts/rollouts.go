// Package rollouts is the progressive rollout engine: it moves a stack's new
// release through the waves of the stack's plan (rolloutplan), watching each
// wave's figures for its bake time, halting and pinning back the deployments
// that made a gate fail, and answering, for any deployment, which release the
// rollouts want it on and why it waits (Decide).
//
// The engine is driven by its own periodic Step and by operators' actions
// (StartRollout, Resume, Abort, Skip, SetPlan). It reads the fleet, pins
// deployments back and tells people through the small interfaces below, and
// keeps its state in a store.Rollouts, so a restart resumes every rollout where
// it was (a bake keeps its start).
//
// # Concurrency
//
// Every method is safe for concurrent use. Changes (Step and the actions) run
// one at a time; Decide only reads and never waits for a change's calls to
// the fleet, the pinner or the store, so the registry may call Decide while
// holding its own locks, and the engine may call the registry while it runs a
// change.
package rollouts

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	_ "time/tzdata" // update windows name customers' zones; the manager's host may have no zoneinfo

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/periodic"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// Behind reasons the rollouts add to fleet's, for deployments a rollout holds
// back.
const (
	// BehindWaitingForWave: the stack's newest release is rolling out and the
	// deployment's wave has not opened yet.
	BehindWaitingForWave = fleet.BehindWaitingForWave
	// BehindOutsideWindow: the deployment's desired release changed but its
	// update window is closed; the offer goes out when the next one opens.
	BehindOutsideWindow = fleet.BehindOutsideWindow
)

// Errors the actions return, wrapped.
var (
	// ErrNoPlan means the stack has no rollout plan: its releases go
	// everywhere at once.
	ErrNoPlan = errors.New("no rollout plan for the stack")
	// ErrNotFound means there is no such rollout.
	ErrNotFound = errors.New("no such rollout")
	// ErrInvalid marks a request the caller must correct (a rollout in the
	// wrong phase for the action, a missing reason, a bad plan).
	ErrInvalid = errors.New("invalid")
)

// Member is a deployment as the engine sees it: what selection looks at and
// the figures the gates count.
type Member struct {
	rolloutplan.Subject
	Stack string
	// Latest is the newest release of its stack ("" when it has none).
	Latest  string
	Running string
	// Pin is the deployment's pin, nil when it follows its stack. A pinned
	// deployment takes no rollout's release and counts in no gate.
	Pin        *fleet.Pin
	Status     fleet.Status
	ReasonCode string
	Update     fleet.UpdateState
	// Regression is the regression detector's verdict on its running release.
	Regression *fleet.Regression
}

// Fleet is what the engine reads of the fleet.
type Fleet interface {
	// Members returns every deployment of stack (of every stack for "") as
	// it is now, in any order.
	Members(stack string) []Member
}

// Pinner pins deployments (back) to a release and lifts the pins a rollout
// put on.
type Pinner interface {
	// Pin pins ids to release, all of them or none, with actor and reason in
	// the audit trail. Pinning a deployment already pinned to release changes
	// nothing and is not an error.
	Pin(ctx context.Context, ids []string, release, actor, reason string) error
	// Unpin removes the pins of ids, all or none, likewise audited; an
	// unpinned deployment is not an error.
	Unpin(ctx context.Context, ids []string, actor, reason string) error
}

// NoticeKind is what a rollout notice is about.
type NoticeKind string

// Notice kinds.
const (
	NoticeHalted    NoticeKind = "halted"
	NoticeCompleted NoticeKind = "completed"
	NoticeAborted   NoticeKind = "aborted"
)

// Notice tells people that a rollout halted, completed or was aborted.
type Notice struct {
	Kind    NoticeKind `json:"kind"`
	Rollout string     `json:"rollout"`
	Stack   string     `json:"stack"`
	Release string     `json:"release"`
	Wave    string     `json:"wave,omitempty"`
	// Reason says why in words: for a halt, the gate and its figures.
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// PinnedBack are the deployments pinned back (at most maxPinnedListed).
	PinnedBack []string `json:"pinned_back,omitempty"`
}

// Notifier sends notices. It MUST NOT block for long: the engine calls it
// while it runs a change.
type Notifier interface {
	NotifyRollout(ctx context.Context, n Notice)
}

// Store is what the engine keeps its state in.
type Store interface {
	CreateRollout(ctx context.Context, r store.RolloutRecord, entries []store.AuditEntry) error
	UpdateRollout(ctx context.Context, r store.RolloutRecord, entries []store.AuditEntry) error
	GetRollout(ctx context.Context, id string) (store.RolloutRecord, error)
	ListRollouts(ctx context.Context, f store.RolloutFilter) ([]store.RolloutRecord, error)
	PutRolloutPlan(ctx context.Context, p store.RolloutPlanRecord, entry store.AuditEntry) error
	DeleteRolloutPlan(ctx context.Context, stack string, entry store.AuditEntry) error
	ListRolloutPlans(ctx context.Context) ([]store.RolloutPlanRecord, error)
	PutUpdateWindows(ctx context.Context, w store.UpdateWindowsRecord, entry store.AuditEntry) error
	DeleteUpdateWindows(ctx context.Context, kind, owner string, entry store.AuditEntry) error
	ListUpdateWindows(ctx context.Context) ([]store.UpdateWindowsRecord, error)
}

// Settings configure an Engine; nil fields take safe defaults.
type Settings struct {
	// CheckEvery is how often Start's loop runs Step (default 30 s).
	CheckEvery time.Duration
	Clock      clock.Clock
	// Rand makes rollout ids (default crypto/rand).
	Rand   io.Reader
	Logger *slog.Logger
	// OnDesired is told the deployments whose desired release (or whose right
	// to receive it: an update window opened) changed, so their offers go out.
	OnDesired func(ids []string)
}

// Engine runs the rollouts. Use New, then Start.
type Engine struct {
	fleet  Fleet
	pinner Pinner
	notify Notifier
	st     Store
	clk    clock.Clock
	rand   io.Reader
	log    *slog.Logger
	onDes  func([]string)
	every  time.Duration

	filePlans   map[string]rolloutplan.Plan
	fileWindows rolloutplan.WindowSet

	// change serialises Step and the actions; mu guards what Decide reads.
	change sync.Mutex
	mu     sync.RWMutex
	plans  map[string]planEntry
	// windows are the update windows in force: the file's, with apiWin's
	// entries replacing the file's for their owner (windows.go).
	windows rolloutplan.WindowSet
	apiWin  map[windowKey]apiWindows
	// live holds every rollout not Done, by id; stacks lists them per stack,
	// newest first.
	live   map[string]*record
	stacks map[string][]*record
	// held are the deployments whose offer a closed window held at the last
	// Step, so the one after the window opens announces them.
	held map[string]bool

	loop *periodic.Loop
}

type planEntry struct {
	plan rolloutplan.Plan
	// fromAPI is set for a plan set through the API (kept in the store),
	// which replaces the configuration file's.
	fromAPI bool
}

// record is a rollout with the store version its state was read or written at.
type record struct {
	State
	version int64
}

// New returns an engine over the configured plans and windows; it starts
// nothing.
func New(cfg rolloutplan.Config, f Fleet, p Pinner, n Notifier, st Store, s Settings) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rollouts: %w", err)
	}
	if f == nil || p == nil || n == nil || st == nil {
		return nil, errors.New("rollouts: a fleet, a pinner, a notifier and a store are required")
	}
	e := &Engine{fleet: f, pinner: p, notify: n, st: st, clk: clock.Or(s.Clock), rand: s.Rand, log: s.Logger, onDes: s.OnDesired,
		every: s.CheckEvery, filePlans: map[string]rolloutplan.Plan{}, fileWindows: cfg.Windows, windows: cfg.Windows, apiWin: map[windowKey]apiWindows{},
		plans: map[string]planEntry{}, live: map[string]*record{}, stacks: map[string][]*record{}, held: map[string]bool{}}
	if e.rand == nil {
		e.rand = rand.Reader
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.every <= 0 {
		e.every = 30 * time.Second
	}
	for _, p := range cfg.Plans {
		e.filePlans[p.Stack] = p
		e.plans[p.Stack] = planEntry{plan: p}
	}
	e.loop = periodic.New("rollout engine", e.every, func(ctx context.Context) {
		if err := e.Step(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("rollout step failed; will retry", "err", err)
		}
	})
	return e, nil
}

// Load reads the plans and update windows set through the API and every
// unfinished rollout from
// the store. Start calls it; a test restarting the engine may call it alone.
func (e *Engine) Load(ctx context.Context) error {
	e.change.Lock()
	defer e.change.Unlock()
	prs, err := e.st.ListRolloutPlans(ctx)
	if err != nil {
		return fmt.Errorf("load rollout plans: %w", err)
	}
	plans := map[string]planEntry{}
	for st, p := range e.filePlans {
		plans[st] = planEntry{plan: p}
	}
	for _, pr := range prs {
		var p rolloutplan.Plan
		if err := json.Unmarshal(pr.Plan, &p); err != nil {
			return fmt.Errorf("load the rollout plan of %s: %w", pr.Stack, err)
		}
		plans[pr.Stack] = planEntry{plan: p, fromAPI: true}
	}
	apiWin, err := e.loadWindows(ctx)
	if err != nil {
		return err
	}
	recs, err := e.st.ListRollouts(ctx, store.RolloutFilter{Unfinished: true})
	if err != nil {
		return fmt.Errorf("load rollouts: %w", err)
	}
	live := map[string]*record{}
	for _, r := range recs {
		var s State
		if err := json.Unmarshal(r.State, &s); err != nil {
			return fmt.Errorf("load rollout %s: %w", r.ID, err)
		}
		live[r.ID] = &record{State: s, version: r.Version}
	}
	e.mu.Lock()
	e.plans, e.live = plans, live
	e.apiWin, e.windows = apiWin, mergeWindows(e.fileWindows, apiWin)
	e.reindexLocked()
	e.mu.Unlock()
	return nil
}

// Reload is Load for replicas sharing the store: it reports whether anything
// Decide reads (the plans, a rollout's state) changed since the last Load.
func (e *Engine) Reload(ctx context.Context) (bool, error) {
	before := e.signature()
	if err := e.Load(ctx); err != nil {
		return false, err
	}
	return e.signature() != before, nil
}

// signature sums up what Decide reads: every live rollout's id and store
// version, the plans and the update windows in force.
func (e *Engine) signature() string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	ids := make([]string, 0, len(e.live))
	for id, r := range e.live {
		ids = append(ids, fmt.Sprintf("%s@%d", id, r.version))
	}
	sort.Strings(ids)
	plans := make([]rolloutplan.Plan, 0, len(e.plans))
	for _, st := range sortedKeys(e.plans) {
		plans = append(plans, e.plans[st].plan)
	}
	b, _ := json.Marshal(plans)
	w, _ := json.Marshal(e.windows)
	return fmt.Sprint(ids) + string(b) + string(w)
}

// reindexLocked rebuilds stacks from live; the caller holds mu.
func (e *Engine) reindexLocked() {
	e.stacks = map[string][]*record{}
	for _, r := range e.live {
		e.stacks[r.Stack] = append(e.stacks[r.Stack], r)
	}
	for _, rs := range e.stacks {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Seq > rs[j].Seq })
	}
}

// Start loads the state and runs Step every CheckEvery until Shutdown.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.Load(ctx); err != nil {
		return err
	}
	return e.loop.Start(ctx, true)
}

// Shutdown stops the loop and waits for a step in progress, or until ctx
// ends. It is idempotent and safe without Start.
func (e *Engine) Shutdown(ctx context.Context) error { return e.loop.Shutdown(ctx) }

// Plan returns the plan of stack in force, and whether there is one.
func (e *Engine) Plan(stack string) (rolloutplan.Plan, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	p, ok := e.plans[stack]
	return p.plan, ok
}

// Plans returns every plan in force, by stack.
func (e *Engine) Plans() []rolloutplan.Plan {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]rolloutplan.Plan, 0, len(e.plans))
	for _, p := range e.plans {
		out = append(out, p.plan)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stack < out[j].Stack })
	return out
}
