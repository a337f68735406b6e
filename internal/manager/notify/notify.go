// Package notify tells people when a deployment needs attention: it watches the
// registry's status changes, and how long deployments have been behind their
// desired release, and POSTs a JSON event (or a Slack message) to each
// configured webhook.
//
// A change is sent only once it has held for the debounce time, so a flapping
// deployment sends nothing; a deployment that goes unhealthy and stays sends one
// "entered", and later one "resolved". Every notification is recorded, with one
// delivery per webhook, in the store before it is sent, and each webhook has its
// own queue and worker, so a dead webhook delays no other. Failed deliveries are
// retried with exponential backoff and jitter up to max_attempts; pending ones
// are resumed after a restart.
//
// Concurrency: Observe may be called from any goroutine, with any locks held; it
// only queues. One loop goroutine owns the per-deployment state; each webhook's
// worker owns its deliveries.
package notify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/retry"
	"github.com/periscope-dev/periscope/internal/store"
)

// The kinds of notification; webhooks subscribe to them by name.
const (
	KindUnhealthy store.NotificationKind = "unhealthy"
	KindStale     store.NotificationKind = "stale"
	KindFailed    store.NotificationKind = "failed"
	// KindBehind is a deployment behind its desired release for longer than
	// behind_after.
	KindBehind store.NotificationKind = "behind"
	// KindRollout is a progressive rollout that halted (entered), or
	// completed or was aborted (resolved).
	KindRollout store.NotificationKind = "rollout"
)

// statusKinds are the kinds that follow a status of the same name.
var statusKinds = [...]store.NotificationKind{KindUnhealthy, KindStale, KindFailed}

// Fleet is what the notifier reads of the registry. It is never called from
// Observe, which runs under the registry's locks.
type Fleet interface {
	Get(id string) (registry.View, error)
	List(f fleet.Filter, p registry.Page) ([]registry.View, int)
}

// Settings are the notifier's collaborators and tunables; zero values are safe.
type Settings struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Registerer receives the notifier's metrics (none are registered when nil).
	Registerer prometheus.Registerer
	// Client sends the webhook requests (http.DefaultClient's transport when nil).
	Client *http.Client
	// Jitter returns a number in [0, 1) that spreads retries out, so webhooks
	// that failed together are not retried together (math/rand/v2 when nil).
	Jitter func() float64
	// Tick is how often, in real time, changes that have held and retries that
	// are due are looked for (1 s when zero). Due times themselves are read from
	// Clock, so a fake clock drives them in tests.
	Tick time.Duration
	// PollInterval is how often, by Clock, the fleet is asked which deployments
	// are behind (5 s when zero).
	PollInterval time.Duration
	// Backoff is the wait before the first retry; each retry doubles it, up to
	// MaxBackoff (5 s and 10 min when zero). Jitter takes up to half of it off.
	Backoff, MaxBackoff time.Duration
	// Timeout bounds one delivery attempt (10 s when zero).
	Timeout time.Duration
}

// key names the state of one deployment for one kind.
type key struct {
	dep  string
	kind store.NotificationKind
}

// track is what the notifier knows of one deployment and kind: whether it is in
// that state now, whether the last notification said it was, and, while the two
// differ, when the change will have held long enough to be sent. A track exists
// only while either is true or a change is waiting, so a healthy fleet costs nothing.
type track struct {
	notified bool
	current  bool
	// changedAt is when current took its value: the notification's At.
	changedAt time.Time
	dueAt     time.Time
	// ev is the status change that set current (status kinds).
	ev fleet.Event
	// behind and behindSince are the last behind reason and start seen (KindBehind).
	behind      fleet.BehindReason
	behindSince time.Time
}

// Notifier turns status changes into webhook deliveries. Create it with New,
// pass Observe to the registry, then Start; Shutdown at the end.
type Notifier struct {
	cfg         config.Notifications
	st          store.Notifications
	log         *slog.Logger
	clk         clock.Clock
	client      *http.Client
	tick, poll  time.Duration
	backoff     retry.Backoff
	timeout     time.Duration
	debounce    time.Duration
	behindAfter time.Duration
	kinds       map[store.NotificationKind]bool
	hooks       []*hook
	byName      map[string]*hook
	m           metrics

	inMu  sync.Mutex
	inbox []fleet.Event
	// notes are notifications made whole elsewhere (rollouts), to record.
	notes  []*store.Notification
	closed bool
	wake   chan struct{}

	// The loop goroutine owns these (and Start and Shutdown, when it is not running).
	fleet    Fleet
	started  time.Time
	lastPoll time.Time
	tracks   map[key]*track
	waiting  map[key]*track
	outbox   []*store.Notification

	// stop ends the loops; abort ends the requests in flight, which Shutdown
	// lets finish until its deadline.
	stop      context.CancelFunc
	abortCtx  context.Context
	abort     context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	shutOnce  sync.Once
	shutErr   error
}

