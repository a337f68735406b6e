// Package demo runs a manager with a fleet of simulated customer deployments,
// each a real agent checking in over OpAMP, so a newcomer can explore the
// fleet on a laptop while a story unfolds on its own (scenario.go): the fleet
// runs 1.7.2 with half an hour of its services' logs, traces and metrics
// behind it (synthetic); from then on each deployment runs the vendor's
// sample service over the OpenTelemetry SDK (sdkservice.go). Then 1.8.0 is
// published and rolls out through the stack's rollout plan, wave by wave,
// through each agent's update hook (hook.go),
// which switches the deployment's service to the new release (service.go).
// On one customer 1.8.0 breaks checkout; the regression detector finds it and
// the deployment turns unhealthy, for the newcomer to investigate down to the
// failing function and pin back, which really rolls it back. Around it the
// fleet shows every other state: a polling deployment that lags, one that goes
// stale, one pinned by its customer, one whose worker crash-loops, one whose
// queue backlog grows, one that never checked in. Its releases declare two
// remote commands, answered by df and by a sample service on 127.0.0.1; one
// customer disabled commands, and a support engineer has run one. Each agent
// also collects runtime signals (runtime.go): its shop's ingress proxy, its
// data volume, and its sample service's queue and bucket on the demo's
// embedded NATS and S3.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	fleetmodel "github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// Options configure the demo.
type Options struct {
	// Listen is the manager's address; when its port is taken the next free
	// one (of the following maxPortTries) is used, and the banner says so.
	Listen  string
	DataDir string // a temporary directory, removed on exit, when empty
	Out     io.Writer
	Logger  *slog.Logger
	// Deployments is the size of the fleet: the dozen named deployments the
	// story is about, then generated ones up to this many. 0 means the dozen.
	Deployments int
	// Scenario names the story (Scenarios); "" is the default.
	Scenario string
	// Speed runs the scenario's timeline that many times faster, with that
	// many times the traffic, for tests; 0 means 1.
	Speed float64
	// Ready, when set, receives the manager URL and admin token once the fleet runs.
	Ready func(url, token string)
	// Clock drives the manager and stamps the simulated telemetry; nil means the
	// wall clock.
	Clock clock.Clock
	// Rand draws the simulated requests; nil means a source seeded from the clock,
	// so every run shows different trace ids.
	Rand *rand.Rand
	// Services makes each deployment's service for a release; nil runs the
	// sample service over the SDK in the first sdkFleet deployments and the
	// synthetic feed in the others (sdkServices), over the embedded NATS and
	// S3 servers.
	Services serviceFactory
}

// MaxDeployments bounds --deployments: every deployment is a real agent in
// this process.
const MaxDeployments = 5000

// The demo's timeline of application traffic.
const (
	// history is how much telemetry exists when the demo starts.
	history = 30 * time.Minute
	// liveEvery is how often live traffic is sent.
	liveEvery = 2 * time.Second
	// maxPortTries is how many ports after Options.Listen's are tried when it
	// is taken.
	maxPortTries = 20
)

// Stack is the demo vendor's product.
const Stack = "lighthouse"

// The named deployments the story is about.
const (
	// regressedOn is where Next breaks checkout.
	regressedOn = "globex-prod"
	// pinnedOn is held on Oldest by its customer's change freeze.
	pinnedOn  = "initech-eu"
	pinReason = "initech's change freeze: stay on 1.6.4 until their quarter closes"
	// laggingOn polls every slowPoll, so it lags behind as pull-pending.
	laggingOn = "cyberdyne-prod"
	// staleOn stops checking in staleAfterStart after the start.
	staleOn = "wayne-prod"
	// backlogOn runs a queue consumer that cannot keep up.
	backlogOn = "tyrell-prod"
)

