package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/notify"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// Every test runs the notifier over the real registry and the real DuckDB store,
// and changes deployments' status the way agents do, with check-ins. Time is a
// fake clock the test moves, so a two-minute debounce or an hour behind takes
// no time; the webhooks are real HTTP servers.

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

const backoff = 10 * time.Second

// receiver is a webhook: it records every request, kicks arrived, and answers as told.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []request
	arrived chan struct{}
	// answer writes the answer to the i-th request (0-based); nil answers 204.
	answer func(i int, w http.ResponseWriter, r *http.Request)
}

type request struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, answer func(i int, w http.ResponseWriter, r *http.Request)) *receiver {
	rc := &receiver{answer: answer, arrived: make(chan struct{}, 1)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		i := len(rc.got)
		rc.got = append(rc.got, request{header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		kick(rc.arrived)
		if rc.answer == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		rc.answer(i, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.got...)
}

// events decodes the JSON bodies received.
func (rc *receiver) events(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range rc.requests() {
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("webhook body %q: %v", r.body, err)
		}
		out = append(out, m)
	}
	return out
}

// watchedStore is the notifier's store with a kick after every write, which is when
// a notification or a delivery's recorded state can have changed.
type watchedStore struct {
	store.Notifications
	wrote chan struct{}
}

func (s watchedStore) AddNotification(ctx context.Context, n store.Notification) error {
	defer kick(s.wrote)
	return s.Notifications.AddNotification(ctx, n)
}

func (s watchedStore) UpdateDelivery(ctx context.Context, id string, d store.Delivery) error {
	defer kick(s.wrote)
	return s.Notifications.UpdateDelivery(ctx, id, d)
}

// kick wakes the one waiter on ch, now or when it next waits.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a kick is pending already
	}
}

// fixture is a registry and a notifier over one store, as the manager wires them.
type fixture struct {
	t        *testing.T
	wrote    chan struct{} // kicked by the notifier's store writes
	clk      *clock.Fake
	dir      string
	cfg      config.Notifications
	settings notify.Settings
	params   fleet.Params
	st       *duckdb.Store
	reg      *registry.Registry
	n        *notify.Notifier
	metrics  *prometheus.Registry
	// decider, when set, steers the registry's desired releases.
	decider registry.Decider
}

func defaultConfig(hooks ...config.Webhook) config.Notifications {
	c := config.DefaultNotifications()
	c.Webhooks = hooks
	return c
}

func start(t *testing.T, cfg config.Notifications) *fixture {
	t.Helper()
	return startSteered(t, cfg, nil)
}

// startSteered is start with a registry whose desired releases d steers.
func startSteered(t *testing.T, cfg config.Notifications, d registry.Decider) *fixture {
	t.Helper()
	f := &fixture{t: t, wrote: make(chan struct{}, 1), clk: clock.NewFake(t0), dir: t.TempDir(), cfg: cfg, decider: d,
		// No deployment goes stale unless a test asks for it.
		params: fleet.Params{HeartbeatInterval: 30 * time.Second, StaleAfter: 1000 * time.Hour},
		settings: notify.Settings{Tick: 5 * time.Millisecond, PollInterval: time.Second, Backoff: backoff, MaxBackoff: 10 * time.Minute,
			Timeout: 5 * time.Second, Jitter: func() float64 { return 0 }}}
	f.open()
	t.Cleanup(f.stop)
	return f
}

// open starts the store, the notifier and the registry, in the manager's order.
func (f *fixture) open() {
	t := f.t
	t.Helper()
	ctx := context.Background()
	var err error
	if f.st, err = duckdb.Open(ctx, f.dir); err != nil {
		t.Fatal(err)
	}
	s := f.settings
	s.Clock, f.metrics = f.clk, prometheus.NewRegistry()
	s.Registerer = f.metrics
	if f.n, err = notify.New(f.cfg, watchedStore{Notifications: f.st, wrote: f.wrote}, s); err != nil {
		t.Fatal(err)
	}
	f.reg, err = registry.New(f.st, registry.Settings{Clock: f.clk, Params: f.params, FlushInterval: 20 * time.Millisecond,
		EvalInterval: 5 * time.Millisecond, OnEvent: f.n.Observe, Decider: f.decider})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.n.Start(ctx, f.reg); err != nil {
		t.Fatal(err)
	}
}