type metrics struct {
	recorded *prometheus.CounterVec
	sent     *prometheus.CounterVec
	failed   *prometheus.CounterVec
	errors   *prometheus.CounterVec
	queue    *prometheus.GaugeVec
}

// New returns a notifier for cfg's webhooks that records to st. It sends
// nothing until Start.
func New(cfg config.Notifications, st store.Notifications, s Settings) (*Notifier, error) {
	if st == nil || (reflect.ValueOf(st).Kind() == reflect.Pointer && reflect.ValueOf(st).IsNil()) {
		return nil, errors.New("notify: nil store")
	}
	if len(cfg.Webhooks) == 0 {
		return nil, errors.New("notify: no webhooks configured")
	}
	n := &Notifier{
		cfg: cfg, st: st, log: s.Logger, clk: clock.Or(s.Clock), client: s.Client,
		tick: cmp.Or(s.Tick, time.Second), poll: cmp.Or(s.PollInterval, 5*time.Second),
		backoff: retry.Backoff{Initial: cmp.Or(s.Backoff, 5*time.Second), Max: cmp.Or(s.MaxBackoff, 10*time.Minute), Jitter: 0.5, Rand: s.Jitter},
		timeout: cmp.Or(s.Timeout, 10*time.Second), debounce: time.Duration(cfg.Debounce), behindAfter: time.Duration(cfg.BehindAfter),
		kinds: map[store.NotificationKind]bool{}, byName: map[string]*hook{}, wake: make(chan struct{}, 1),
		tracks: map[key]*track{}, waiting: map[key]*track{},
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.client == nil {
		n.client = &http.Client{}
	}
	if cfg.MaxAttempts < 1 || cfg.Debounce < 0 || cfg.BehindAfter <= 0 {
		return nil, fmt.Errorf("notify: max_attempts %d, debounce %v or behind_after %v out of range", cfg.MaxAttempts, n.debounce, n.behindAfter)
	}
	n.m = metrics{
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_notifications_total", Help: "Notifications recorded, by kind and state (entered or resolved)."}, []string{"kind", "state"}),
		sent:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_notifications_sent_total", Help: "Notifications a webhook accepted, by webhook."}, []string{"webhook"}),
		failed:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_notifications_failed_total", Help: "Notifications given up on (refused, or max_attempts reached), by webhook."}, []string{"webhook"}),
		errors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_notification_attempt_errors_total", Help: "Delivery attempts that failed, retried or not, by webhook."}, []string{"webhook"}),
		queue:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "periscope_notification_queue_length", Help: "Deliveries waiting to be sent or retried, by webhook."}, []string{"webhook"}),
	}
	if s.Registerer != nil {
		for _, c := range []prometheus.Collector{n.m.recorded, n.m.sent, n.m.failed, n.m.errors, n.m.queue} {
			if err := s.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("notify: register metrics: %w", err)
			}
		}
	}
	for _, w := range cfg.Webhooks {
		h := newHook(n, w)
		n.hooks = append(n.hooks, h)
		n.byName[w.Name] = h
		for _, k := range [...]store.NotificationKind{KindUnhealthy, KindStale, KindFailed, KindBehind} {
			if w.Wants(string(k)) {
				n.kinds[k] = true
			}
		}
	}
	// Until Start, Shutdown has nothing in flight to abort.
	n.abortCtx, n.abort = context.WithCancel(context.Background())
	return n, nil
}

// Observe queues a status change. It is registry.Settings.OnEvent: it is called
// with the registry's locks held, so it returns at once and never calls back.
func (n *Notifier) Observe(ev fleet.Event) {
	if !n.relevant(ev) {
		return
	}
	n.enqueue(func() { n.inbox = append(n.inbox, ev) })
}