type sim struct {
	id, customer, cloud, region, platform, transport string
	// ring is the rollout wave it belongs to ("" for the last).
	ring string
	// faultyOn is the release that breaks its checkout.
	faultyOn string
	// pin is the release its customer holds it on.
	pin string
	// stopAfter stops the agent after a while, so the deployment turns stale.
	stopAfter time.Duration
	// poll is how often its agent checks in, when not the fleet's heartbeat.
	poll time.Duration
	// noAgent leaves the deployment registered but never checked in.
	noAgent bool
	// slowConsumer makes its queue's backlog grow.
	slowConsumer bool
	// sdk runs the sample service over the OpenTelemetry SDK, not the
	// synthetic feed (the first sdkFleet deployments).
	sdk bool
	// light runs no runtime sources (shop, ingress proxy, volume) and sends
	// less traffic: generated deployments, so thousands fit in one process.
	light bool
	// dropped is how many log records its agent reports dropped from a full
	// drop_oldest queue, shown beside its status.
	dropped int64
	// commands is its customer's rule for remote commands.
	commands command.Rule
}

// fleetSpec is the demo's named fleet.
var fleetSpec = []sim{
	{id: "acme-prod", customer: "acme", cloud: "aws", region: "us-east-1", platform: "aws_eks", transport: "websocket", ring: ringEarly},
	{id: "acme-staging", customer: "acme", cloud: "aws", region: "us-east-1", platform: "aws_eks", transport: "websocket", ring: ringCanary},
	// The deployment the investigation is about: Next breaks its checkout,
	// which its sample service shows (brokenFault; feed.faulty in the
	// synthetic feed).
	{id: regressedOn, customer: "globex", cloud: "gcp", region: "europe-west4", platform: "gcp_kubernetes_engine", transport: "http", faultyOn: Next},
	{id: pinnedOn, customer: "initech", cloud: "azure", region: "westeurope", platform: "azure_aks", transport: "http", pin: Oldest},
	// Its customer allows no remote commands, so every one is refused.
	{id: "umbrella-prod", customer: "umbrella", cloud: "aws", region: "eu-central-1", platform: "aws_ecs", transport: "websocket", ring: ringEarly,
		commands: command.Rule{Disabled: true}},
	{id: "hooli-prod", customer: "hooli", cloud: "gcp", region: "us-central1", platform: "gcp_cloud_run", transport: "http", ring: ringEarly, dropped: 560},
	{id: "stark-prod", customer: "stark", cloud: "aws", region: "us-west-2", platform: "aws_eks", transport: "websocket", ring: ringEarly},
	{id: staleOn, customer: "wayne", cloud: "azure", region: "eastus", platform: "azure_aks", transport: "http", stopAfter: staleAfterStart},
	{id: "wonka-prod", customer: "wonka", cloud: "gcp", region: "asia-northeast1", platform: "gcp_kubernetes_engine", transport: "websocket", ring: ringCanary},
	{id: laggingOn, customer: "cyberdyne", cloud: "aws", region: "ap-southeast-2", platform: "aws_ecs", transport: "http", poll: slowPoll},
	{id: backlogOn, customer: "tyrell", cloud: "azure", region: "northeurope", platform: "azure_container_apps", transport: "websocket", ring: ringEarly,
		slowConsumer: true},
	{id: "soylent-onprem", customer: "soylent", cloud: "", region: "", platform: "kubernetes", noAgent: true},
}

// startRelease is the release s runs when the demo starts.
func (s sim) startRelease() string {
	if s.pin != "" {
		return s.pin
	}
	return Current
}