// stop shuts everything down as the manager does; a second call does nothing.
func (f *fixture) stop() { f.shutdown(context.Background()) }

func (f *fixture) shutdown(ctx context.Context) {
	if f.st == nil {
		return
	}
	if err := f.reg.Shutdown(ctx); err != nil {
		f.t.Error(err)
	}
	if err := f.n.Shutdown(ctx); err != nil {
		f.t.Error(err)
	}
	if err := f.st.Close(); err != nil {
		f.t.Error(err)
	}
	f.st = nil
}

func (f *fixture) create(ids ...string) {
	f.t.Helper()
	var nds []registry.NewDeployment
	for _, id := range ids {
		nds = append(nds, registry.NewDeployment{ID: id, Name: id, Customer: "acme", Cloud: "aws", Region: "us-east-1", Stack: "app"})
	}
	if _, err := f.reg.CreateDeployments(context.Background(), nds); err != nil {
		f.t.Fatal(err)
	}
}

func healthy() *fleet.Health { return &fleet.Health{Reported: true, Healthy: true} }

func dbDown(msg string) *fleet.Health {
	return &fleet.Health{Reported: true, Healthy: false, Components: map[string]fleet.ComponentHealth{
		"db": {Healthy: false, LastError: msg}, "api": {Healthy: true}}}
}

// checkin reports health (and the release, when given) for id, as a polling agent.
func (f *fixture) checkin(id, release string, h *fleet.Health) {
	f.t.Helper()
	accepts := true
	rep := registry.Report{Mode: fleet.ModePull, Health: h, AcceptsReleases: &accepts}
	if release != "" {
		rep.Description = &registry.Description{Release: release, AgentVersion: "1.0.0"}
	}
	if _, err := f.reg.Checkin(id, rep); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) list(q store.NotificationQuery) []store.Notification {
	f.t.Helper()
	ns, err := f.n.List(context.Background(), q)
	if err != nil {
		f.t.Fatal(err)
	}
	return ns
}

