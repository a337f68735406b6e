// Package registry keeps the manager's live view of the fleet: every deployment in
// memory, indexed by id and token hash, with status evaluated on every check-in and
// on a timer. Check-in state is written to the store in batches (so a large fleet
// does not write per heartbeat) and status changes become events.
//
// Concurrency: all methods are safe for concurrent use. Reads never touch the
// store, so the fleet list and summary stay fast at 100,000 deployments.
// Durability: creates and releases are written through before they return; check-in
// state and events reach the store within one flush interval, and on Shutdown.
// Replicas: with Settings.SyncInterval, several registries (one per manager
// replica) share one store, each reading the others' writes (replicas.go).
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Errors returned to callers, wrapped where useful.
var (
	ErrNotFound = store.ErrNotFound
	ErrConflict = store.ErrConflict
	// ErrInvalid marks a request the caller must correct.
	ErrInvalid = errors.New("invalid")
)

// Settings are the registry's collaborators and tunables; zero values are safe.
type Settings struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Rand is the source of token randomness (crypto/rand when nil).
	Rand io.Reader
	// Registerer receives the registry's metrics (none are registered when nil).
	Registerer prometheus.Registerer
	// Params are the heartbeat and stale thresholds (fleet.DefaultParams when zero).
	Params fleet.Params
	// FlushInterval is how often batched check-in state is written (1 s when zero).
	FlushInterval time.Duration
	// EvalInterval is how often the registry looks for deployments whose
	// status time alone changed, such as turning stale, and re-evaluates the
	// fleet if one has (a quarter of StaleAfter, at most 1 s, when zero).
	EvalInterval time.Duration
	// OnEvent, when set, sees every status change as it is recorded. It is called
	// with registry locks held: it must return at once (queue, never block).
	OnEvent func(fleet.Event)
	// OnDesiredChange, when set, is told which deployments' desired release (or
	// expected configuration) changed, after the change is stored, so push
	// connections can be offered it at once. It runs on the caller's goroutine.
	OnDesiredChange func(ids []string)
	// OnTokensChange, when set, is told that a deployment's agent tokens
	// changed (rotated, revoked, retired, deleted with it), after the change,
	// so its push connection can be offered the new token or closed. It runs on
	// the caller's goroutine with no registry lock held.
	OnTokensChange func(id string)
	// OnThresholdsChange, when set, is told that a deployment's thresholds
	// changed, after the change is stored, so its push connection can be sent
	// them at once. It runs on the caller's goroutine with no registry lock
	// held.
	OnThresholdsChange func(id string)
	// ThresholdDefaults are the thresholds of deployments without their own.
	ThresholdDefaults thresholds.Defaults
	// Decider, when set, steers desired releases through progressive
	// rollouts; without one a stack's newest release is every unpinned
	// deployment's desired release at once.
	Decider Decider
	// SyncInterval, when positive, makes the registry one of several
	// replicas sharing its store: it reads the others' writes that often (and
	// on Wake), keeps push connections' connected flag across its restart (they
	// may be another replica's), and records status changes only while
	// SetLeader says so. Zero: the store's only writer, always leading.
	SyncInterval time.Duration
	// VendorRedactionHash is the hash (redactpolicy.VendorHash) of the vendor
	// redaction policy the manager sends agents; a deployment whose agent holds
	// another is shown out of sync. Empty means the default policy's, which is
	// what the check-in server sends when it is given no policy.
	VendorRedactionHash string
}

// Decider steers deployments' desired releases through progressive rollouts
// (the rollout engine).
type Decider interface {
	// Steer says which release d should run at now instead of latest, its
	// stack's newest release, and what holds it back. The registry calls it
	// holding its locks: it must return at once and never call the registry.
	Steer(d *fleet.Deployment, latest string, now time.Time) fleet.Steer
	// Published is told that rel became its stack's newest release,
	// superseding baseline, before any deployment can be offered it; an error
	// means the release could not be rolled out progressively.
	Published(ctx context.Context, rel fleet.Release, baseline string) error
}

// entry is one deployment. Its mu guards everything but the immutable id and
// the tokens, so check-ins of different deployments never wait on each other.
type entry struct {
	mu sync.Mutex
	// The tokens are guarded by the registry's mu, like byToken (see tokens.go).
	agentTokens
	d           fleet.Deployment
	lastStatus  fleet.Status
	statusSince time.Time
	// changing is set while a pin change holds the deployment, so a concurrent
	// change of the same deployment is refused rather than interleaved.
	changing string
	// red is the agent's redaction report, in memory only (see Redaction).
	red redactionState
	// thr is the agent's thresholds report, in memory only (see Thresholds).
	thr thresholdsState
	// kept is the deployment's last evaluation and what it adds to the
	// fleet's counts (see setEvaluationLocked).
	kept kept
}