// Run starts the demo and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Speed <= 0 {
		o.Speed = 1
	}
	o.Clock = clock.Or(o.Clock)
	if o.Rand == nil {
		seed := uint64(o.Clock.Now().UnixNano())
		o.Rand = rand.New(rand.NewPCG(seed, seed>>32))
	}
	sc, err := scenarioNamed(o.Scenario)
	if err != nil {
		return err
	}
	specs, err := fleetOf(o.Deployments, sc)
	if err != nil {
		return err
	}
	listen, moved, err := freePort(o.Listen)
	if err != nil {
		return err
	}
	dir := o.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "periscope-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	token, err := auth.NewToken(auth.PrefixAPI, nil)
	if err != nil {
		return err
	}
	cfg := managerConfig(sc, o.Speed)
	cfg.Listen, cfg.DataDir, cfg.AdminToken = listen, filepath.Join(dir, "manager"), token
	cache := newCacheService(o.Logger)
	if err := cache.Start(ctx); err != nil {
		return err
	}
	cmdSpecs, err := declareCommands(cache.URL() + "/admin/cache-stats")
	if err == nil {
		err = publishedBefore(ctx, cfg.DataDir, o.Clock.Now(), cmdSpecs)
	}
	var m *manager.Manager
	if err == nil {
		m, err = manager.New(cfg, manager.Settings{Logger: o.Logger, Clock: o.Clock})
	}
	if err == nil {
		err = m.Start(ctx)
	}
	if err != nil {
		parts := []part{{"cache service", cache.Shutdown}}
		if m != nil {
			parts = append(parts, part{"manager", m.Shutdown})
		}
		stopParts(o.Logger, managerStop, parts...)
		return err
	}
	// Deferred calls run last first: the manager and the vendor's sample
	// service stop last of all, once the agents that call them have. Each
	// step is bounded (stop.go), so a part that hangs is logged, not waited
	// for.
	defer stopParts(o.Logger, managerStop, part{"manager", m.Shutdown}, part{"cache service", cache.Shutdown})
	api := apiclient.New(m.URL(), token)

	// A kept data directory holds the fleet of an earlier run: its agents
	// come back with their tokens, releases and identities, and the story
	// goes on where it was rather than starting again.
	tokens, resumed, err := loadTokens(dir, specs)
	if err == nil && !resumed {
		if tokens, err = seed(ctx, api, specs); err == nil {
			err = saveTokens(dir, tokens)
		}
	}
	if err != nil {
		return err
	}
	tr, err := newTraffic(m.URL(), o.Clock, o.Logger, o.Speed)
	if err != nil {
		return err
	}
	fl := &fleet{log: o.Logger, manager: m.URL(), dir: dir, heartbeat: config.Duration(scaled(heartbeat, o.Speed)), speed: o.Speed,
		tokens: tokens, agents: map[string]*simAgent{}, traffic: tr, clock: o.Clock, specs: map[string]sim{}, resumed: resumed}
	for _, s := range specs {
		fl.specs[s.id] = s
	}
	mk := o.Services
	if mk == nil {
		// One NATS and one S3 server for the whole demo, stopped after the
		// services that use them (deferred first, so run last).
		env, stop, err := startInfra(ctx, o, dir)
		defer stop()
		if err != nil {
			return err
		}
		fl.sdk = env
		mk = sdkServices(*env, feedServices(tr))
	}
	fl.services = newServices(mk, fl.serviceSpec(o.Rand))
	hooks := newLocalService(newHookHandler(fl.services, o.Logger), o.Logger)
	if err := hooks.Start(ctx); err != nil {
		return err
	}
	fl.hooks = hooks.URL()
	// The deployments that go stale stop their agents on timers of their own,
	// which the agents' step of the stop waits for: a stop in progress there
	// is one of the agents'. The hook server stops with the agents, whose
	// hooks it answers.
	var staling sync.WaitGroup
	defer fl.shutdown(waitPart("the agents going stale", staling.Wait), part{"update hooks", hooks.Shutdown})
	// The services stop before the agents, so their SDKs' last exports
	// reach the agents' OTLP endpoints.
	defer stopParts(o.Logger, agentStop, part{"services", fl.services.Shutdown})
	if err := fl.startAll(ctx, specs); err != nil {
		return err
	}
	now := o.Clock.Now()
	if err := fl.history(ctx, api, specs, now); err != nil {
		return err
	}
	// RED rollups are written a second after ingest; the first query a newcomer
	// (or a test) makes after Ready should see all of the history.
	if err := m.Telemetry().Flush(ctx); err != nil {
		return fmt.Errorf("roll up the history: %w", err)
	}
	if err := runFirstCommand(ctx, api, m.URL()); err != nil {
		return err
	}

	// The live traffic and the scenario stop first of all, the traffic's
	// last round within liveStop.
	var live sync.WaitGroup
	lctx, stopLive := context.WithCancel(ctx)
	defer func() {
		stopLive()
		stopParts(o.Logger, liveStop, waitPart("live traffic and the scenario", live.Wait))
	}()
	live.Go(func() { tr.run(lctx, now, liveEvery) })
	live.Go(func() {
		if err := publishNext(lctx, api, cmdSpecs, scaled(publishAfter, o.Speed)); err != nil && lctx.Err() == nil {
			o.Logger.Error("the demo could not publish its new release", "release", Next, "error", err)
		}
	})
	for _, s := range specs {
		if s.stopAfter <= 0 || s.noAgent {
			continue
		}
		a := fl.agents[s.id]
		staling.Go(func() {
			t := time.NewTimer(scaled(s.stopAfter, o.Speed))
			defer t.Stop()
			select {
			case <-t.C:
				// Its service first, so that its SDK's last export reaches
				// the agent; each within a bound of its own, not lctx,
				// whose end while they stop would cut both short.
				stopParts(o.Logger, agentStop, part{"service " + s.id, func(ctx context.Context) error { return fl.services.Stop(ctx, s.id) }})
				stopParts(o.Logger, agentStop, part{"agent " + s.id, a.Shutdown})
			case <-lctx.Done():
			}
		})
	}

	banner(o.Out, bannerData{url: m.URL(), token: token, dir: dir, kept: o.DataDir != "", moved: moved, asked: o.Listen,
		deployments: len(specs), scenario: sc, speed: o.Speed})
	if o.Ready != nil {
		o.Ready(m.URL(), token)
	}
	err = m.Wait(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// managerConfig is the demo manager's configuration in scenario sc: the
// stack's rollout plan, and heartbeats, staleness, regression checks and
// rollout steps fast enough for the story to unfold in minutes (divided by
// speed).
func managerConfig(sc Scenario, speed float64) config.Manager {
	cfg := config.DefaultManager()
	cfg.HeartbeatInterval = config.Duration(scaled(heartbeat, speed))
	cfg.StaleAfter = config.Duration(scaled(staleAfter, speed))
	// A release regressed when its error rate rose by 8 points and doubled:
	// 30 requests (45 seconds of a demo shop's traffic) are enough to tell
	// the broken release's failed discounts from what a working release does,
	// and the margin keeps one unlucky failure from flagging a healthy
	// deployment and halting the rollout. Latency is no signal here: every
	// demo service shares the laptop's cores, and a busy machine stalls a
	// healthy shop's queue publishes for over a second (seen at a load
	// average of 6), so p95 must rise by 3 s to count; the broken release's
	// added 250 ms still shows in its p95, beside the errors.
	cfg.Regression.MinRequests = 30
	cfg.Regression.ErrorRateIncrease = 0.08
	cfg.Regression.P95Increase = config.Duration(3 * time.Second)
	cfg.Regression.P95Ratio = 2
	cfg.Regression.Window = config.Duration(10 * time.Minute)
	cfg.Regression.CheckEvery = config.Duration(scaled(regressionEvery, speed))
	cfg.Rollouts.CheckEvery = config.Duration(scaled(rolloutEvery, speed))
	cfg.Rollouts.Plans = append(cfg.Rollouts.Plans, sc.rolloutPlan(speed))
	return cfg
}

// freePort returns listen, or when its port is taken the next free one of
// the maxPortTries after it, and whether it moved. Port 0 is returned as it
// is.
func freePort(listen string) (string, bool, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", false, fmt.Errorf("listen address %q: %w", listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return listen, false, nil
	}
	for i := range maxPortTries + 1 {
		addr := net.JoinHostPort(host, strconv.Itoa(p+i))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			// Closed again for the manager to bind: a port another program
			// takes in between is the manager's startup error.
			if err := ln.Close(); err != nil {
				return "", false, err
			}
			return addr, i > 0, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return "", false, fmt.Errorf("listen on %s: %w", addr, err)
		}
	}
	return "", false, fmt.Errorf("ports %d to %d on %s are all taken: give another with --listen", p, p+maxPortTries, host)
}