// enqueue runs add under inMu unless the notifier is closed, and wakes the
// loop; it never blocks.
func (n *Notifier) enqueue(add func()) {
	n.inMu.Lock()
	if !n.closed {
		add()
	}
	n.inMu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Notifier) relevant(ev fleet.Event) bool {
	for _, k := range statusKinds {
		if n.kinds[k] && (ev.From == fleet.Status(k) || ev.To == fleet.Status(k)) {
			return true
		}
	}
	return false
}

// Start reads what was last sent about each deployment, resumes the deliveries
// still pending, finds the changes that were waiting to hold when the manager
// last stopped, and starts the loop and the webhooks' workers. Call it once the
// registry has loaded the fleet.
func (n *Notifier) Start(ctx context.Context, f Fleet) error {
	err := errors.New("notify: started twice")
	n.startOnce.Do(func() { err = n.start(ctx, f) })
	return err
}

func (n *Notifier) start(ctx context.Context, f Fleet) error {
	n.fleet = f
	n.started = n.clk.Now()
	latest, err := n.st.LatestNotifications(ctx)
	if err != nil {
		return fmt.Errorf("notify: read the last notifications: %w", err)
	}
	for _, note := range latest {
		if note.State == store.Entered && n.kinds[note.Kind] {
			n.tracks[key{note.Deployment.ID, note.Kind}] = &track{notified: true, current: true, behind: note.BehindReason}
		}
	}
	// A change still holding when the manager stopped left no event to find it
	// by: compare what was last sent with the fleet as it is now.
	views, _ := f.List(fleet.Filter{}, registry.Page{})
	for _, v := range views {
		for _, k := range statusKinds {
			if !n.kinds[k] {
				continue
			}
			kk, in := key{v.Deployment.ID, k}, v.Evaluation.Status == fleet.Status(k)
			t := n.tracks[kk]
			if (t == nil && !in) || (t != nil && t.current == in) {
				continue
			}
			ev := fleet.Event{DeploymentID: v.Deployment.ID, At: cmp.Or(v.StatusSince, n.started), To: v.Evaluation.Status,
				Reason: v.Evaluation.Reason, ReasonCode: v.Evaluation.ReasonCode, Release: v.Deployment.RunningRelease}
			n.set(kk, in, ev.At, n.started, func(t *track) { t.ev = ev })
		}
	}
	pending, err := n.st.PendingNotifications(ctx)
	if err != nil {
		return fmt.Errorf("notify: read pending deliveries: %w", err)
	}
	resumed := 0
	for i := range pending {
		note := &pending[i]
		for _, d := range note.Deliveries {
			if d.State != store.Pending {
				continue
			}
			if h := n.byName[d.Webhook]; h != nil {
				h.add(&job{note: note, d: d})
				resumed++
				continue
			}
			d.State, d.LastError, d.UpdatedAt = store.Failed, fmt.Sprintf("webhook %q is no longer configured", d.Webhook), n.started
			if err := n.st.UpdateDelivery(ctx, note.ID, d); err != nil {
				return fmt.Errorf("notify: give up a delivery to a removed webhook: %w", err)
			}
		}
	}
	if resumed > 0 {
		n.log.Info("resuming pending notification deliveries", "deliveries", resumed)
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	n.stop = stop
	n.wg.Add(1 + len(n.hooks))
	go n.loop(loopCtx)
	for _, h := range n.hooks {
		go h.run(loopCtx)
	}
	return nil
}

func (n *Notifier) loop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.tick)
	defer t.Stop()
	for {
		n.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.wake:
		}
	}
}

// step applies the queued changes, polls for behind deployments when it is time,
// sends the changes that have held, and records them.
func (n *Notifier) step(ctx context.Context) {
	n.inMu.Lock()
	evs, notes := n.inbox, n.notes
	n.inbox, n.notes = nil, nil
	n.inMu.Unlock()
	n.outbox = append(n.outbox, notes...)
	now := n.clk.Now()
	for _, ev := range evs {
		for _, k := range statusKinds {
			if n.kinds[k] && (ev.From == fleet.Status(k) || ev.To == fleet.Status(k)) {
				// Hold time counts from when the notifier could see the change, so
				// the fleet going stale while the manager was down is no flood.
				n.set(key{ev.DeploymentID, k}, ev.To == fleet.Status(k), ev.At, later(ev.At, n.started), func(t *track) { t.ev = ev })
			}
		}
		// What had held by the time of this event goes before the next is
		// applied: with no debounce a quick flap is two notifications, not none,
		// and a batch read late is judged by when its changes happened.
		n.fireDue(ev.At, now)
	}
	if n.kinds[KindBehind] && (n.lastPoll.IsZero() || now.Sub(n.lastPoll) >= n.poll) {
		n.pollBehind(now)
		n.lastPoll = now
	}
	n.fireDue(now, now)
	n.record(ctx)
}