// Registry is the live fleet. Create it with New, then Start.
type Registry struct {
	st     store.Fleet
	log    *slog.Logger
	clk    clock.Clock
	rand   io.Reader
	params fleet.Params
	flushI time.Duration
	evalI  time.Duration
	m      metrics

	onEvent   func(fleet.Event)
	onDesired func(ids []string)
	// onThresholds is Settings.OnThresholdsChange, thrDefaults
	// Settings.ThresholdDefaults.
	onThresholds func(id string)
	thrDefaults  thresholds.Defaults
	onTokens     func(id string)
	decider      Decider

	vendorHash string

	// Replicas (replicas.go): syncI is Settings.SyncInterval, syncPos the
	// store position read up to (guarded by flushMu), leading whether this
	// registry records status changes, wake the sync loop's nudge.
	syncI   time.Duration
	syncPos int64
	leading atomic.Bool
	wake    chan struct{}

	// Lock order: tokMu, flushMu, mu, sweepMu, an entry's mu, pendMu and
	// counts.mu. mu is held for
	// writing only to add or delete deployments, add releases or change tokens.
	// tokMu serialises token changes (see tokens.go).
	tokMu    sync.Mutex
	rotating map[string]*entry // deployments with a previous token still valid
	mu       sync.RWMutex
	deps     map[string]*entry
	byToken  map[string]*entry
	order    []*entry // by id, for paging without sorting the fleet per request
	releases []fleet.Release
	stacks   map[string]fleet.StackReleases

	pendMu sync.Mutex
	dirty  map[string]struct{}
	events []fleet.Event
	// pendTokens are deployments whose tokens the manager changed itself (a
	// retired previous token), with the audit entries to write.
	pendTokens map[string][]fleet.DeploymentChange

	flushMu sync.Mutex // serialises flushes so batches reach the store in order
	sweepMu sync.Mutex // serialises sweeps of the whole fleet (see counts)
	counts  *counts

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

type metrics struct {
	checkins     prometheus.Counter
	flushes      prometheus.Counter
	flushErrors  prometheus.Counter
	flushRows    prometheus.Histogram
	flushSeconds prometheus.Histogram
	events       *prometheus.CounterVec
	syncs        prometheus.Counter
	syncErrors   prometheus.Counter
	syncRows     prometheus.Histogram
}

// New returns a registry over st. It reads nothing until Start.
func New(st store.Fleet, s Settings) (*Registry, error) {
	if st == nil {
		return nil, errors.New("registry: nil store")
	}
	r := &Registry{
		st: st, log: s.Logger, clk: clock.Or(s.Clock), rand: s.Rand, params: s.Params,
		flushI: s.FlushInterval, evalI: s.EvalInterval, onEvent: s.OnEvent, onDesired: s.OnDesiredChange, onTokens: s.OnTokensChange, onThresholds: s.OnThresholdsChange, decider: s.Decider, thrDefaults: s.ThresholdDefaults, vendorHash: s.VendorRedactionHash,
		deps: map[string]*entry{}, byToken: map[string]*entry{}, stacks: map[string]fleet.StackReleases{}, dirty: map[string]struct{}{},
		rotating: map[string]*entry{}, pendTokens: map[string][]fleet.DeploymentChange{}, counts: newCounts(),
		syncI: s.SyncInterval, wake: make(chan struct{}, 1),
	}
	r.leading.Store(r.syncI <= 0)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.vendorHash == "" {
		r.vendorHash = redactpolicy.VendorHash(redactpolicy.Policy{})
	}
	if r.params == (fleet.Params{}) {
		r.params = fleet.DefaultParams()
	}
	if r.params.HeartbeatInterval <= 0 || r.params.StaleAfter <= 0 {
		return nil, fmt.Errorf("registry: heartbeat interval and stale-after must be positive, got %v and %v", r.params.HeartbeatInterval, r.params.StaleAfter)
	}
	if r.flushI <= 0 {
		r.flushI = time.Second
	}
	if r.evalI <= 0 {
		r.evalI = min(time.Second, r.params.StaleAfter/4)
	}
	r.m = metrics{
		checkins:     prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_registry_checkins_total", Help: "Check-ins applied to the fleet registry."}),
		flushes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_registry_flushes_total", Help: "Batched writes of check-in state to the store."}),
		flushErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_registry_flush_errors_total", Help: "Failed batched writes; their rows are retried at the next flush."}),
		flushRows:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "periscope_registry_flush_rows", Help: "Deployments written per flush.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "periscope_registry_flush_duration_seconds", Help: "Time to write one batch to the store.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		events:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_status_changes_total", Help: "Deployment status changes, by new status."}, []string{"to"}),
		syncs:        prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_registry_syncs_total", Help: "Reads of other replicas' fleet changes from the shared store."}),
		syncErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_registry_sync_errors_total", Help: "Failed reads of other replicas' fleet changes; retried at the next tick."}),
		syncRows:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "periscope_registry_sync_rows", Help: "Deployments read per sync.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
	}
	if s.Registerer != nil {
		cs := []prometheus.Collector{r.m.checkins, r.m.flushes, r.m.flushErrors, r.m.flushRows, r.m.flushSeconds, r.m.events, statusCollector{r}}
		if r.syncI > 0 {
			cs = append(cs, r.m.syncs, r.m.syncErrors, r.m.syncRows)
		}
		for _, c := range cs {
			if err := s.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("registry: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Params returns the heartbeat and stale thresholds in force.
func (r *Registry) Params() fleet.Params { return r.params }

// Start loads the fleet from the store and starts the flush and evaluation
// loops, and the sync loop of a replica (Settings.SyncInterval).
func (r *Registry) Start(ctx context.Context) error {
	all, err := r.st.FleetChangesSince(ctx, 0)
	if err != nil {
		return fmt.Errorf("load fleet: %w", err)
	}
	r.flushMu.Lock()
	r.mu.Lock()
	// A push connection does not survive a manager restart, but with replicas
	// it may be another replica's.
	r.loadLocked(all, r.syncI <= 0)
	r.evaluateAllLocked()
	r.mu.Unlock()
	r.flushMu.Unlock()
	r.log.Info("fleet loaded", "deployments", len(all.Deployments), "releases", len(all.Releases))

	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	if r.syncI > 0 {
		r.wg.Add(1)
		go r.loop(loopCtx, r.syncI, r.wake, func() { r.syncOnce(loopCtx) })
	}
	r.wg.Add(2)
	go r.loop(loopCtx, r.flushI, nil, func() {
		if err := r.Flush(loopCtx); err != nil && loopCtx.Err() == nil {
			r.log.Warn("write fleet state failed; will retry", "err", err)
		}
	})
	go r.loop(loopCtx, r.evalI, nil, func() {
		r.refresh()
		if r.Leader() {
			r.expireTokens()
		}
	})
	return nil
}

// loop runs fn every interval, and whenever wake (which may be nil) fires,
// until ctx ends.
func (r *Registry) loop(ctx context.Context, every time.Duration, wake <-chan struct{}, fn func()) {
	defer r.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn()
	}
}

// Shutdown stops the loops and writes everything pending. It is safe to call
// without Start and more than once.
func (r *Registry) Shutdown(ctx context.Context) error {
	var err error
	r.stopOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		r.wg.Wait()
		r.evaluateAll()
		err = r.Flush(ctx)
	})
	return err
}

// Flush writes pending check-in state and events to the store now. Rows that fail
// to write stay pending.
func (r *Registry) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	if err := r.flushTokensLocked(ctx); err != nil {
		return err
	}
	r.pendMu.Lock()
	dirty, evs := r.dirty, r.events
	r.dirty, r.events = map[string]struct{}{}, nil
	r.pendMu.Unlock()
	if len(dirty) == 0 && len(evs) == 0 {
		return nil
	}
	recs := make([]store.DeploymentRecord, 0, len(dirty))
	r.mu.RLock()
	for id := range dirty {
		if e, ok := r.deps[id]; ok {
			e.mu.Lock()
			recs = append(recs, e.record())
			e.mu.Unlock()
		}
	}
	r.mu.RUnlock()

	start := time.Now()
	err := r.st.UpdateCheckins(ctx, recs)
	if err == nil {
		err = r.st.AppendEvents(ctx, evs)
		evs = nil
	}
	r.m.flushes.Inc()
	r.m.flushSeconds.Observe(time.Since(start).Seconds())
	r.m.flushRows.Observe(float64(len(recs)))
	if err != nil {
		r.m.flushErrors.Inc()
		r.pendMu.Lock()
		for _, rec := range recs {
			r.dirty[rec.Deployment.ID] = struct{}{}
		}
		r.events = append(evs, r.events...)
		r.pendMu.Unlock()
		return fmt.Errorf("flush fleet state: %w", err)
	}
	return nil
}

func (e *entry) record() store.DeploymentRecord {
	d := e.d
	d.Labels = cloneMap(d.Labels)
	d.Health.Components = cloneMap(d.Health.Components)
	if d.Pin != nil {
		p := *d.Pin
		d.Pin = &p
	}
	return store.DeploymentRecord{Deployment: d, TokenHash: e.tokenHash, PrevTokenHash: e.prevHash, PrevTokenUntil: e.prevUntil, LastStatus: e.lastStatus}
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (r *Registry) markDirty(id string) {
	r.pendMu.Lock()
	r.dirty[id] = struct{}{}
	r.pendMu.Unlock()
}

// evaluate is fleet.Evaluate of d with the desired release the rollouts give
// it. The caller holds r.mu (either way) and d's entry's mu.
func (r *Registry) evaluate(d *fleet.Deployment, now time.Time) fleet.Evaluation {
	s := r.stacks[d.Stack]
	if r.decider == nil {
		return fleet.Evaluate(d, s, now, r.params)
	}
	return fleet.EvaluateSteered(d, s, now, r.params, r.decider.Steer(d, s.Latest, now))
}

// DesiredChanged re-evaluates deployments whose desired release the rollouts
// changed (a wave opened, a window opened) and offers it to them.
func (r *Registry) DesiredChanged(ids []string) {
	r.mu.RLock()
	now := r.clk.Now()
	for _, id := range ids {
		if e, ok := r.deps[id]; ok {
			e.mu.Lock()
			r.evaluateLocked(e, now)
			e.mu.Unlock()
		}
	}
	r.mu.RUnlock()
	if r.onDesired != nil {
		r.onDesired(ids)
	}
}

// evaluateLocked re-derives e's status and, on the leader, records a change
// as an event. The caller holds r.mu (either way) and e.mu.
func (r *Registry) evaluateLocked(e *entry, now time.Time) fleet.Evaluation {
	return r.evaluateAsLocked(e, now, r.Leader())
}

// evaluateAsLocked is evaluateLocked, recording a change as an event when
// record is set and only following it otherwise (a replica that does not
// lead: the leader records it once it reads the change).
func (r *Registry) evaluateAsLocked(e *entry, now time.Time, record bool) fleet.Evaluation {
	ev := r.evaluate(&e.d, now)
	r.setEvaluationLocked(e, &ev)
	switch {
	case ev.Behind.Lagging() && e.d.BehindSince.IsZero():
		e.d.BehindSince = now.UTC()
		r.markDirty(e.d.ID)
	case !ev.Behind.Lagging() && !e.d.BehindSince.IsZero():
		e.d.BehindSince = time.Time{}
		r.markDirty(e.d.ID)
	}
	if ev.Status != e.lastStatus {
		at := now
		if !ev.Since.IsZero() {
			at = ev.Since
		}
		if !record {
			e.lastStatus, e.statusSince = ev.Status, at
			return ev
		}
		fe := fleet.Event{DeploymentID: e.d.ID, At: at.UTC(), From: e.lastStatus, To: ev.Status, Reason: ev.Reason,
			ReasonCode: ev.ReasonCode, Release: e.d.RunningRelease}
		r.pendMu.Lock()
		r.events = append(r.events, fe)
		r.dirty[e.d.ID] = struct{}{}
		r.pendMu.Unlock()
		r.m.events.WithLabelValues(string(ev.Status)).Inc()
		if e.lastStatus != "" {
			r.log.Info("deployment status changed", "deployment", e.d.ID, "from", e.lastStatus, "to", ev.Status, "reason", ev.Reason)
		}
		e.lastStatus, e.statusSince = ev.Status, at
		if r.onEvent != nil {
			r.onEvent(fe)
		}
	}
	return ev
}

// evaluateAllLocked re-evaluates every deployment; the caller holds r.mu.
func (r *Registry) evaluateAllLocked() {
	r.sweepMu.Lock()
	defer r.sweepMu.Unlock()
	now := r.clk.Now()
	r.counts.beginSweep(now)
	defer r.counts.endSweep()
	for _, e := range r.order { // a slice reads faster than the map
		e.mu.Lock()
		r.evaluateLocked(e, now)
		e.mu.Unlock()
	}
}

func (r *Registry) evaluateAll() {
	r.mu.RLock()
	r.evaluateAllLocked()
	r.mu.RUnlock()
}

// View is a deployment with its current evaluation.
type View struct {
	Deployment  fleet.Deployment
	Evaluation  fleet.Evaluation
	StatusSince time.Time
	// Token is the state of the deployment's agent tokens.
	Token TokenState
	// Redaction is what the agent reported of its redaction policy since the
	// manager started; nil before that, or when the agent does not report it.
	Redaction *Redaction
}

// viewLocked copies e; the caller holds r.mu, not e.mu.
func (r *Registry) viewLocked(e *entry, now time.Time) View {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := e.record()
	return View{Deployment: rec.Deployment, Evaluation: r.evaluate(&e.d, now), StatusSince: e.statusSince,
		Token: e.agentTokens.state(), Redaction: r.redactionViewLocked(e)}
}

// Get returns one deployment.
func (r *Registry) Get(id string) (View, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok {
		return View{}, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	return r.viewLocked(e, r.clk.Now()), nil
}

// Page selects a window of a sorted list: up to Limit items (all when zero)
// that sort after the cursor After, or before the cursor Before, in Order. A
// cursor is what Cursor returns; in OrderID it is simply an id.
type Page struct {
	Limit  int
	After  string
	Before string
	Order  Order
}

func (r *Registry) sortOrderLocked() {
	sort.Slice(r.order, func(i, j int) bool { return r.order[i].d.ID < r.order[j].d.ID })
}

// matchLocked evaluates e afresh, for changes that must not act on an
// evaluation the timer has yet to renew; reads use e's kept one (keptLocked).
func (r *Registry) matchLocked(e *entry, f fleet.Filter, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return f.Match(&e.d, r.evaluate(&e.d, now))
}

// List returns the deployments matching f, sorted by p.Order, one page at a
// time, with the number that match in all. A malformed cursor lists nothing;
// ListPage says why, and where the page sits in the list.
func (r *Registry) List(f fleet.Filter, p Page) (items []View, total int) {
	l, err := r.ListPage(f, p)
	if err != nil {
		return nil, 0
	}
	return l.Items, l.Total
}

// Summary counts the fleet by status and by running release.
type Summary struct {
	Total     int                        `json:"total"`
	ByStatus  map[fleet.Status]int       `json:"by_status"`
	ByRelease map[string]int             `json:"by_release"`
	Behind    map[fleet.BehindReason]int `json:"behind"`
	Pinned    int                        `json:"pinned"`
}

// Summary returns fleet-wide counts for deployments matching f. The whole
// fleet's are kept as it changes; a filter matches each deployment's kept
// evaluation, so no deployment is evaluated per request.
func (r *Registry) Summary(f fleet.Filter) Summary {
	r.refresh()
	if f.IsZero() {
		return r.counts.summary()
	}
	c := newSummer()
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.order { // a slice reads faster than the map
		e.mu.Lock()
		if ev := &e.kept.ev; f.Match(&e.d, *ev) {
			c.add(&e.d, *ev)
		}
		e.mu.Unlock()
	}
	return c.s
}

// summer adds deployments up into a Summary.
type summer struct{ s Summary }

func newSummer() *summer {
	s := Summary{ByStatus: map[fleet.Status]int{}, ByRelease: map[string]int{}, Behind: map[fleet.BehindReason]int{}}
	for _, st := range fleet.Statuses {
		s.ByStatus[st] = 0
	}
	return &summer{s}
}

func (c *summer) add(d *fleet.Deployment, ev fleet.Evaluation) {
	c.s.Total++
	c.s.ByStatus[ev.Status]++
	c.s.ByRelease[d.RunningRelease]++
	if ev.Behind != "" {
		c.s.Behind[ev.Behind]++
	}
	if ev.Pinned {
		c.s.Pinned++
	}
}

// NewDeployment is what a vendor declares when registering a deployment.
type NewDeployment struct {
	ID       string
	Name     string
	Customer string
	Platform string
	Cloud    string
	Region   string
	Stack    string
	Labels   map[string]string
}

// Created is a new deployment with its agent token, which is shown only now.
type Created struct {
	View  View
	Token string
}

var idPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// ValidID reports whether id may name a deployment: 1–64 lower-case letters,
// digits, '.', '_' or '-', starting and ending with a letter or digit.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// CreateDeployments registers deployments atomically: all are created or none.
// Ids left empty are generated.
func (r *Registry) CreateDeployments(ctx context.Context, nds []NewDeployment) ([]Created, error) {
	now := r.clk.Now().UTC()
	recs := make([]store.DeploymentRecord, len(nds))
	tokens := make([]string, len(nds))
	seen := map[string]bool{}
	for i, nd := range nds {
		if nd.ID == "" {
			tok, err := auth.NewToken("d-", r.rand)
			if err != nil {
				return nil, err
			}
			nd.ID = tok[:12]
		}
		if !ValidID(nd.ID) {
			return nil, fmt.Errorf("deployment id %q: must be 1-64 lower-case letters, digits, '.', '_' or '-': %w", nd.ID, ErrInvalid)
		}
		if seen[nd.ID] {
			return nil, fmt.Errorf("deployment id %q given twice: %w", nd.ID, ErrConflict)
		}
		seen[nd.ID] = true
		if nd.Name == "" {
			nd.Name = nd.ID
		}
		tok, err := auth.NewToken(auth.PrefixDeployment, r.rand)
		if err != nil {
			return nil, err
		}
		tokens[i] = tok
		recs[i] = store.DeploymentRecord{TokenHash: auth.Hash(tok), LastStatus: fleet.StatusPending, Deployment: fleet.Deployment{
			ID: nd.ID, Name: nd.Name, Customer: nd.Customer, Platform: nd.Platform, Cloud: nd.Cloud, Region: nd.Region,
			Stack: nd.Stack, Labels: cloneMap(nd.Labels), CreatedAt: now,
		}}
	}
	// flushMu from the store write to the memory insert: a Sync in between
	// would read the new rows and add entries of its own, which the insert
	// below would then shadow, leaving a never-checked-in twin in the list.
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.RLock()
	for _, rec := range recs {
		if _, ok := r.deps[rec.Deployment.ID]; ok {
			r.mu.RUnlock()
			return nil, fmt.Errorf("deployment %q: %w", rec.Deployment.ID, ErrConflict)
		}
	}
	r.mu.RUnlock()
	if err := r.st.CreateDeployments(ctx, recs); err != nil {
		return nil, err
	}
	out := make([]Created, len(recs))
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.sortOrderLocked()
	for i, rec := range recs {
		e := &entry{d: rec.Deployment, lastStatus: "", statusSince: now}
		r.deps[e.d.ID] = e
		r.setTokensLocked(e, agentTokens{tokenHash: rec.TokenHash})
		r.order = append(r.order, e)
		e.mu.Lock()
		r.evaluateAsLocked(e, now, true) // records "" → pending as the first event, on any replica
		e.mu.Unlock()
		out[i] = Created{View: r.viewLocked(e, now), Token: tokens[i]}
	}
	return out, nil
}

// Authenticate maps an agent token to the deployment it belongs to. The first
// use of a rotated deployment's new token retires the previous one.
func (r *Registry) Authenticate(token string) (id string, ok bool) {
	h := auth.Hash(token)
	now := r.clk.Now()
	r.mu.RLock()
	e, ok := r.byToken[h]
	var retire, expired bool
	if ok {
		id, retire = e.d.ID, e.prevHash != "" && h == e.tokenHash
		// The deadline holds to the instant, not to the timer's next tick.
		expired = h == e.prevHash && e.expiredLocked(now)
	}
	r.mu.RUnlock()
	switch {
	case retire:
		r.retirePrevious(id, h)
	case expired:
		r.expireTokens()
		return "", false
	}
	return id, ok
}

// Description is what an agent says about itself. Empty fields leave the known
// value alone, so an agent that cannot detect its region keeps the declared one.
type Description struct {
	Release      string
	AgentVersion string
	Cloud        string
	Region       string
	Platform     string
}

// Report is one check-in. Nil fields were not sent this time (OpAMP sends only
// what changed) and leave the known values as they are.
type Report struct {
	Mode        fleet.Mode
	InstanceUID string
	Description *Description
	Health      *fleet.Health
	ConfigHash  *string
	Update      *fleet.UpdateState
	// AcceptsReleases is whether the agent applies offered releases itself.
	AcceptsReleases *bool
	// Offer is the agent's report on a release offer (OpAMP remote config status).
	Offer *OfferStatus
	// Loss is the agent's report of the telemetry it dropped.
	Loss *LossReport
	// Redaction is the agent's report on its redaction policy, present whenever
	// the agent reported its effective configuration.
	Redaction *RedactionReport
	// Thresholds is the agent's report on its thresholds, present whenever
	// it sent its effective configuration.
	Thresholds *ThresholdsReport
	// Commands is the customer's command rule, present whenever the agent
	// reported its effective configuration.
	Commands *CommandsReport
}

// CommandsReport is an agent's report of its customer's command rule.
type CommandsReport struct {
	// Rule is nil when the effective configuration carries none (an agent that
	// runs no commands, a stock Collector).
	Rule *command.Rule
}

// LossReport is what an agent says it dropped since it started.
type LossReport struct {
	// RunStart is when the agent started; counts are since then.
	RunStart time.Time
	// Counts are dropped records by "<signal>/<reason>", cumulative over the run.
	Counts map[string]int64
	// Last is when the agent dropped the last of them.
	Last time.Time
}

// Checkin applies a check-in from deployment id. It reports whether the registry
// had heard the agent's full description before this check-in, so the check-in
// server can ask an agent that sends only deltas for its full state.
func (r *Registry) Checkin(id string, rep Report) (knewAgent bool, err error) {
	now := r.clk.Now().UTC()
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok {
		return false, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	d := &e.d
	knewAgent = d.AgentVersion != ""
	d.LastCheckin = now
	if rep.Mode != fleet.ModeUnknown {
		d.Mode = rep.Mode
		d.Connected = rep.Mode == fleet.ModePush
	}
	if rep.InstanceUID != "" {
		d.InstanceUID = rep.InstanceUID
	}
	if desc := rep.Description; desc != nil {
		if desc.Release != "" && desc.Release != d.RunningRelease {
			r.releaseChangedLocked(d, desc.Release, now)
		}
		setIf(&d.AgentVersion, desc.AgentVersion)
		setIf(&d.Cloud, desc.Cloud)
		setIf(&d.Region, desc.Region)
		setIf(&d.Platform, desc.Platform)
	}
	if rep.Health != nil {
		prev := d.Health.Components
		d.Health = *rep.Health
		d.Health.Components = cloneMap(rep.Health.Components)
		// A component keeps the time it entered its health and status while an
		// agent reports it unchanged, so "down since" survives every report.
		for name, c := range d.Health.Components {
			if p, ok := prev[name]; ok && !p.Since.IsZero() && p.Healthy == c.Healthy && p.Status == c.Status {
				c.Since = p.Since
			} else {
				c.Since = now
			}
			d.Health.Components[name] = c
		}
	}
	if rep.ConfigHash != nil {
		d.ConfigHash = *rep.ConfigHash
	}
	if rep.Update != nil {
		d.Update = *rep.Update
	}
	if rep.AcceptsReleases != nil {
		d.AcceptsReleases = *rep.AcceptsReleases
	}
	if rep.Offer != nil {
		r.offerStatusLocked(d, *rep.Offer, now)
	}
	if rep.Loss != nil {
		r.lossLocked(d, *rep.Loss, now)
	}
	if rep.Commands != nil {
		d.CommandRule = rep.Commands.Rule
	}
	switch {
	case rep.Redaction != nil:
		e.red = redactionState{heard: true, report: rep.Redaction.Report, at: now}
	case rep.Description != nil:
		// A full state without an effective configuration: nothing more to ask for.
		e.red.heard = true
	}
	e.thresholdsCheckinLocked(rep, now)
	r.markDirty(id)
	r.m.checkins.Inc()
	r.evaluateLocked(e, now)
	return knewAgent, nil
}

// lossLocked adds an agent's loss report to the deployment. The loss is replaced,
// never changed in place, so views and store records may share it.
func (r *Registry) lossLocked(d *fleet.Deployment, rep LossReport, now time.Time) {
	if d.TelemetryLoss == nil && len(rep.Counts) == 0 {
		return
	}
	l := d.TelemetryLoss.Clone()
	if l == nil {
		l = &fleet.TelemetryLoss{}
	}
	// An agent's clock may run ahead; a loss is never later than hearing of it.
	last := rep.Last
	if last.IsZero() || last.After(now) {
		last = now
	}
	if l.Observe(rep.RunStart, rep.Counts, last) {
		r.log.Warn("deployment's agent dropped telemetry", "deployment", d.ID, "records", l.Records, "counts", l.Counts)
	}
	d.TelemetryLoss = l
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// Disconnected records that a push deployment's connection closed.
func (r *Registry) Disconnected(id string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.d.Connected {
		e.d.Connected = false
		r.markDirty(id)
		r.evaluateLocked(e, r.clk.Now())
	}
}

// CreateRelease publishes a release; every deployment of its stack is re-evaluated.
func (r *Registry) CreateRelease(ctx context.Context, rel fleet.Release) (fleet.Release, error) {
	if rel.Stack == "" || rel.Version == "" {
		return fleet.Release{}, fmt.Errorf("a release needs a stack and a version: %w", ErrInvalid)
	}
	if err := command.ValidateSpecs(rel.Commands); err != nil {
		return fleet.Release{}, fmt.Errorf("release commands: %w: %w", err, ErrInvalid)
	}
	rel.CreatedAt = r.clk.Now().UTC()
	if err := r.st.CreateRelease(ctx, rel); err != nil {
		return fleet.Release{}, err
	}
	// The rollout starts before the registry knows the release, so no
	// deployment outside its first wave can be offered it in between.
	var rollErr error
	if r.decider != nil {
		r.mu.RLock()
		baseline := r.stacks[rel.Stack].Latest
		r.mu.RUnlock()
		// A stack's first release has nothing to roll out from or compare with.
		if baseline != "" && fleet.CompareVersions(rel.Version, baseline) > 0 {
			if err := r.decider.Published(ctx, rel, baseline); err != nil {
				rollErr = fmt.Errorf("release %s of %s is published but its rollout did not start, so it goes everywhere at once: %w", rel.Version, rel.Stack, err)
				r.log.Error("rollout did not start", "stack", rel.Stack, "release", rel.Version, "err", err)
			}
		}
	}
	r.mu.Lock()
	before := map[string]string{}
	for id, e := range r.deps {
		e.mu.Lock()
		if e.d.Stack == rel.Stack && e.d.Pin == nil {
			before[id] = r.stacks[rel.Stack].Latest
		}
		e.mu.Unlock()
	}
	// A Sync may have read the release from the store already (and told the
	// agents); it is added once.
	if !r.stacks[rel.Stack].Has(rel.Version) {
		r.addReleaseLocked(rel)
	}
	r.evaluateAllLocked()
	var changed []string
	if latest := r.stacks[rel.Stack].Latest; latest == rel.Version {
		for id, was := range before {
			if was != latest {
				changed = append(changed, id)
			}
		}
	}
	r.mu.Unlock()
	sort.Strings(changed)
	if len(changed) > 0 && r.onDesired != nil {
		r.onDesired(changed)
	}
	return rel, rollErr
}

func (r *Registry) addReleaseLocked(rel fleet.Release) {
	r.releases = append(r.releases, rel)
	r.stacks[rel.Stack] = fleet.NewStackReleases(r.releases, rel.Stack)
}

// Releases returns every release, newest version first within each stack, with
// how many deployments run each.
func (r *Registry) Releases(stack string) []ReleaseView {
	r.mu.RLock()
	defer r.mu.RUnlock()
	running := map[[2]string]int{}
	for _, e := range r.deps {
		e.mu.Lock()
		running[[2]string{e.d.Stack, e.d.RunningRelease}]++
		e.mu.Unlock()
	}
	var out []ReleaseView
	for _, rel := range r.releases {
		if stack != "" && rel.Stack != stack {
			continue
		}
		out = append(out, ReleaseView{Release: rel, Latest: r.stacks[rel.Stack].Latest == rel.Version, Deployments: running[[2]string{rel.Stack, rel.Version}]})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Release.Stack != out[j].Release.Stack {
			return out[i].Release.Stack < out[j].Release.Stack
		}
		return fleet.CompareVersions(out[i].Release.Version, out[j].Release.Version) > 0
	})
	return out
}

// ReleaseView is a release with whether it is its stack's latest and how many
// deployments run it.
type ReleaseView struct {
	Release     fleet.Release
	Latest      bool
	Deployments int
}

// Events returns up to limit status changes, newest first, of one deployment or all.
func (r *Registry) Events(ctx context.Context, id string, limit int) ([]fleet.Event, error) {
	if id != "" {
		r.mu.RLock()
		_, ok := r.deps[id]
		r.mu.RUnlock()
		if !ok {
			return nil, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
		}
	}
	// Record any change the timer has not noticed yet, so the history agrees
	// with the status the API shows at this instant.
	r.evaluateAll()
	if err := r.Flush(ctx); err != nil {
		return nil, err
	}
	return r.st.ListEvents(ctx, id, limit)
}

// statusCollector exports the number of deployments per status at scrape time.
type statusCollector struct{ r *Registry }

var statusDesc = prometheus.NewDesc("periscope_deployments", "Deployments by current status.", []string{"status"}, nil)

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- statusDesc }

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Summary(fleet.Filter{})
	for st, n := range s.ByStatus {
		ch <- prometheus.MustNewConstMetric(statusDesc, prometheus.GaugeValue, float64(n), string(st))
	}
}