// publishedBefore writes the releases the fleet runs at the start into the
// manager's fleet store before the manager opens it, published days before
// now as they would have been, so "behind" reads in days. Publishing them
// through the API would date them now and roll them out; a kept data
// directory already holds them.
func publishedBefore(ctx context.Context, dataDir string, now time.Time, specs []command.Spec) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create the manager's data directory: %w", err)
	}
	st, err := duckdb.Open(ctx, dataDir)
	if err != nil {
		return fmt.Errorf("open the fleet store to seed releases: %w", err)
	}
	for _, r := range []fleetmodel.Release{
		{Stack: Stack, Version: Oldest, CreatedAt: now.Add(-oldestAge), Notes: "Batch export", Commands: specs},
		{Stack: Stack, Version: Current, CreatedAt: now.Add(-currentAge), Notes: "Stable; batch export fixes", Commands: specs},
	} {
		if err := st.CreateRelease(ctx, r); err != nil && !errors.Is(err, store.ErrConflict) {
			return errors.Join(fmt.Errorf("seed release %s: %w", r.Version, err), st.Close())
		}
	}
	return st.Close()
}

// publishNext publishes Next after wait: the stack's plan rolls it out.
func publishNext(ctx context.Context, api *apiclient.Client, specs []command.Spec, wait time.Duration) error {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil
	}
	_, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: Stack, Version: Next, Notes: "New checkout pipeline", Commands: specs})
	var ae *apiclient.Error
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return nil // a kept data directory published it in an earlier run
	}
	return err
}