// set records that deployment k.dep is (in) or is not in state k.kind since at,
// the change counting as held debounce after holdFrom. update fills in the
// change's details.
func (n *Notifier) set(k key, in bool, at, holdFrom time.Time, update func(*track)) {
	t := n.tracks[k]
	if t == nil {
		if !in {
			return // leaving a state nobody was told of
		}
		t = &track{}
		n.tracks[k] = t
	}
	if t.current == in {
		return
	}
	t.current, t.changedAt, t.dueAt = in, at, holdFrom.Add(n.debounce)
	update(t)
	n.settle(k, t)
}

// settle files t under waiting while its change is unsent, and forgets it once
// there is nothing to remember.
func (n *Notifier) settle(k key, t *track) {
	if t.current != t.notified {
		n.waiting[k] = t
		return
	}
	delete(n.waiting, k)
	if !t.current {
		delete(n.tracks, k)
	}
}

// pollBehind compares the deployments behind their desired release with those
// known to be: a deployment behind for behind_after has entered, and one no
// longer behind has left.
func (n *Notifier) pollBehind(now time.Time) {
	views, _ := n.fleet.List(fleet.Filter{Behind: "any"}, registry.Page{})
	behind := make(map[string]bool, len(views))
	for _, v := range views {
		if v.Evaluation.Behind.Planned() {
			continue // a rollout's wave or a customer's window: nothing to act on
		}
		id := v.Deployment.ID
		behind[id] = true
		since := v.Deployment.BehindSince
		if since.IsZero() {
			since = now // the registry has not evaluated it since it fell behind
		}
		k := key{id, KindBehind}
		t := n.tracks[k]
		if t == nil {
			t = &track{}
			n.tracks[k] = t
		}
		t.behind, t.behindSince = v.Evaluation.Behind, since
		if !t.current {
			// BehindSince survives restarts, so time behind while the manager was
			// down counts; what was last sent is known, so nothing repeats.
			t.current, t.changedAt, t.dueAt = true, since.Add(n.behindAfter), since.Add(max(n.behindAfter, n.debounce))
			n.settle(k, t)
		}
	}
	for k, t := range n.tracks {
		if k.kind == KindBehind && t.current && !behind[k.dep] {
			at := n.caughtUp(k.dep, t.behindSince, now)
			t.current, t.changedAt, t.dueAt = false, at, later(at, n.started).Add(n.debounce)
			n.settle(k, t)
		}
	}
}

// caughtUp is when deployment id stopped being behind: when it started running
// its desired release if that is why, else now, when the poll noticed.
func (n *Notifier) caughtUp(id string, behindSince, now time.Time) time.Time {
	v, err := n.fleet.Get(id)
	if err != nil {
		return now
	}
	d, e := v.Deployment, v.Evaluation
	if e.Behind == "" && d.RunningRelease == e.Desired && d.ReleaseSince.After(behindSince) && !d.ReleaseSince.After(now) {
		return d.ReleaseSince
	}
	return now
}

// fireDue turns every change that had held by asOf into a notification,
// oldest first.
func (n *Notifier) fireDue(asOf, now time.Time) {
	var due []key
	for k, t := range n.waiting {
		if !t.dueAt.After(asOf) {
			due = append(due, k)
		}
	}
	slices.SortFunc(due, func(a, b key) int {
		return cmp.Or(n.waiting[a].dueAt.Compare(n.waiting[b].dueAt), cmp.Compare(a.dep, b.dep), cmp.Compare(a.kind, b.kind))
	})
	for _, k := range due {
		t := n.waiting[k]
		note := n.notification(k, t, now)
		t.notified = t.current
		n.settle(k, t)
		if len(note.Deliveries) > 0 {
			n.outbox = append(n.outbox, note)
		}
	}
}