// metric reads a counter or gauge of the notifier for one webhook.
func (f *fixture) metric(name, webhook string) float64 {
	f.t.Helper()
	mfs, err := f.metrics.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == webhook {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	f.t.Fatalf("no metric %s{webhook=%q}", name, webhook)
	return 0
}

// waitFor waits until cond, which the notifier's loops make true, looking again
// each time wake is kicked.
func waitFor(t *testing.T, what string, wake <-chan struct{}, cond func() bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-wake:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// wait waits until the webhook has received n requests.
func (rc *receiver) wait(t *testing.T, what string, n int) {
	t.Helper()
	waitFor(t, what, rc.arrived, func() bool { return len(rc.requests()) >= n })
}

// delivery waits until the only notification of id has a delivery to webhook
// that satisfies cond, and returns it.
func (f *fixture) delivery(id, webhook, what string, cond func(store.Delivery) bool) store.Delivery {
	f.t.Helper()
	var got store.Delivery
	waitFor(f.t, what, f.wrote, func() bool {
		for _, n := range f.list(store.NotificationQuery{Deployment: id}) {
			for _, d := range n.Deliveries {
				if d.Webhook == webhook && cond(d) {
					got = d
					return true
				}
			}
		}
		return false
	})
	return got
}

// TestUnhealthyAndBackIsSentOnceEach is the integration test: one deployment
// checks in unhealthy and later healthy again through the real registry, and
// the webhook receives exactly one "entered" and one "resolved", each once, as
// the documented JSON, only after each change has held for the debounce time.
func TestUnhealthyAndBackIsSentOnceEach(t *testing.T) {
	rc := newReceiver(t, nil)
	f := start(t, defaultConfig(config.Webhook{Name: "ops", URL: rc.URL, Headers: map[string]string{"Authorization": "Bearer s3cret"}}))
	f.create("acme-prod")
	f.checkin("acme-prod", "2.0.0", healthy())

	f.checkin("acme-prod", "", dbDown("connection refused"))
	f.clk.Advance(time.Minute + 59*time.Second)
	f.checkin("acme-prod", "", dbDown("connection refused")) // still unhealthy: no new change
	f.clk.Advance(time.Second)
	rc.wait(t, "the unhealthy notification", 1)

	f.clk.Advance(10 * time.Minute)
	f.checkin("acme-prod", "", healthy())
	f.clk.Advance(2 * time.Minute)
	rc.wait(t, "the recovery notification", 2)
	// The webhook has answered both, but the notifier records the second delivery
	// only after that answer: wait for the store, not just the receiver.
	var ns []store.Notification
	waitFor(t, "both recorded as delivered", f.wrote, func() bool {
		ns = f.list(store.NotificationQuery{})
		delivered := 0
		for _, n := range ns {
			if len(n.Deliveries) == 1 && n.Deliveries[0].State == store.Delivered {
				delivered++
			}
		}
		return delivered == 2
	})
	if len(ns) != 2 {
		t.Fatalf("recorded = %+v, want two delivered notifications", ns)
	}

	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("webhook received %d requests, want 2", len(reqs))
	}
	evs := rc.events(t)
	dep := map[string]any{"id": "acme-prod", "name": "acme-prod", "customer": "acme", "cloud": "aws", "region": "us-east-1", "release": "2.0.0"}
	want := []map[string]any{
		{"id": ns[1].ID, "kind": "unhealthy", "state": "entered", "deployment": dep, "status": "unhealthy", "previous_status": "healthy",
			"reason": "components down: db: connection refused", "reason_code": "components-down", "at": "2026-11-24T09:00:00Z"},
		{"id": ns[0].ID, "kind": "unhealthy", "state": "resolved", "deployment": dep, "status": "healthy", "previous_status": "unhealthy",
			"reason": "", "reason_code": "", "at": "2026-11-24T09:12:00Z"},
	}
	for i := range want {
		if !reflect.DeepEqual(evs[i], want[i]) {
			t.Errorf("event %d = %v\nwant %v", i, evs[i], want[i])
		}
		h := reqs[i].header
		if h.Get("Authorization") != "Bearer s3cret" || h.Get("Content-Type") != "application/json" || h.Get("Periscope-Notification-Id") != want[i]["id"] {
			t.Errorf("request %d headers = %v", i, h)
		}
	}
	if got := ns[1].CreatedAt; !got.Equal(t0.Add(2 * time.Minute)) {
		t.Errorf("entered created at %v, want once it had held for the 2m debounce", got)
	}
	if f.metric("periscope_notifications_sent_total", "ops") != 2 || f.metric("periscope_notification_queue_length", "ops") != 0 {
		t.Errorf("sent = %v, queue = %v; want 2 and 0", f.metric("periscope_notifications_sent_total", "ops"), f.metric("periscope_notification_queue_length", "ops"))
	}
}

// TestFlappingWithinDebounceSendsNothing: a deployment that goes unhealthy and
// back several times, each time for less than the debounce, sends nothing,
// while one that goes unhealthy at the same time and stays sends one.
func TestFlappingWithinDebounceSendsNothing(t *testing.T) {
	rc := newReceiver(t, nil)
	f := start(t, defaultConfig(config.Webhook{Name: "ops", URL: rc.URL}))
	f.create("flappy", "steady")
	f.checkin("flappy", "2.0.0", healthy())
	f.checkin("steady", "2.0.0", healthy())
	for i := 0; i < 3; i++ {
		f.checkin("flappy", "", dbDown("timeout"))
		f.clk.Advance(30 * time.Second)
		f.checkin("flappy", "", healthy())
		f.clk.Advance(30 * time.Second)
	}
	f.checkin("steady", "", dbDown("disk full"))
	f.clk.Advance(2 * time.Minute)
	rc.wait(t, "steady's notification", 1)
	// Both were judged in the same pass, so flappy would be here by now.
	if evs := rc.events(t); len(evs) != 1 || evs[0]["deployment"].(map[string]any)["id"] != "steady" {
		t.Fatalf("received %v, want only steady's", evs)
	}
	if ns := f.list(store.NotificationQuery{Deployment: "flappy"}); len(ns) != 0 {
		t.Fatalf("flappy has notifications %+v", ns)
	}
}

// TestRetriesUntilTheWebhookAccepts: a webhook that fails twice gets the
// notification on the third attempt, after the backoff each time, and the
// attempts and last error are recorded.
func TestRetriesUntilTheWebhookAccepts(t *testing.T) {
	rc := newReceiver(t, func(i int, w http.ResponseWriter, _ *http.Request) {
		switch i {
		case 0:
			http.Error(w, "boom", http.StatusInternalServerError)
		case 1:
			http.Error(w, "upstream down", http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	cfg := defaultConfig(config.Webhook{Name: "ops", URL: rc.URL})
	cfg.Debounce = 0
	f := start(t, cfg)
	f.create("acme-prod")
	f.checkin("acme-prod", "2.0.0", healthy())
	f.checkin("acme-prod", "", dbDown("connection refused"))

	d := f.delivery("acme-prod", "ops", "the first attempt", func(d store.Delivery) bool { return d.Attempts == 1 })
	if d.State != store.Pending || d.LastError != "answered 500 Internal Server Error: boom" || !d.NextAttempt.Equal(t0.Add(backoff)) {
		t.Fatalf("after one attempt: %+v, want pending with the 500 and a retry after %v", d, backoff)
	}
	f.clk.Advance(backoff)
	d = f.delivery("acme-prod", "ops", "the second attempt", func(d store.Delivery) bool { return d.Attempts == 2 })
	if d.State != store.Pending || !d.NextAttempt.Equal(t0.Add(backoff+2*backoff)) {
		t.Fatalf("after two attempts: %+v, want a retry after twice the backoff", d)
	}
	f.clk.Advance(2 * backoff)
	d = f.delivery("acme-prod", "ops", "the delivery", func(d store.Delivery) bool { return d.State == store.Delivered })
	if d.Attempts != 3 || d.LastError != "answered 502 Bad Gateway: upstream down" || !d.DeliveredAt.Equal(t0.Add(3*backoff)) || !d.NextAttempt.IsZero() {
		t.Fatalf("delivered: %+v, want 3 attempts, the 502 as last error, delivered at %v", d, t0.Add(3*backoff))
	}
	reqs := rc.requests()
	if len(reqs) != 3 || string(reqs[0].body) != string(reqs[2].body) {
		t.Fatalf("webhook got %d requests, want the same body three times", len(reqs))
	}
	if f.metric("periscope_notification_attempt_errors_total", "ops") != 2 || f.metric("periscope_notifications_sent_total", "ops") != 1 {
		t.Error("metrics do not show two failed attempts and one notification sent")
	}
}

// TestAWebhookThatKeepsFailingFailsAlone: a webhook that hangs and then answers
// 500 is given up on after max_attempts with the last error, one that refuses
// the request (400) is given up on at once, and neither delays a working one.
func TestAWebhookThatKeepsFailingFailsAlone(t *testing.T) {
	release := make(chan struct{})
	dead := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			select { // the first request hangs until the working webhook got its event
			case <-release:
			case <-r.Context().Done():
			}
		}
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
	})
	refusing := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":"unknown channel"}`, http.StatusBadRequest)
	})
	alive := newReceiver(t, nil)
	cfg := defaultConfig(config.Webhook{Name: "dead", URL: dead.URL}, config.Webhook{Name: "refusing", URL: refusing.URL},
		config.Webhook{Name: "alive", URL: alive.URL})
	cfg.Debounce, cfg.MaxAttempts = 0, 3
	f := start(t, cfg)
	f.create("acme-prod")
	f.checkin("acme-prod", "2.0.0", healthy())
	f.checkin("acme-prod", "", dbDown("connection refused"))

	alive.wait(t, "the working webhook's event while the dead one hangs", 1)
	close(release)
	f.delivery("acme-prod", "refusing", "the refusal", func(d store.Delivery) bool { return d.State == store.Failed })
	for attempt := 1; attempt < 3; attempt++ {
		f.delivery("acme-prod", "dead", fmt.Sprintf("attempt %d", attempt), func(d store.Delivery) bool { return d.Attempts == attempt })
		f.clk.Advance(10 * time.Minute)
	}
	d := f.delivery("acme-prod", "dead", "giving up", func(d store.Delivery) bool { return d.State == store.Failed })
	if d.Attempts != 3 || d.LastError != "answered 500 Internal Server Error: down for maintenance" || !d.NextAttempt.IsZero() {
		t.Fatalf("dead webhook: %+v, want failed after 3 attempts with the last 500", d)
	}
	n := f.list(store.NotificationQuery{})[0]
	want := []store.Delivery{
		{Webhook: "dead", State: store.Failed, Attempts: 3, LastError: d.LastError, UpdatedAt: t0.Add(20 * time.Minute)},
		{Webhook: "refusing", State: store.Failed, Attempts: 1, LastError: `answered 400 Bad Request: {"error":"unknown channel"}`, UpdatedAt: t0},
		{Webhook: "alive", State: store.Delivered, Attempts: 1, DeliveredAt: t0, UpdatedAt: t0},
	}
	if !reflect.DeepEqual(n.Deliveries, want) {
		t.Errorf("deliveries = %+v\nwant %+v", n.Deliveries, want)
	}
	if len(dead.requests()) != 3 || len(refusing.requests()) != 1 || len(alive.requests()) != 1 {
		t.Errorf("requests: dead %d, refusing %d, alive %d; want 3, 1, 1", len(dead.requests()), len(refusing.requests()), len(alive.requests()))
	}
	if f.metric("periscope_notifications_failed_total", "dead") != 1 || f.metric("periscope_notifications_failed_total", "refusing") != 1 ||
		f.metric("periscope_notifications_sent_total", "alive") != 1 || f.metric("periscope_notification_queue_length", "dead") != 0 {
		t.Error("metrics do not show dead and refusing failed, alive sent, and empty queues")
	}
	if failed := f.list(store.NotificationQuery{State: "failed"}); len(failed) != 1 {
		t.Errorf("listing state=failed gave %d notifications, want 1", len(failed))
	}
}