// fleetOf returns the named fleet in scenario sc, then generated deployments
// up to n (0 means the named ones alone).
func fleetOf(n int, sc Scenario) ([]sim, error) {
	if n == 0 {
		n = len(fleetSpec)
	}
	if n < len(fleetSpec) || n > MaxDeployments {
		return nil, fmt.Errorf("--deployments %d: the demo runs from %d (the named deployments of its story) to %d", n, len(fleetSpec), MaxDeployments)
	}
	specs := make([]sim, 0, n)
	for _, s := range fleetSpec {
		s.ring = sc.ring(s)
		s.sdk = !s.noAgent
		specs = append(specs, s)
	}
	for i := len(fleetSpec); i < n; i++ {
		g := generated(i)
		g.sdk = i < sdkFleet
		specs = append(specs, g)
	}
	return specs, nil
}

// places are the clouds, regions and platforms generated deployments run on.
var places = []struct{ cloud, region, platform string }{
	{"aws", "us-east-1", "aws_eks"}, {"aws", "eu-west-1", "aws_ecs"}, {"gcp", "us-central1", "gcp_kubernetes_engine"},
	{"gcp", "europe-west1", "gcp_cloud_run"}, {"azure", "westeurope", "azure_aks"}, {"azure", "eastus", "azure_container_apps"},
	{"aws", "ap-northeast-1", "aws_eks"}, {"", "", "kubernetes"},
}

// generated is the i-th generated deployment: a healthy customer somewhere,
// pushing or polling, one in ten in the canary ring and a quarter early.
func generated(i int) sim {
	p := places[i%len(places)]
	s := sim{id: fmt.Sprintf("customer%04d-prod", i), customer: fmt.Sprintf("customer%04d", i), cloud: p.cloud, region: p.region,
		platform: p.platform, transport: "websocket", light: true}
	if i%2 == 1 {
		s.transport = "http"
	}
	switch {
	case i%10 == 0:
		s.ring = ringCanary
	case i%4 == 1:
		s.ring = ringEarly
	}
	return s
}

// fleet runs the demo's agents.
type fleet struct {
	log       *slog.Logger
	manager   string
	dir       string
	heartbeat config.Duration
	speed     float64
	tokens    map[string]string
	specs     map[string]sim
	// hooks is the base URL of the update hook server.
	hooks  string
	agents map[string]*simAgent
	// traffic sends the agents' runtime signals, redacted, with the
	// application telemetry.
	traffic *traffic
	// sdk is what the sample services share; nil when Options.Services
	// replaces them.
	sdk      *sdkEnv
	services *services
	clock    clock.Clock
	// resumed is set when the fleet comes from a kept data directory.
	resumed bool
}

// serviceSpec returns the function that tells a service factory what a
// deployment runs on a release, each service with randomness of its own.
func (fl *fleet) serviceSpec(seedFrom *rand.Rand) func(id, release string) (serviceSpec, bool) {
	var mu sync.Mutex
	return func(id, release string) (serviceSpec, bool) {
		s, ok := fl.specs[id]
		a := fl.agents[id]
		if !ok || a == nil {
			return serviceSpec{}, false
		}
		mu.Lock()
		rng := rand.New(rand.NewPCG(seedFrom.Uint64(), seedFrom.Uint64()))
		mu.Unlock()
		spec := serviceSpec{Deployment: id, Token: fl.tokens[id], Platform: s.platform, Release: release, Faulty: s.faultyOn == release,
			SlowConsumer: s.slowConsumer, Light: s.light, Rand: rng}
		if a.rt != nil {
			spec.Shop, spec.OTLP = a.rt.ShopURL(), a.rt.OTLPURL()
			if up := a.rt.s.upstream; up != nil {
				spec.Listen, spec.Free = up.addr, up.free
			}
		}
		return spec, true
	}
}