// notification describes t's change with what the registry says of the
// deployment now.
func (n *Notifier) notification(k key, t *track, now time.Time) *store.Notification {
	note := &store.Notification{ID: uuid.NewString(), Kind: k.kind, State: store.Resolved, At: t.changedAt.UTC(), CreatedAt: now.UTC(),
		Deployment: store.NotificationDeployment{ID: k.dep}}
	if t.current {
		note.State = store.Entered
	}
	v, err := n.fleet.Get(k.dep)
	found := err == nil
	if found {
		d := v.Deployment
		note.Deployment = store.NotificationDeployment{ID: d.ID, Name: d.Name, Customer: d.Customer, Cloud: d.Cloud, Region: d.Region, Release: d.RunningRelease}
	}
	e := v.Evaluation
	switch {
	case k.kind == KindBehind:
		note.Status, note.BehindReason = e.Status, t.behind
		if t.current {
			note.Reason = fmt.Sprintf("running %s, desired %s, behind since %s", dash(note.Deployment.Release), dash(e.Desired),
				t.behindSince.UTC().Format(time.RFC3339))
		} else if e.Behind == "" && note.Deployment.Release == e.Desired {
			note.Reason = "running " + dash(e.Desired) + ", its desired release"
		} else {
			note.Reason = string(e.Status)
			if e.Reason != "" {
				note.Reason += ": " + e.Reason
			}
		}
	case t.current:
		note.Status, note.PreviousStatus, note.Reason, note.ReasonCode = t.ev.To, t.ev.From, t.ev.Reason, t.ev.ReasonCode
		if found && e.Status == t.ev.To {
			// The reason may have grown since (another component down).
			note.Reason, note.ReasonCode = e.Reason, e.ReasonCode
		}
		if t.ev.Release != "" {
			note.Deployment.Release = t.ev.Release
		}
	default:
		note.PreviousStatus = fleet.Status(k.kind)
		note.Status, note.Reason, note.ReasonCode = t.ev.To, t.ev.Reason, t.ev.ReasonCode
		if found && e.Status != fleet.Status(k.kind) {
			note.Status, note.Reason, note.ReasonCode = e.Status, e.Reason, e.ReasonCode
		}
	}
	for _, h := range n.hooks {
		if h.cfg.Wants(string(k.kind)) {
			note.Deliveries = append(note.Deliveries, store.Delivery{Webhook: h.cfg.Name, State: store.Pending, UpdatedAt: note.CreatedAt})
		}
	}
	return note
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// record writes the new notifications to the store, in order, and hands each to
// its webhooks. One the store refuses stays first in line for the next step:
// nothing is sent that is not recorded, so a restart never loses one.
func (n *Notifier) record(ctx context.Context) {
	for len(n.outbox) > 0 {
		note := n.outbox[0]
		if err := n.st.AddNotification(ctx, *note); err != nil {
			if ctx.Err() == nil {
				n.log.Warn("recording a notification failed; will retry", "deployment", note.Deployment.ID, "kind", note.Kind, "err", err)
			}
			return
		}
		n.outbox = n.outbox[1:]
		n.m.recorded.WithLabelValues(string(note.Kind), string(note.State)).Inc()
		n.log.Info("deployment notification", "deployment", note.Deployment.ID, "kind", note.Kind, "state", note.State,
			"status", note.Status, "reason", note.Reason)
		for _, d := range note.Deliveries {
			n.byName[d.Webhook].add(&job{note: note, d: d})
		}
	}
}

// List returns recorded notifications, newest first.
func (n *Notifier) List(ctx context.Context, q store.NotificationQuery) ([]store.Notification, error) {
	return n.st.ListNotifications(ctx, q)
}

// Shutdown stops watching and sending. Requests in flight may finish until ctx
// ends; then the notifications and delivery states not yet written are written,
// so what is pending is resumed at the next Start. It is safe to call without
// Start and more than once.
func (n *Notifier) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() {
		n.inMu.Lock()
		n.closed = true
		n.inMu.Unlock()
		if n.stop == nil {
			return // never started
		}
		n.stop()
		done := make(chan struct{})
		go func() { n.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			n.abort()
			<-done
		}
		// The loop has stopped: a last step records what is due. The local
		// store's writes are quick, and losing them would cost more than
		// overrunning the deadline by them.
		write := context.WithoutCancel(ctx)
		n.step(write)
		var errs []error
		if len(n.outbox) > 0 {
			errs = append(errs, fmt.Errorf("notify: %d notifications could not be recorded", len(n.outbox)))
		}
		for _, h := range n.hooks {
			errs = append(errs, h.save(write))
		}
		n.abort()
		n.shutErr = errors.Join(errs...)
	})
	return n.shutErr
}
