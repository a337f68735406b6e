// Package demo runs a manager with a dozen simulated customer deployments, each a
// real agent checking in over OpAMP, so a newcomer can explore the fleet view on
// a laptop: healthy, behind, unhealthy, stale and pending deployments included.
// Each deployment's services also send application telemetry (half an hour of
// history, then live), and one deployment's upgrade to 1.8.0 broke its checkout,
// so the investigation of PRODUCT.md can be walked from the fleet view down to
// the failing function. Its releases declare two remote commands, answered by
// df and by a sample service on 127.0.0.1; one customer disabled commands, and
// a support engineer has run one, so `periscope exec` and the audit log have
// something to show. Each agent also collects runtime signals from sources that
// need no server (runtime.go): its shop's traffic through the agent's ingress
// proxy, its data volume, and on one deployment supervised workloads, one of
// which crash-loops, so `periscope runtime` and the deployment page's Runtime
// section have real figures.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// Options configure the demo.
type Options struct {
	Listen  string
	DataDir string // a temporary directory when empty
	Out     io.Writer
	Logger  *slog.Logger
	// Ready, when set, receives the manager URL and admin token once the fleet runs.
	Ready func(url, token string)
	// Clock drives the manager and stamps the simulated telemetry; nil means the
	// wall clock.
	Clock clock.Clock
	// Rand draws the simulated requests; nil means a source seeded from the clock,
	// so every run shows different trace ids.
	Rand *rand.Rand
}

// The demo's timeline of application traffic.
const (
	// history is how much telemetry exists when the demo starts.
	history = 30 * time.Minute
	// upgradedAgo is when, before the start, the upgrading deployment moved to
	// its new release.
	upgradedAgo = 12 * time.Minute
	// liveEvery is how often live traffic is sent.
	liveEvery = 2 * time.Second
)

// Stack is the demo vendor's product.
const Stack = "lighthouse"

type sim struct {
	id, customer, cloud, region, platform, transport, release string
	// unhealthy names a component the agent reports down.
	unhealthy string
	// stopAfter stops the agent after a while, so the deployment turns stale.
	stopAfter time.Duration
	// noAgent leaves the deployment registered but never checked in.
	noAgent bool
	// upgradedFrom is the release the deployment ran until upgradedAgo; its
	// history starts there.
	upgradedFrom string
	// dropped is how many log records its agent reports dropped from a full
	// drop_oldest queue, shown beside its status.
	dropped int64
	// commands is its customer's rule for remote commands.
	commands command.Rule
}

// Fleet is the demo's simulated fleet.
var fleetSpec = []sim{
	{id: "acme-prod", customer: "acme", cloud: "aws", region: "us-east-1", platform: "aws_eks", transport: "websocket", release: "1.8.0"},
	{id: "acme-staging", customer: "acme", cloud: "aws", region: "us-east-1", platform: "aws_eks", transport: "websocket", release: "1.8.0"},
	// The deployment the investigation is about: its checkout fails since its
	// upgrade, which its traffic shows (see feed.faulty).
	{id: "globex-prod", customer: "globex", cloud: "gcp", region: "europe-west4", platform: "gcp_kubernetes_engine", transport: "http", release: "1.8.0",
		unhealthy: "error rate 14% since upgrade to 1.8.0 (was 0.3%)", upgradedFrom: "1.7.2"},
	{id: "initech-eu", customer: "initech", cloud: "azure", region: "westeurope", platform: "azure_aks", transport: "http", release: "1.7.2"},
	// Its customer allows no remote commands, so every one is refused.
	{id: "umbrella-prod", customer: "umbrella", cloud: "aws", region: "eu-central-1", platform: "aws_ecs", transport: "websocket", release: "1.8.0",
		commands: command.Rule{Disabled: true}},
	{id: "hooli-prod", customer: "hooli", cloud: "gcp", region: "us-central1", platform: "gcp_cloud_run", transport: "http", release: "1.8.0", dropped: 560},
	{id: "stark-prod", customer: "stark", cloud: "aws", region: "us-west-2", platform: "aws_eks", transport: "websocket", release: "1.7.2"},
	{id: "wayne-prod", customer: "wayne", cloud: "azure", region: "eastus", platform: "azure_aks", transport: "http", release: "1.8.0", stopAfter: 8 * time.Second},
	{id: "wonka-prod", customer: "wonka", cloud: "gcp", region: "asia-northeast1", platform: "gcp_kubernetes_engine", transport: "websocket", release: "1.8.0"},
	{id: "cyberdyne-prod", customer: "cyberdyne", cloud: "aws", region: "ap-southeast-2", platform: "aws_ecs", transport: "http", release: "1.7.2"},
	{id: "tyrell-prod", customer: "tyrell", cloud: "azure", region: "northeurope", platform: "azure_container_apps", transport: "websocket", release: "1.8.0"},
	{id: "soylent-onprem", customer: "soylent", cloud: "", region: "", platform: "kubernetes", noAgent: true},
}