// startAll starts every deployment's agent, then its service on the release
// it runs. The agents start at once: one after the other, a thousand
// OpAMP sessions would take minutes.
func (fl *fleet) startAll(ctx context.Context, specs []sim) error {
	agents := make([]*simAgent, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // bounds sockets and files opened at once
	for i, s := range specs {
		if s.noAgent {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			agents[i], errs[i] = fl.newAgent(ctx, s)
		})
	}
	wg.Wait()
	for i, a := range agents {
		if a != nil {
			fl.agents[specs[i].id] = a
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, s := range specs {
		if s.noAgent {
			continue
		}
		a := fl.agents[s.id]
		if err := fl.services.Switch(ctx, s.id, a.checkin.Release()); err != nil {
			return err
		}
		if a.rt != nil {
			if err := a.rt.StartCollector(ctx); err != nil {
				return fmt.Errorf("%s's runtime signals: %w", s.id, err)
			}
		}
	}
	return nil
}

// newAgent starts deployment s's agent on the release it starts on, with
// the demo's update hook. An agent keeps its identity and the release its
// hook applied in its data directory, so a kept demo restarts where it was.
func (fl *fleet) newAgent(ctx context.Context, s sim) (*simAgent, error) {
	ac := config.DefaultAgent()
	ac.Manager, ac.Token, ac.Release, ac.Transport = fl.manager, fl.tokens[s.id], s.startRelease(), s.transport
	ac.Cloud, ac.Region, ac.Platform = s.cloud, s.region, s.platform
	ac.DataDir = filepath.Join(fl.dir, "agents", s.id)
	ac.HeartbeatInterval = fl.heartbeat
	if s.poll > 0 {
		ac.HeartbeatInterval = config.Duration(scaled(s.poll, fl.speed))
	}
	ac.Commands = s.commands
	ac.Update.Webhook = fl.hooks + hookPath(s.id)
	ws, err := workloads(s.id)
	if err != nil {
		return nil, err
	}
	rs := runtimeSettings{dataDir: ac.DataDir, workloads: ws, send: fl.traffic.sink(fl.tokens[s.id]),
		red: fl.traffic.redact, clock: fl.clock, log: fl.log.With("deployment", s.id)}
	if s.poll > 0 {
		// A polling agent's health reports reach the manager as check-ins,
		// which would bring the offer early: a slow poller collects as
		// seldom as it polls.
		rs.interval = time.Duration(ac.HeartbeatInterval)
	}
	if s.sdk && fl.sdk != nil {
		if rs.upstream, err = reserveAddr(); err != nil {
			return nil, err
		}
		rs.queues, rs.buckets = fl.sdk.runtimeSources(s.id, s.slowConsumer)
	} else if s.light {
		rs = runtimeSettings{}
	}
	a, err := newSimAgent(ac, fl.log, rs, rs.send != nil)
	if err != nil {
		return nil, err
	}
	if s.dropped > 0 {
		a.checkin.SetTelemetryLoss(map[string]int64{"logs/queue_full": s.dropped}, time.Now())
	}
	if err := a.Start(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// shutdown stops every agent, and the other parts given, at once within
// agentStop: one at a time, a dozen agents' stops on a busy machine add up,
// and one that hangs would hold up the rest.
func (fl *fleet) shutdown(others ...part) {
	parts := others
	for id, a := range fl.agents {
		parts = append(parts, part{"agent " + id, a.Shutdown})
	}
	stopParts(fl.log, agentStop, parts...)
}

// history sends the named deployments' traffic of the half hour before now,
// once every agent reports the release it starts on: the manager tags
// telemetry with the release a deployment reports when it arrives.
// Generated deployments start with no history, which keeps a fleet of
// thousands quick to start.
func (fl *fleet) history(ctx context.Context, api *apiclient.Client, specs []sim, now time.Time) error {
	want := map[string]string{}
	for _, s := range specs {
		if !s.noAgent {
			want[s.id] = fl.agents[s.id].checkin.Release()
		}
	}
	if err := awaitReleases(ctx, api, want); err != nil {
		return err
	}
	if fl.resumed {
		return nil // the history was sent in the first run
	}
	// The history is synthetic whatever runs live: an SDK stamps what it
	// sends now, and cannot send the half hour before the demo began.
	var feeds []*feed
	for _, s := range specs {
		if s.noAgent || s.light {
			continue
		}
		spec, ok := fl.serviceSpec(rand.New(rand.NewPCG(shortHashSum(s.id), 1)))(s.id, want[s.id])
		if ok {
			feeds = append(feeds, newFeed(spec))
		}
	}
	return fl.traffic.backfill(ctx, feeds, now.Add(-history), now)
}

// awaitReleases waits until every deployment in want reports the release want
// gives it.
func awaitReleases(ctx context.Context, api *apiclient.Client, want map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		ds, err := api.Deployments(ctx, apiclient.Filter{})
		if err != nil {
			return fmt.Errorf("wait for the agents: %w", err)
		}
		var missing []string
		for _, d := range ds {
			if rel, ok := want[d.ID]; ok && d.Release != rel {
				missing = append(missing, d.ID+" on "+rel)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if !clock.Sleep(ctx, 50*time.Millisecond) {
			sort.Strings(missing)
			if len(missing) > 10 {
				missing = append(missing[:10], fmt.Sprintf("and %d more", len(missing)-10))
			}
			return fmt.Errorf("agents did not report their release in time: %s: %w", strings.Join(missing, ", "), ctx.Err())
		}
	}
}

// seed creates the deployments, pins the one its customer holds back, and
// returns each deployment's agent token. The releases they run were written
// before the manager started (publishedBefore).
func seed(ctx context.Context, api *apiclient.Client, specs []sim) (map[string]string, error) {
	nds := make([]apitypes.NewDeployment, len(specs))
	for i, s := range specs {
		labels := map[string]string{"tier": "enterprise"}
		if s.light {
			labels["tier"] = "standard"
		}
		if s.ring != "" {
			labels[ringLabel] = s.ring
		}
		nds[i] = apitypes.NewDeployment{ID: s.id, Customer: s.customer, Stack: Stack, Platform: s.platform, Cloud: s.cloud, Region: s.region, Labels: labels}
	}
	tokens := map[string]string{}
	// The batch endpoint takes a bounded number at once.
	for start := 0; start < len(nds); start += seedBatch {
		created, err := api.CreateDeployments(ctx, nds[start:min(start+seedBatch, len(nds))])
		if err != nil {
			return nil, fmt.Errorf("seed deployments: %w", err)
		}
		for _, d := range created {
			tokens[d.ID] = d.Token
		}
	}
	for _, s := range specs {
		if s.pin == "" {
			continue
		}
		if _, err := api.PinDeployment(ctx, s.id, s.pin, pinReason); err != nil {
			return nil, fmt.Errorf("pin %s to %s: %w", s.id, s.pin, err)
		}
	}
	return tokens, nil
}

// seedBatch is how many deployments one creation request carries.
const seedBatch = 500

// tokensFile, in the demo's data directory, keeps the agents' tokens, which
// the manager shows only once, for a run on a kept data directory.
const tokensFile = "demo-tokens.json"

// loadTokens reads the tokens an earlier run on dir kept, and reports
// whether there were any; they must cover the fleet asked for.
func loadTokens(dir string, specs []sim) (map[string]string, bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, tokensFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the kept fleet: %w", err)
	}
	tokens := map[string]string{}
	if err := json.Unmarshal(data, &tokens); err != nil {
		return nil, false, fmt.Errorf("read the kept fleet %s: %w", filepath.Join(dir, tokensFile), err)
	}
	for _, s := range specs {
		if _, ok := tokens[s.id]; !ok {
			return nil, false, fmt.Errorf("the data directory %s holds a fleet of %d deployments without %s: give the same --deployments, or another directory",
				dir, len(tokens), s.id)
		}
	}
	return tokens, true, nil
}

// saveTokens keeps the agents' tokens in dir, readable by its owner alone.
func saveTokens(dir string, tokens map[string]string) error {
	data, err := json.Marshal(tokens)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, tokensFile), data, 0o600)
	}
	if err != nil {
		return fmt.Errorf("keep the agents' tokens: %w", err)
	}
	return nil
}