// TestSlackFormat: a webhook of format slack receives text and blocks, the
// text a readable line for each state, escaped as Slack requires.
func TestSlackFormat(t *testing.T) {
	rc := newReceiver(t, nil)
	cfg := defaultConfig(config.Webhook{Name: "slack", URL: rc.URL, Format: "slack", Statuses: []string{"unhealthy"}})
	cfg.Debounce = 0
	f := start(t, cfg)
	f.create("acme-prod", "beta")
	f.checkin("acme-prod", "2.0.0", healthy())
	f.checkin("beta", "1.0.0", healthy())
	reg := &fleet.Regression{Release: "2.0.0", Previous: "1.0.0", Requests: 1000, PreviousRequests: 900, ErrorRate: 0.3,
		PreviousErrorRate: 0.01, Worse: []string{"error_rate"}, Since: t0}
	if err := f.reg.SetRegression("acme-prod", reg); err != nil {
		t.Fatal(err)
	}
	rc.wait(t, "the regression", 1)
	if err := f.reg.SetRegression("acme-prod", nil); err != nil {
		t.Fatal(err)
	}
	rc.wait(t, "the recovery", 2)
	f.checkin("beta", "", dbDown("<nil> & friends"))
	rc.wait(t, "beta", 3)

	type block struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Elements []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"elements"`
	}
	var msgs []struct {
		Text   string  `json:"text"`
		Blocks []block `json:"blocks"`
	}
	for _, r := range rc.requests() {
		var m struct {
			Text   string  `json:"text"`
			Blocks []block `json:"blocks"`
		}
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	want := []string{
		":red_circle: acme-prod is unhealthy on 2.0.0: regressed after release: error rate 30.0% vs 1.0% on 2.0.0 (1000 requests) against 1.0.0 (900 requests)",
		":large_green_circle: acme-prod recovered (healthy)",
		":red_circle: beta is unhealthy on 1.0.0: components down: db: &lt;nil&gt; &amp; friends",
	}
	for i, m := range msgs {
		if m.Text != want[i] {
			t.Errorf("message %d text = %q\nwant %q", i, m.Text, want[i])
		}
		if len(m.Blocks) != 2 || m.Blocks[0].Type != "section" || m.Blocks[0].Text == nil || m.Blocks[0].Text.Type != "mrkdwn" ||
			m.Blocks[0].Text.Text != want[i] || m.Blocks[1].Type != "context" || len(m.Blocks[1].Elements) != 1 {
			t.Errorf("message %d blocks = %+v, want a mrkdwn section with the text and a context line", i, m.Blocks)
		}
	}
	if ctx := msgs[0].Blocks[1].Elements[0].Text; ctx != "customer acme · aws us-east-1 · release 2.0.0 · status unhealthy (was healthy) · deployment acme-prod · 2026-11-24T09:00:00Z" {
		t.Errorf("context line = %q", ctx)
	}
}

// TestBehindLongerThanBehindAfter: a deployment behind its desired release for
// behind_after sends one "behind entered", and "resolved" once it runs the
// desired release; one behind for less sends nothing.
func TestBehindLongerThanBehindAfter(t *testing.T) {
	rc := newReceiver(t, nil)
	f := start(t, defaultConfig(config.Webhook{Name: "ops", URL: rc.URL, Statuses: []string{"behind"}}))
	ctx := context.Background()
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	f.create("acme-prod", "quick")
	f.checkin("acme-prod", "1.0.0", healthy())
	f.checkin("quick", "1.0.0", healthy())
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(10 * time.Minute)
	f.checkin("quick", "2.0.0", healthy())
	f.clk.Advance(49 * time.Minute)
	f.checkin("acme-prod", "", healthy()) // polls, sees 2.0.0, has not applied it yet
	f.clk.Advance(time.Minute)
	rc.wait(t, "behind entered", 1)

	f.clk.Advance(5 * time.Minute)
	f.checkin("acme-prod", "2.0.0", healthy())
	f.clk.Advance(2 * time.Minute)
	rc.wait(t, "behind resolved", 2)

	dep := map[string]any{"id": "acme-prod", "name": "acme-prod", "customer": "acme", "cloud": "aws", "region": "us-east-1"}
	evs := rc.events(t)
	for _, e := range evs {
		delete(e, "id")
	}
	want := []map[string]any{
		{"kind": "behind", "state": "entered", "deployment": with(dep, "release", "1.0.0"), "status": "healthy", "previous_status": "",
			"reason": "running 1.0.0, desired 2.0.0, behind since 2026-11-24T09:00:00Z", "reason_code": "", "behind_reason": "pull-pending",
			"at": "2026-11-24T10:00:00Z"},
		{"kind": "behind", "state": "resolved", "deployment": with(dep, "release", "2.0.0"), "status": "healthy", "previous_status": "",
			"reason": "running 2.0.0, its desired release", "reason_code": "", "behind_reason": "pull-pending", "at": "2026-11-24T10:05:00Z"},
	}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events = %v\nwant %v", evs, want)
	}
	if ns := f.list(store.NotificationQuery{Deployment: "quick"}); len(ns) != 0 {
		t.Errorf("quick, behind for 10 minutes, has notifications %+v", ns)
	}
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{k: v}
	for k, v := range m {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// TestStaleAndBack: a deployment that stops checking in is stale from its
// missed deadline; it is sent as stale, and as recovered when it checks in again.
func TestStaleAndBack(t *testing.T) {
	rc := newReceiver(t, nil)
	cfg := defaultConfig(config.Webhook{Name: "ops", URL: rc.URL})
	f := &fixture{}
	*f = *start(t, cfg) // replaced below with a short stale_after
	f.stop()
	f.dir, f.params = t.TempDir(), fleet.Params{HeartbeatInterval: 30 * time.Second, StaleAfter: 90 * time.Second}
	f.open()
	t.Cleanup(f.stop)

	f.create("acme-prod")
	f.checkin("acme-prod", "2.0.0", healthy())
	f.clk.Advance(5 * time.Minute)
	rc.wait(t, "stale", 1)
	for i := 0; i < 3; i++ {
		f.checkin("acme-prod", "", healthy())
		f.clk.Advance(time.Minute)
	}
	rc.wait(t, "recovered", 2)
	evs := rc.events(t)
	if evs[0]["state"] != "entered" || evs[0]["kind"] != "stale" || evs[0]["at"] != "2026-11-24T09:01:30Z" || evs[0]["reason_code"] != "no-checkin" ||
		evs[1]["state"] != "resolved" || evs[1]["status"] != "healthy" || evs[1]["previous_status"] != "stale" || evs[1]["at"] != "2026-11-24T09:05:00Z" {
		t.Errorf("events = %v", evs)
	}
}

// TestRestartResumesPendingDelivery: a delivery waiting for its retry when the
// manager stops is sent after the restart, honouring the webhook's Retry-After;
// a change still holding at the stop is sent once it has held after the
// restart; nothing already recorded is recorded again.
func TestRestartResumesPendingDelivery(t *testing.T) {
	rc := newReceiver(t, func(i int, w http.ResponseWriter, _ *http.Request) {
		if i == 0 {
			w.Header().Set("Retry-After", "120")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	f := start(t, defaultConfig(config.Webhook{Name: "ops", URL: rc.URL}))
	f.create("acme-prod", "beta")
	f.checkin("acme-prod", "2.0.0", healthy())
	f.checkin("beta", "2.0.0", healthy())
	f.checkin("acme-prod", "", dbDown("connection refused"))
	f.clk.Advance(2 * time.Minute)
	d := f.delivery("acme-prod", "ops", "the first attempt", func(d store.Delivery) bool { return d.Attempts == 1 })
	if d.State != store.Pending || !d.NextAttempt.Equal(t0.Add(4*time.Minute)) {
		t.Fatalf("after a 429 with Retry-After 120: %+v, want a retry at %v", d, t0.Add(4*time.Minute))
	}
	f.checkin("beta", "", dbDown("disk full")) // holding when the manager stops

	f.stop()
	f.clk.Advance(time.Minute)
	f.open()
	if len(rc.requests()) != 1 {
		t.Fatal("the delivery was retried before its Retry-After")
	}
	f.clk.Advance(time.Minute)
	d = f.delivery("acme-prod", "ops", "the resumed delivery", func(d store.Delivery) bool { return d.State == store.Delivered })
	if d.Attempts != 2 || d.LastError != "answered 429 Too Many Requests: slow down" {
		t.Errorf("resumed delivery = %+v, want delivered on the second attempt", d)
	}
	f.clk.Advance(time.Minute) // beta has now held for the debounce since the restart
	rc.wait(t, "beta's notification", 3)
	evs := rc.events(t)
	if evs[0]["id"] != evs[1]["id"] || evs[0]["deployment"].(map[string]any)["id"] != "acme-prod" || evs[2]["deployment"].(map[string]any)["id"] != "beta" {
		t.Errorf("received %v; want acme-prod's notification twice (the retry), then beta's", evs)
	}
	if ns := f.list(store.NotificationQuery{}); len(ns) != 2 {
		t.Errorf("%d notifications recorded, want 2 (no repeat of acme-prod's after the restart)", len(ns))
	}
	if strings.Contains(fmt.Sprint(f.list(store.NotificationQuery{})), rc.URL) {
		t.Error("a recorded error repeats the webhook URL")
	}
}

// TestShutdownKeepsADeliveryItCutShort: a webhook still holding a request when
// the shutdown deadline passes does not hold up the shutdown, and the delivery
// is recorded with that attempt and sent after the restart.
func TestShutdownKeepsADeliveryItCutShort(t *testing.T) {
	rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	cfg := defaultConfig(config.Webhook{Name: "ops", URL: rc.URL})
	cfg.Debounce = 0
	f := start(t, cfg)
	f.create("acme-prod")
	f.checkin("acme-prod", "2.0.0", healthy())
	f.checkin("acme-prod", "", dbDown("connection refused"))
	rc.wait(t, "the first request", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	f.shutdown(ctx)
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("shutdown took %v with a request hanging; want about the 100ms deadline", took)
	}
	f.open()
	d := f.list(store.NotificationQuery{})[0].Deliveries[0]
	if d.State != store.Pending || d.Attempts != 1 || !strings.Contains(d.LastError, "context canceled") || !d.NextAttempt.Equal(t0.Add(backoff)) {
		t.Fatalf("after the shutdown: %+v, want pending after one cut-short attempt", d)
	}
	f.clk.Advance(backoff)
	d = f.delivery("acme-prod", "ops", "the delivery after the restart", func(d store.Delivery) bool { return d.State == store.Delivered })
	if d.Attempts != 2 || len(rc.requests()) != 2 {
		t.Errorf("delivered after %d attempts and %d requests, want 2 and 2", d.Attempts, len(rc.requests()))
	}
}