// Run starts the demo and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	o.Clock = clock.Or(o.Clock)
	if o.Rand == nil {
		seed := uint64(o.Clock.Now().UnixNano())
		o.Rand = rand.New(rand.NewPCG(seed, seed>>32))
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
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = o.Listen, filepath.Join(dir, "manager"), token
	cfg.HeartbeatInterval = config.Duration(2 * time.Second)
	cfg.StaleAfter = config.Duration(6 * time.Second)
	cache := newCacheService(o.Logger)
	if err := cache.Start(ctx); err != nil {
		return err
	}
	m, err := manager.New(cfg, manager.Settings{Logger: o.Logger, Clock: o.Clock})
	if err == nil {
		err = m.Start(ctx)
	}
	if err != nil {
		stopParts(o.Logger, managerStop, part{"cache service", cache.Shutdown})
		return err
	}
	// Deferred calls run last first: the manager and the vendor's sample
	// service stop last of all, once the agents that call them have. Each
	// step is bounded (stop.go), so a part that hangs is logged, not waited
	// for.
	defer stopParts(o.Logger, managerStop, part{"manager", m.Shutdown}, part{"cache service", cache.Shutdown})
	api := apiclient.New(m.URL(), token)

	specs, err := declareCommands(cache.URL() + "/admin/cache-stats")
	if err != nil {
		return err
	}
	tokens, err := seed(ctx, api, specs)
	if err != nil {
		return err
	}
	tr, err := newTraffic(m.URL(), o.Clock, o.Logger)
	if err != nil {
		return err
	}
	fl := &fleet{log: o.Logger, manager: m.URL(), dir: dir, heartbeat: cfg.HeartbeatInterval, tokens: tokens, agents: map[string]*simAgent{},
		traffic: tr, clock: o.Clock}
	// The deployments that go stale stop their agents on timers of their own,
	// which the agents' step of the stop waits for: a stop in progress there
	// is one of the agents'.
	var staling sync.WaitGroup
	defer fl.shutdown(waitPart("the agents going stale", staling.Wait))
	var feeds []*feed
	for _, s := range fleetSpec {
		if s.noAgent {
			continue
		}
		rel := s.release
		if s.upgradedFrom != "" {
			rel = s.upgradedFrom
		}
		if err := fl.start(ctx, s, rel); err != nil {
			return err
		}
		feeds = append(feeds, &feed{id: s.id, token: tokens[s.id], platform: s.platform, release: rel,
			faulty: s.faulty(rel), rng: rand.New(rand.NewPCG(o.Rand.Uint64(), o.Rand.Uint64())), shop: fl.agents[s.id].rt.ShopURL()})
	}
	now := o.Clock.Now()
	if err := fl.history(ctx, api, tr, feeds, now); err != nil {
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

	fault := "TRACE"
	for _, f := range feeds {
		if f.lastFault != "" {
			fault = f.lastFault
		}
	}
	// The live traffic stops first of all, its last round within liveStop.
	var live sync.WaitGroup
	lctx, stopLive := context.WithCancel(ctx)
	defer func() {
		stopLive()
		stopParts(o.Logger, liveStop, waitPart("live traffic", live.Wait))
	}()
	for _, f := range feeds {
		tr.add(f)
	}
	live.Go(func() { tr.run(lctx, now, liveEvery) })
	for _, s := range fleetSpec {
		if s.stopAfter <= 0 {
			continue
		}
		a := fl.agents[s.id]
		staling.Go(func() {
			select {
			case <-time.After(s.stopAfter):
				tr.stop(s.id)
				stopParts(o.Logger, agentStop, part{"agent " + s.id, a.Shutdown})
			case <-lctx.Done():
			}
		})
	}

	fmt.Fprintf(o.Out, `
Periscope demo is running: a manager and %d simulated customer deployments, with
%.0f minutes of their services' logs, traces and metrics, and live traffic since.

  Dashboard: %s/  (sign in with token %s)
  Manager:   %s
  API token: %s   (admin)
  Data:      %s

Open the dashboard: globex-prod is unhealthy since its upgrade; click it for
the evidence, its error logs and traces, and the pin back to 1.7.2.

Or try, in another terminal:

  export PERISCOPE_MANAGER=%s PERISCOPE_TOKEN=%s
  go run ./cmd/periscope status
  go run ./cmd/periscope deployments list                 # globex-prod and %s are unhealthy
  go run ./cmd/periscope deployments show globex-prod     # since its upgrade to 1.8.0, %.0f minutes ago
  go run ./cmd/periscope deployments list --status stale  # wayne-prod stops checking in after ~15s
  go run ./cmd/periscope releases list
  go run ./cmd/periscope releases adoption                # who runs, wants and is pinned to each release
  go run ./cmd/periscope behind                           # who is not on the latest release, and why

Then investigate globex-prod from its telemetry:

  go run ./cmd/periscope red --deployment globex-prod --group-by release --since 30m --step 5m
  go run ./cmd/periscope compare --deployment globex-prod        # 1.8.0 against 1.7.2
  go run ./cmd/periscope red --deployment globex-prod --release 1.8.0 --group-by function --since 10m --step 10m
  go run ./cmd/periscope logs --deployment globex-prod --release 1.8.0 --severity error --limit 5
  go run ./cmd/periscope traces --deployment globex-prod --release 1.8.0 --errors --limit 6
  go run ./cmd/periscope trace %s   # or any TRACE listed above
  go run ./cmd/periscope metrics queue.depth --deployment globex-prod --group-by release --agg max --since 30m --step 5m

The agents also collect runtime signals with no instrumentation: each shop's
traffic through the agent's ingress proxy, its data volume, and the workloads
the agent supervises (%s's invoice worker cannot reach its queue and
crash-loops):

  go run ./cmd/periscope runtime %s       # its restarts and last error
  go run ./cmd/periscope runtime globex-prod      # 5xx at its ingress since the upgrade

Only operational data left the customers' clouds: the services log their shoppers'
e-mail addresses, IP addresses and session ids, and the agent's redaction removed
them before anything was queued (look for [REDACTED:email] and periscope.redacted.*):

  go run ./cmd/periscope logs --deployment acme-prod --limit 3

Hold globex-prod on the release that worked (its demo agent has no update hook,
so it shows as behind: manual-apply until someone redeploys it):

  go run ./cmd/periscope pin globex-prod --release 1.7.2 --reason "apply-discount fails on 1.8.0"
  go run ./cmd/periscope pins --deployment globex-prod   # the audit trail

Look at what telemetry does not carry, inside a customer's cloud: the releases
declare two remote commands (disk-usage runs df, cache-stats asks the vendor's
cache service), and %s already ran one on %s:

  go run ./cmd/periscope exec acme-prod disk-usage --reason "ticket 4711: export fails, disk full?"
  go run ./cmd/periscope exec hooli-prod cache-stats --reason "ticket 4712: slow sign-ins"
      # hooli-prod polls, so it runs at its next check-in; the cache's password
      # and a shopper's e-mail arrive masked by the agent's redaction
  go run ./cmd/periscope exec %s disk-usage --reason "ticket 4713"   # refused: its customer disabled commands
  go run ./cmd/periscope commands list
  go run ./cmd/periscope audit --since 1h                 # who ran what, why, and the outcome

Press Ctrl-C to stop.
`, len(fleetSpec), history.Minutes(), m.URL(), token, m.URL(), token, dir, m.URL(), token, crashLoopOn, upgradedAgo.Minutes(), fault,
		crashLoopOn, crashLoopOn, supportEngineer, firstCommandOn, disabledOn)
	if o.Ready != nil {
		o.Ready(m.URL(), token)
	}
	err = m.Wait(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// faulty reports whether the deployment's requests on release rel show the
// regression its unhealthy component reports.
func (s sim) faulty(rel string) bool { return s.unhealthy != "" && rel == s.release }

// fleet runs the demo's agents.
type fleet struct {
	log       *slog.Logger
	manager   string
	dir       string
	heartbeat config.Duration
	tokens    map[string]string
	agents    map[string]*simAgent
	// traffic sends the agents' runtime signals, redacted, with the
	// application telemetry.
	traffic *traffic
	clock   clock.Clock
}

// start runs deployment s's agent reporting release rel. An agent keeps its
// identity in its data directory, so a restart with a new release is the same
// deployment upgraded.
func (fl *fleet) start(ctx context.Context, s sim, rel string) error {
	ac := config.DefaultAgent()
	ac.Manager, ac.Token, ac.Release, ac.Transport = fl.manager, fl.tokens[s.id], rel, s.transport
	ac.Cloud, ac.Region, ac.Platform = s.cloud, s.region, s.platform
	ac.DataDir = filepath.Join(fl.dir, "agents", s.id)
	ac.HeartbeatInterval = fl.heartbeat
	ac.Commands = s.commands
	ws, err := workloads(s.id)
	if err != nil {
		return err
	}
	a, err := newSimAgent(ac, fl.log, runtimeSettings{dataDir: ac.DataDir, workloads: ws, send: fl.traffic.sink(fl.tokens[s.id]),
		red: fl.traffic.redact, clock: fl.clock, log: fl.log.With("deployment", s.id)})
	if err != nil {
		return err
	}
	if s.faulty(rel) {
		a.checkin.SetComponentHealth("checkout-api", false, s.unhealthy)
	}
	if s.dropped > 0 {
		a.checkin.SetTelemetryLoss(map[string]int64{"logs/queue_full": s.dropped}, time.Now())
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	fl.agents[s.id] = a
	return nil
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

// history sends the feeds' traffic of the half hour before now. The manager tags
// telemetry with the release a deployment reports when the telemetry arrives, so
// an upgrading deployment reports its old release while the history before its
// upgrade is sent, and its agent then restarts on the new release, as an upgrade
// does, before the rest is sent.
func (fl *fleet) history(ctx context.Context, api *apiclient.Client, tr *traffic, feeds []*feed, now time.Time) error {
	want := map[string]string{}
	for _, f := range feeds {
		want[f.id] = f.release
	}
	if err := awaitReleases(ctx, api, want); err != nil {
		return err
	}
	upgrade := now.Add(-upgradedAgo)
	if err := tr.backfill(ctx, feeds, now.Add(-history), upgrade); err != nil {
		return err
	}
	for _, s := range fleetSpec {
		if s.upgradedFrom == "" {
			continue
		}
		stopParts(fl.log, agentStop, part{"agent " + s.id, fl.agents[s.id].Shutdown})
		if err := fl.start(ctx, s, s.release); err != nil {
			return fmt.Errorf("upgrade %s: %w", s.id, err)
		}
		for _, f := range feeds {
			if f.id == s.id {
				f.release, f.faulty, f.shop = s.release, s.faulty(s.release), fl.agents[s.id].rt.ShopURL()
			}
		}
		want[s.id] = s.release
	}
	if err := awaitReleases(ctx, api, want); err != nil {
		return err
	}
	return tr.backfill(ctx, feeds, upgrade, now)
}

// awaitReleases waits until every deployment in want reports the release want
// gives it.
func awaitReleases(ctx context.Context, api *apiclient.Client, want map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
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
			return fmt.Errorf("agents did not report their release in time: %s: %w", strings.Join(missing, ", "), ctx.Err())
		}
	}
}

// seed creates the releases, each declaring specs, and the deployments, and
// returns each deployment's agent token.
func seed(ctx context.Context, api *apiclient.Client, specs []command.Spec) (map[string]string, error) {
	for _, r := range []apitypes.NewRelease{
		{Stack: Stack, Version: "1.7.2", Notes: "Stable; batch export fixes", Commands: specs},
		{Stack: Stack, Version: "1.8.0", Notes: "New checkout pipeline", Commands: specs},
	} {
		if _, err := api.CreateRelease(ctx, r); err != nil {
			return nil, fmt.Errorf("seed release %s: %w", r.Version, err)
		}
	}
	nds := make([]apitypes.NewDeployment, len(fleetSpec))
	for i, s := range fleetSpec {
		nds[i] = apitypes.NewDeployment{ID: s.id, Customer: s.customer, Stack: Stack, Platform: s.platform, Labels: map[string]string{"tier": "enterprise"}}
	}
	created, err := api.CreateDeployments(ctx, nds)
	if err != nil {
		return nil, fmt.Errorf("seed deployments: %w", err)
	}
	tokens := map[string]string{}
	for _, d := range created {
		tokens[d.ID] = d.Token
	}
	return tokens, nil
}
